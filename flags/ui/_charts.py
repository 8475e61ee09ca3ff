"""The cluster page's pictures, as geometry for inline SVG: recent propagation times
(a bar per change) and the membership events (a mark per event on a time axis, one
lane per member). Pure: the template draws the shapes with presentation attributes
only (the page's CSP allows no inline style)."""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

#: The drawing's size in SVG user units; it scales to the page's width.
WIDTH = 640
HEIGHT = 180
_LEFT = 56  # room for the y axis labels
_BOTTOM = 24  # room for the x axis labels
_TOP = 10
_MAX_BAR = 24  # the widest bar, when there are few
#: A fill per membership event kind (fixed colours, never from the data).
EVENT_COLOURS = {
    "up": "#2e7d32",
    "joined": "#1565c0",
    "restarted": "#ef6c00",
    "down": "#c62828",
    "left": "#616161",
    "expelled": "#6a1b9a",
}


@attrs.frozen
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str  # what it shows, for the SVG <title>


@attrs.frozen
class Mark:
    x: float
    y: float
    fill: str
    title: str


@attrs.frozen
class Tick:
    x: float
    y: float
    text: str
    anchor: str = "end"  # SVG text-anchor: where x is on the text


@attrs.frozen
class Chart:
    """What a template needs to draw one picture: shapes, axis labels, and
    ``empty`` when there was nothing to draw."""

    width: int
    height: int
    left: int = _LEFT  # the y axis
    bottom: int = HEIGHT - _BOTTOM  # the x axis
    top: int = _TOP
    bars: list[Bar] = attrs.field(factory=list)
    marks: list[Mark] = attrs.field(factory=list)
    ticks: list[Tick] = attrs.field(factory=list)
    lanes: list[Tick] = attrs.field(factory=list)
    empty: bool = True


def _moment(value: object) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten at or above ``value`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def propagation_chart(points: Iterable[Mapping[str, Any]]) -> Chart:
    """Bars of ``[{"at": ISO, "flag": name, "ms": float}, ...]`` (oldest first), each
    as tall as its time in ms; the y axis goes from 0 to a round ceiling. Points
    without a finite, non-negative ``ms`` are left out."""
    kept = [
        p
        for p in points
        if isinstance(p, Mapping)
        and type(p.get("ms")) in (int, float)
        and math.isfinite(p["ms"])
        and p["ms"] >= 0
    ]
    if not kept:
        return Chart(WIDTH, HEIGHT)
    top = _nice_ceiling(max(max(p["ms"] for p in kept), 1.0))
    plot_w, plot_h = WIDTH - _LEFT, HEIGHT - _TOP - _BOTTOM
    step = plot_w / len(kept)
    width = min(max(step * 0.8, 1.0), _MAX_BAR)
    bars = []
    for index, point in enumerate(kept):
        height = plot_h * point["ms"] / top
        title = f"{point.get('flag', '?')}: {point['ms']:g} ms at {point.get('at', '?')}"
        bars.append(
            Bar(
                x=round(_LEFT + index * step + (step - width) / 2, 2),
                y=round(_TOP + plot_h - height, 2),
                width=round(width, 2),
                height=round(max(height, 0.5), 2),
                title=title,
            )
        )
    ticks = [
        Tick(_LEFT - 6, round(_TOP + plot_h * (1 - share), 2), f"{top * share:g} ms")
        for share in (0.0, 0.5, 1.0)
    ]
    return Chart(WIDTH, HEIGHT, bars=bars, ticks=ticks, empty=False)


def events_chart(events: Iterable[Mapping[str, Any]]) -> Chart:
    """Marks of ``[{"at": ISO, "event": kind, "member": id}, ...]`` on a time axis,
    one lane per member (in order of first appearance); events without a readable
    time are left out."""
    kept = []
    for event in events:
        if isinstance(event, Mapping):
            moment = _moment(event.get("at"))
            if moment is not None:
                kept.append((moment, str(event.get("event", "?")), str(event.get("member", "?"))))
    if not kept:
        return Chart(WIDTH, HEIGHT)
    members = list(dict.fromkeys(member for _, _, member in kept))
    start = min(m for m, _, _ in kept)
    span = max((max(m for m, _, _ in kept) - start).total_seconds(), 1.0)
    plot_w, plot_h = WIDTH - _LEFT - 10, HEIGHT - _TOP - _BOTTOM
    lane_h = plot_h / len(members)
    marks = [
        Mark(
            x=round(_LEFT + plot_w * (moment - start).total_seconds() / span, 2),
            y=round(_TOP + lane_h * (members.index(member) + 0.5), 2),
            fill=EVENT_COLOURS.get(kind, "#000000"),
            title=f"{moment.isoformat(timespec='seconds')}: {member} {kind}",
        )
        for moment, kind, member in kept
    ]
    lanes = [
        Tick(_LEFT - 6, round(_TOP + lane_h * (index + 0.5), 2), member)
        for index, member in enumerate(members)
    ]
    ticks = [
        Tick(_LEFT, HEIGHT - 6, start.strftime("%H:%M:%S"), anchor="start"),
        Tick(WIDTH - 10, HEIGHT - 6, f"+{span:g} s"),
    ]
    return Chart(WIDTH, HEIGHT, marks=marks, ticks=ticks, lanes=lanes, empty=False)

"""What the pages compute: state at a glance, fully on for N days, chart geometry."""

import pytest

from flags import Flag
from flags.ui import _charts
from flags.ui._views import changed_metadata, percent, state_text, steady_text, when
from hlc import Timestamp

DAY_MS = 86_400_000


@pytest.mark.parametrize(
    ("flag", "text"),
    [
        (Flag("f"), "default"),
        (Flag("f", boolean=True), "on"),
        (Flag("f", boolean=False), "off"),
        (
            Flag("f", actors={"a": True}, percentage_of_actors=0.3),
            "partial: actors, 30 % of actors",
        ),
        (Flag("f", boolean=True, groups={"banned": False}), "partial: everyone, denied groups"),
        (Flag("f", boolean=False, percentage_of_time=0.025), "partial: 2.5 % of time"),
        (Flag("f", actors={"a": False}), "partial: denied actors"),
    ],
)
def test_state_at_a_glance(flag: Flag, text: str) -> None:
    assert state_text(flag) == text


def test_fully_on_or_off_counts_whole_days_for_a_boolean_flag_only() -> None:
    stamp = Timestamp(10 * DAY_MS, 0, "n1")
    assert steady_text(Flag("f", boolean=True), stamp, 13 * DAY_MS + 5) == "fully on for 3 days"
    assert steady_text(Flag("f", boolean=False), stamp, 11 * DAY_MS) == "fully off for 1 day"
    assert steady_text(Flag("f", boolean=True), stamp, 10 * DAY_MS) == "fully on for 0 days"
    assert steady_text(Flag("f", boolean=True, actors={"a": True}), stamp, 20 * DAY_MS) is None
    assert steady_text(Flag("f"), None, 20 * DAY_MS) is None


def test_when_reads_an_hlc_timestamp_as_utc_to_the_millisecond() -> None:
    assert when(str(Timestamp(1_700_000_000_123, 4, "n1"))) == "2023-11-14 22:13:20.123 UTC"
    assert when("not a timestamp") == "not a timestamp"


def test_percent() -> None:
    assert [percent(r) for r in (0.0, 0.3, 0.255, 1.0)] == ["0 %", "30 %", "25.5 %", "100 %"]


def test_the_metadata_form_changes_only_what_differs() -> None:
    flag = Flag("f", description="d", owner=None, expires="2027-01-01")
    form = {"description": "d", "owner": "", "expires": ""}
    assert changed_metadata(flag, form) == {}
    form = {"description": "", "owner": "team", "expires": "2027-02-01"}
    assert changed_metadata(flag, form) == {
        "description": "",
        "owner": "team",
        "expires": "2027-02-01",
    }


def test_propagation_bars_scale_to_a_round_ceiling_and_skip_bad_points() -> None:
    chart = _charts.propagation_chart(
        [
            {"at": "x", "flag": "a", "ms": 30.0},
            {"at": "y", "flag": "b", "ms": 60.0},
            {"ms": float("nan")},
            {"ms": -1},
            {"ms": "12"},
            "junk",  # type: ignore[list-item]
        ]
    )
    assert not chart.empty
    assert len(chart.bars) == 2
    assert [t.text for t in chart.ticks] == ["0 ms", "50 ms", "100 ms"]
    plot_h = chart.bottom - chart.top
    assert chart.bars[1].height == pytest.approx(plot_h * 0.6, abs=0.01)
    for bar in chart.bars:
        assert bar.y + bar.height == pytest.approx(chart.bottom)
        assert chart.left <= bar.x <= chart.width


def test_charts_of_nothing_are_empty() -> None:
    assert _charts.propagation_chart([]).empty
    assert _charts.events_chart([]).empty
    assert _charts.events_chart([{"at": "never", "event": "up", "member": "b"}]).empty


def test_member_events_get_a_lane_each_and_a_fixed_colour() -> None:
    chart = _charts.events_chart(
        [
            {"at": "2026-01-01T00:00:00+00:00", "event": "up", "member": "b"},
            {"at": "2026-01-01T00:00:10+00:00", "event": "down", "member": "c"},
            {"at": "2026-01-01T00:00:20+00:00", "event": "<script>", "member": "b"},
        ]
    )
    assert [lane.text for lane in chart.lanes] == ["b", "c"]
    assert [m.fill for m in chart.marks] == ["#2e7d32", "#c62828", "#000000"]
    assert chart.marks[0].y == chart.marks[2].y != chart.marks[1].y
    assert chart.marks[0].x < chart.marks[1].x < chart.marks[2].x

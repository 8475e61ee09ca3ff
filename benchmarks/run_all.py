"""Every benchmark, one process per scenario, into one table: ``./scripts/bench``.

Runs the benchmark scripts beside this file, each in a process of its own, with its
peers in the same run; collects their JSON; writes benchmarks/results/RESULTS.md (the
tables, with the targets), benchmarks/results/all.json, and two plots beside them:
latency.png (write-to-visible latency over real processes) and sync_bytes.png (sync
bytes against map size). Medians of repeats throughout; these machines are noisy.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

RUNS = [
    ("flags", ["bench_flags.py"]),
    ("targeting", ["bench_targeting.py"]),
    ("core", ["bench_core.py"]),
    ("sync_scaling", ["bench_sync_scaling.py"]),
    ("tcp3", ["bench_tcp.py", "--nodes", "3", "--burst", "10000"]),
    ("tcp5", ["bench_tcp.py", "--nodes", "5"]),
    ("catchup", ["bench_catchup.py"]),
    ("cluster_sim", ["bench_cluster_sim.py"]),
    ("stability", ["bench_stability.py"]),
    ("calls", ["bench_calls.py"]),
    ("owner_window", ["bench_owner_window.py"]),
    ("events", ["bench_events.py"]),
    ("ui", ["bench_ui.py"]),
]


def run(name: str, argv: list[str]) -> dict[str, Any] | list[Any]:
    out = RESULTS / f"{name}.json"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(HERE / argv[0]), *argv[1:], "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    print(f"  {name}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    result: dict[str, Any] | list[Any] = json.loads(out.read_text())
    return result


def mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def by_name(core: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in core["results"]}


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    print("running every benchmark (a few minutes):", file=sys.stderr)
    data = {name: run(name, argv) for name, argv in RUNS}
    flags, core, scaling = data["flags"], by_name(data["core"]), data["sync_scaling"]
    tcp3, tcp5, catchup, sim = data["tcp3"], data["tcp5"], data["catchup"], data["cluster_sim"]
    checks = flags["per_check"]  # type: ignore[index]
    n = data["core"]["keys"]  # type: ignore[index]
    k = f"{n:,}"

    def ns(name: str) -> float:
        value: float = checks[name]["median_ns"]
        return value

    boolean, plain = (
        ns("chorus FlagStore.enabled(name)"),
        ns("plain function returning d.get(name)"),
    )
    of = ns("OpenFeature InMemoryProvider (SDK client)")
    un = ns("UnleashClient.is_enabled (offline)")
    pct = ns("chorus enabled(name, actor), percentage gate")
    typed: float = data["targeting"][TYPED]["median_ns"]  # type: ignore[call-overload]
    lines = [
        "# chorus benchmarks",
        "",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}. Command: `./scripts/bench`. "
        "Medians of repeats; min-max where shown.",
        "",
        "## Flag checks (ns per check, one process)",
        "",
        "| check | median | min-max | vs chorus |",
        "|---|---:|---:|---|",
    ]
    for name, r in checks.items():
        ratio = r["vs_chorus"]
        vs = f"{ratio:.2f}x" if ratio < 10 else f"{ratio:,.0f}x slower"
        lines.append(
            f"| {name} | {r['median_ns']:,.0f} | {r['min_ns']:,.0f}-{r['max_ns']:,.0f} | {vs} |"
        )
    ten = sorted(flags["ten_million_s"])[1]  # type: ignore[index]

    def median(name: str) -> float:
        value: float = core[name]["median"] if name in core else float("nan")
        return value

    set_ms, y_set_ms = (
        median(f"set {k} keys (HLC + LWWMap.set)"),
        median(f"pycrdt: set {k} keys (one transaction)"),
    )
    encode, y_encode = (
        median(f"encode full state, {k} entries"),
        median(f"pycrdt: encode full state, {k} entries"),
    )
    apply, y_apply = (
        median(f"decode + apply full state, {k} entries"),
        median(f"pycrdt: apply full state, {k} entries"),
    )
    full_bytes = core[f"encode full state, {k} entries"]["bytes"]
    y_full_bytes = core[f"pycrdt: encode full state, {k} entries"]["bytes"]
    sync1, y_sync1 = (
        median(f"sync, {k} keys, 1 differ"),
        median(f"pycrdt: sync, {k} keys, 1 differs"),
    )
    sync10 = median(f"sync, {k} keys, 10 differ")
    p50 = {name: run["write_to_all_p50_us"] / 1000 for name, run in (("3", tcp3), ("5", tcp5))}  # type: ignore[index]
    p99 = {name: run["write_to_all_p99_us"] / 1000 for name, run in (("3", tcp3), ("5", tcp5))}  # type: ignore[index]
    rtt = {name: run["raw_tcp_rtt_p50_us"] / 1000 for name, run in (("3", tcp3), ("5", tcp5))}  # type: ignore[index]
    burst = {name: run["burst_writes_per_s"] for name, run in (("3", tcp3), ("5", tcp5))}  # type: ignore[index]
    caught = catchup["catch_up_median_s"]  # type: ignore[index]
    runs = ", ".join(f"{x:.2f}" for x in catchup["catch_up_s"])  # type: ignore[index]
    started = catchup["process_start_median_s"]  # type: ignore[index]
    sim_p50 = sim["write_latency_5_nodes"]["p50_ms"]  # type: ignore[index]
    sim_repair = sim["partition_repair_10_of_n"]["sync_bytes"]  # type: ignore[index]
    sim_memory = sim["memory"]["bytes_per_key"]  # type: ignore[index]
    lines += [
        "",
        f"Redis: {flags['redis']}. 10,000,000 boolean checks: **{ten:.2f} s** "  # type: ignore[index]
        "(Erlang's ETS: about 0.15 s).",
        "",
        "## Replicated map",
        "",
        "| figure | chorus | pycrdt (Y-CRDT) | full-state resync |",
        "|---|---:|---:|---:|",
        f"| set {k} keys | {set_ms:,.0f} ms | {y_set_ms:,.0f} ms | |",
        f"| encode full state | {encode:,.1f} ms | {y_encode:,.1f} ms | same as chorus |",
        f"| apply full state to an empty replica | {apply:,.0f} ms | {y_apply:,.0f} ms | same as chorus |",
        f"| full state | {full_bytes:,} B | {y_full_bytes:,} B | |",
        f"| incremental sync, 1 key changed | {sync1:,.0f} B | {y_sync1:,.0f} B | {full_bytes:,} B |",
        f"| incremental sync, 10 keys changed | {sync10:,.0f} B | | {full_bytes:,} B |",
        "",
        "## Cluster, real processes on loopback",
        "",
        "| figure | 3 processes | 5 processes |",
        "|---|---:|---:|",
        f"| write visible on all, p50 | {p50['3']:.2f} ms | {p50['5']:.2f} ms |",
        f"| write visible on all, p99 | {p99['3']:.2f} ms | {p99['5']:.2f} ms |",
        f"| raw TCP round trip (same run), p50 | {rtt['3']:.3f} ms | {rtt['5']:.3f} ms |",
        f"| sustained writes on one node | {burst['3']:,.0f}/s | {burst['5']:,.0f}/s |",
        "",
        f"Catch-up of a restarted node holding {catchup['keys']:,} keys: **{caught:.2f} s** "  # type: ignore[index]
        f"(runs: {runs} s), after {started:.2f} s to start Python.",
        "",
        f"Simulated (MemoryNetwork, 1-5 ms per hop): a write visible on all 5 nodes p50 {sim_p50:.1f} ms; "
        f"repairing 10 of {k} diverged keys {sim_repair:,} B; memory {sim_memory:.0f} B per key.",
        "",
        *stability_lines(data["stability"]),  # type: ignore[arg-type]
        *calls_lines(data["calls"], data["owner_window"]),  # type: ignore[arg-type]
        *ui_lines(data["ui"], data["events"]),  # type: ignore[arg-type]
        *targeting_lines(data["targeting"]),  # type: ignore[arg-type]
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| boolean check within 1.5x of the plain function | {boolean / plain:.2f}x | {mark(boolean / plain <= 1.5)} |",
        f"| >= 100x faster than OpenFeature's provider | {of / boolean:,.0f}x | {mark(of / boolean >= 100)} |",
        f"| >= 200x faster than Unleash's client | {un / boolean:,.0f}x | {mark(un / boolean >= 200)} |",
        f"| percentage-of-actors check under 1 µs | {pct:,.0f} ns | {mark(pct < 1000)} |",
        f"| 3 rules x 3 conditions + split <= 2 µs (an actor seen before) | {typed:,.0f} ns | {mark(typed <= 2000)} |",
        f"| 1-key sync on {k} keys <= 2 KiB | {sync1:,.0f} B | {mark(sync1 <= 2048)} |",
        f"| full-state apply within 1.5x of pycrdt | {apply / y_apply:.2f}x | {mark(apply <= 1.5 * y_apply)} |",
        f"| full-state encode within 1.5x of pycrdt | {encode / y_encode:.1f}x | {mark(encode <= 1.5 * y_encode)} |",
        f"| propagation p50 <= 2 ms on 5 processes | {p50['5']:.2f} ms | {mark(p50['5'] <= 2)} |",
        f"| propagation p99 <= 10 ms on 5 processes | {p99['5']:.2f} ms | {mark(p99['5'] <= 10)} |",
        f"| catch-up of 100,000 keys <= 1 s | {caught:.2f} s | {mark(caught <= 1.0)} |",
        "",
        "![latency](latency.png) ![sync bytes](sync_bytes.png)",
        "",
    ]
    (RESULTS / "RESULTS.md").write_text("\n".join(lines))
    (RESULTS / "all.json").write_text(json.dumps(data, indent=2))
    plot(tcp3, tcp5, scaling)  # type: ignore[arg-type]
    print("\n".join(lines))
    print(
        f"\nwritten: {RESULTS / 'RESULTS.md'}, all.json, latency.png, sync_bytes.png",
        file=sys.stderr,
    )
    return 0


def stability_lines(st: dict[str, Any]) -> list[str]:
    """The tombstone-collection table (bench_stability.py), simulated."""

    def s(case: str, field: str) -> str:
        value = st[case][field]
        return "never" if value is None else f"{value / 1000:.2f} s"

    def both(case: str) -> str:
        missed = st[case]["not_collected"]
        late = f" (**{missed} never collected**)" if missed else ""
        return f"{s(case, 'median_ms')} | {s(case, 'p99_ms')}{late}"

    steady, memory = st["steady_state"], st["memory"]
    hb5, hb50 = st["heartbeat_5"], st["heartbeat_50"]
    cut = st["collection_partition_10s"]
    return [
        "## Tombstone collection by causal stability (simulated, 1-5 ms per hop)",
        "",
        "| delete to collected on all 5 nodes | p50 | p99 |",
        "|---|---:|---:|",
        f"| healthy | {both('collection_healthy')} |",
        f"| one clock +400 ms | {both('collection_skew_plus_400')} |",
        f"| one clock -400 ms | {both('collection_skew_minus_400')} |",
        f"| two clocks +400 and -400 ms | {both('collection_skew_two_800_apart')} |",
        f"| one node cut off for 10 s | {both('collection_partition_10s')} |",
        f"| the same, counted from the heal | {s('collection_partition_10s', 'after_heal_median_ms')} "
        f"| {s('collection_partition_10s', 'after_heal_p99_ms')} |",
        "",
        "| figure | 5 nodes | 50 nodes |",
        "|---|---:|---:|",
        f"| heartbeat | {hb5['heartbeat_bytes_on_wire_mean']:,.0f} B | {hb50['heartbeat_bytes_on_wire_mean']:,.0f} B |",
        f"| heartbeat with empty coverage and reports | {hb5['heartbeat_bytes_without_vectors']:,} B | {hb50['heartbeat_bytes_without_vectors']:,} B |",
        f"| stability bookkeeping sent per node | {hb5['bookkeeping_bytes_per_s_per_node'] / 1000:,.1f} kB/s | {hb50['bookkeeping_bytes_per_s_per_node'] / 1000:,.1f} kB/s |",
        f"| members message | {hb5['members_message_bytes']:,} B | {hb50['members_message_bytes']:,} B |",
        "",
        f"Five nodes deleting {steady['deletes_per_s']} keys/s hold a median "
        f"{steady['tombstones_per_node_median']:.0f} tombstones each (max "
        f"{steady['tombstones_per_node_max']:,}; the stable point trails the clock by a median "
        f"{steady['floor_lag_ms_median'] / 1000:.1f} s). A tombstone takes "
        f"{memory['heap_bytes_per_tombstone']:.0f} B of heap with its Merkle-tree share "
        f"(tracemalloc) and {memory['encoded_bytes_per_tombstone']:.0f} B encoded."
        + (
            f" **{early} deletes were collected while a node that had not seen them was cut off.**"
            if (early := cut["collected_while_a_node_was_cut_off"])
            else ""
        ),
        "",
    ]


def calls_lines(c: dict[str, Any], window: dict[str, Any]) -> list[str]:
    """Calls between two processes (bench_calls.py), beside raw TCP and HTTP; the
    ownership window (bench_owner_window.py), simulated."""
    rows = [
        ("`node.call` (TcpTransport)", "call"),
        ("raw TCP echo (trio)", "tcp"),
        ("HTTP POST via httpx (Starlette on Hypercorn)", "http"),
    ]
    return [
        "## Calls between nodes (two processes on loopback, 100-byte payload)",
        "",
        "| | round trip p50 | p99 | calls/s, 1 caller | 16 callers |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {c[k + '_p50_us']:,.0f} µs | {c[k + '_p99_us']:,.0f} µs "
            f"| {c[k + '_per_s_1']:,.0f} | {c[k + '_per_s_16']:,.0f} |"
            for name, k in rows
        ),
        "",
        "| after (simulated, 1-5 ms per hop) | every node names the final owners, median | max |",
        "|---|---:|---:|",
        *(
            f"| {case} | {window[case]['agreed_s']['median'] * 1000:,.0f} ms "
            f"| {window[case]['agreed_s']['max'] * 1000:,.0f} ms |"
            for case in window
        ),
        "",
    ]


def _feed_row(r: dict[str, Any], base: float) -> str:
    what = f"feed, {r['streams']} streams" if r["feed"] else "no feed"
    delivered = f"{r['delivered_us']:,.0f} µs" if r["feed"] else ""
    return f"| {what} | {r['write_us']:,.0f} µs | {r['write_us'] / base:.2f}x | {delivered} |"


TYPED = "3 rules x 3 conditions + split, evaluate"


def targeting_lines(t: dict[str, Any]) -> list[str]:
    """Typed-flag evaluation (bench_targeting.py): chorus' rows, then the peers that
    were installed, with their ratio to chorus."""
    lines = [
        "## Typed-flag evaluation (ns per evaluation, one process)",
        "",
        "| evaluation | median | min-max | vs chorus (actor seen / new actors) |",
        "|---|---:|---:|---|",
    ]
    for name, r in t.items():
        vs = ""
        if "vs_chorus" in r:
            vs = f"{r['vs_chorus']:.1f}x / {r['vs_chorus_new_actors']:.1f}x"
        lines.append(
            f"| {name} | {r['median_ns']:,.0f} | {r['min_ns']:,.0f}-{r['max_ns']:,.0f} | {vs} |"
        )
    return [*lines, ""]


def ui_lines(ui: dict[str, Any], events: list[dict[str, Any]]) -> list[str]:
    """The web UI's render time (bench_ui.py) and the change feed's costs
    (bench_events.py); the browser's write-to-painted latency needs Chromium:
    ``python benchmarks/bench_ui_latency.py``."""
    base = events[0]["write_us"]
    return [
        f"## Web UI and change feed (in process, {ui['flags']:,} flags; no network)",
        "",
        f"Flags page with {ui['flags']:,} flags: **{ui['page_ms']:.1f} ms** server-side "
        f"({ui['rows_ms']:.1f} ms reading the store, {ui['template_ms']:.1f} ms Jinja2), "
        f"{ui['page_bytes'] / 1024:.0f} KiB of HTML.",
        "",
        "| write (FlagStore over LocalMap) | median | vs no feed | every stream has it after |",
        "|---|---:|---:|---:|",
        *(_feed_row(r, base) for r in events),
        "",
        f"Memory per open stream: {events[-1]['bytes_per_stream'] / 1024:.1f} KiB "
        "(traced Python allocations).",
        "",
    ]


def plot(tcp3: dict[str, Any], tcp5: dict[str, Any], scaling: list[dict[str, Any]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plots", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7, 3.5))
    samples = [[s / 1000 for s in run["latency_samples_us"]] for run in (tcp3, tcp5)]
    ax.hist(samples, bins=40, label=["3 processes", "5 processes"], histtype="step", linewidth=1.5)
    ax.set_xlabel("write visible on every other node (ms)")
    ax.set_ylabel("writes")
    ax.set_title("Write-to-visible latency, real processes on loopback")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "latency.png", dpi=110)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sizes = [r["keys"] for r in scaling]
    ax.loglog(sizes, [r["full_state"] for r in scaling], "s--", label="full-state resync")
    ax.loglog(sizes, [r["digest_10"] for r in scaling], "o-", label="chorus digest, 10 keys differ")
    ax.loglog(sizes, [r["digest_1"] for r in scaling], "o-", label="chorus digest, 1 key differs")
    if "pycrdt_1" in scaling[0]:
        ax.loglog(
            sizes,
            [r["pycrdt_1"] for r in scaling],
            "^:",
            label="pycrdt state vector + update, 1 key",
        )
    ax.set_xlabel("keys in the map")
    ax.set_ylabel("bytes to sync")
    ax.set_title("Sync bytes against map size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "sync_bytes.png", dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())

"""Write the notebooks from their cells, and execute them so they carry their outputs.

    python notebooks/build.py            # rebuild and execute all four
    python notebooks/build.py --check    # execute the committed ones; fail on any error

Every notebook runs a scenario from `transport.scenarios` (tested in
tests/transport/test_scenarios.py) with a fixed seed, plots it, and ends with its
answer, computed from its own figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
SETUP = """\
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from transport import scenarios

SEED = 7  # the same seed gives the same figures
plt.rcParams["figure.figsize"] = (9, 3.6)"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "partitions": [
        (
            "md",
            """# Partitions: how long do replicas disagree, and which write wins?

Five nodes hold 50 keys. At 2 s the network splits into {a, b} and {c, d, e}; each
side then writes its own value to the same 10 keys. At 12 s the partition heals.
**How many keys differ between replicas over time, how soon after the heal do they
agree again, and which of two conflicting writes survives?**""",
        ),
        ("code", SETUP + "\n\nrun = scenarios.partitions(seed=SEED)"),
        (
            "code",
            """fig, ax = plt.subplots()
ax.plot(run.times, run.divergent, drawstyle="steps-post", color="tab:red")
ax.axvspan(run.partition_at, run.heal_at, color="0.9", label="partitioned")
ax.set_xlabel("simulated time (s)")
ax.set_ylabel("keys that differ between replicas")
ax.set_title("Divergence during a partition, and convergence after the heal")
ax.legend(loc="upper left")
plt.show()""",
        ),
        (
            "md",
            "Each conflict, and the value every node holds after the heal. The winner is the write with the greater hybrid logical clock timestamp (wall ms, logical counter, node).",
        ),
        (
            "code",
            """rows = ["| key | {a, b} wrote | its HLC | {c, d, e} wrote | its HLC | winner | greater HLC won |",
        "|---|---|---|---|---|---|---|"]
for c in run.conflicts:
    expected = c.left if c.left_ts > c.right_ts else c.right
    rows.append(f"| {c.key} | {c.left} | {c.left_ts} | {c.right} | {c.right_ts} | {c.winner} | {'yes' if c.winner == expected else 'NO'} |")
display(Markdown("\\n".join(rows)))""",
        ),
        ("md", "## Answer"),
        (
            "code",
            """peak = max(run.divergent)
settle = run.converged_at - run.heal_at
hlc_wins = sum(c.winner == (c.left if c.left_ts > c.right_ts else c.right) for c in run.conflicts)
display(Markdown(
    f"While partitioned, the replicas disagreed on at most **{peak}** keys: exactly the "
    f"conflicting ones. They agreed again **{settle:.2f} s** after the heal, the time for "
    f"heartbeats to notice the peers and one anti-entropy exchange. In **{hlc_wins} of "
    f"{len(run.conflicts)}** conflicts the write with the greater HLC timestamp won, on every node."
))""",
        ),
    ],
    "rolling-deploy": [
        (
            "md",
            """# A rolling deploy: is anything lost, and what do readers see?

Three nodes take a write every 0.2 s, and every node is read every 0.05 s. Each node
in turn is killed and started again, empty, 0.3 s later; it reports ready (`/ready`)
only once it has pulled a peer's whole state. Then every node is killed at once.
**Do ready nodes ever answer with lost data, and what happens when no node survives?**""",
        ),
        ("code", SETUP + "\n\nrun = scenarios.rolling_deploy(seed=SEED)"),
        (
            "code",
            """fig, axes = plt.subplots(2, 1, sharex=True, figsize=(9, 5.5))
for offset, (name, series) in enumerate(run.ready.items()):
    axes[0].plot(run.times, [s + 3 * offset for s in series], drawstyle="steps-post", label=name)
axes[0].set_yticks([3 * i + v for i in range(3) for v in (-1, 0, 1)],
                   [f"{n}: {s}" for n in run.ready for s in ("down", "syncing", "ready")], fontsize=7)
axes[0].set_title("Per-node readiness (each node restarted in turn, then all at once)")
axes[0].axvline(run.all_down_at, color="k", linestyle=":")
axes[1].plot(run.times, run.expected, color="k", linewidth=3, alpha=0.3, label="last write")
for name, series in run.value.items():
    axes[1].plot(run.times, [v if isinstance(v, int) else float("nan") for v in series], ".", markersize=3, label=name)
axes[1].axvline(run.all_down_at, color="k", linestyle=":")
axes[1].set_xlabel("simulated time (s)")
axes[1].set_ylabel("value read (a counter)")
axes[1].legend(loc="upper left", fontsize=8)
plt.show()""",
        ),
        ("md", "## Answer"),
        (
            "code",
            """display(Markdown(
    f"During the rolling restart the ready nodes answered **{run.ready_reads}** reads; "
    f"**{run.lost_reads}** of them missed a write made 0.1 s or more earlier. "
    f"{run.stale_reads} reads came before a write only milliseconds old had arrived. "
    f"When every node went down at once, the state went with them: on restart each node "
    f"answered `{run.after_all_down['a']!r}`, the caller's default. The design accepts "
    f"that loss: the state lives as long as one node does."
))""",
        ),
    ],
    "scale": [
        (
            "md",
            """# Scale: what does a write cost as the cluster grows, and what does repair cost?

**How do write latency, messages and bytes per write change from 3 to 50 nodes? How
do message loss and the anti-entropy interval set the time to converge? And how much
does repairing k differing keys cost with digest anti-entropy, against the full-state
resync that keathley/rollout does on join?**""",
        ),
        (
            "code",
            SETUP
            + """

sizes = (3, 5, 10, 20, 35, 50)
points = scenarios.scale_writes(seed=SEED, sizes=sizes)
losses = scenarios.loss_and_interval(seed=SEED)
repairs = scenarios.repair_cost(total_keys=20_000, differing=(1, 10, 100, 1000, 5000))""",
        ),
        (
            "code",
            """fig, (left, right) = plt.subplots(1, 2)
left.plot(sizes, [p.visible_on_all_ms for p in points], "o-")
left.set_xlabel("nodes")
left.set_ylabel("write visible on all nodes (ms, simulated)")
left.set_ylim(0, 10)
right.plot(sizes, [p.bytes_per_write for p in points], "o-", color="tab:orange")
right.set_xlabel("nodes")
right.set_ylabel("delta bytes per write, all peers")
fig.suptitle("One write: a delta to every peer, one hop (latency 1-5 ms)")
plt.tight_layout()
plt.show()""",
        ),
        (
            "code",
            """fig, ax = plt.subplots()
for interval in sorted({p.sync_interval_s for p in losses}):
    row = [p for p in losses if p.sync_interval_s == interval]
    ax.plot([p.loss for p in row], [p.converged_after_s for p in row], "o-", label=f"anti-entropy every {interval} s")
ax.set_xlabel("message loss (fraction of messages)")
ax.set_ylabel("time to converge after 100 writes (s)")
ax.legend()
plt.show()""",
        ),
        (
            "code",
            """fig, ax = plt.subplots()
ks = [r.differing for r in repairs]
ax.loglog(ks, [r.digest_bytes for r in repairs], "o-", label="Merkle digest anti-entropy")
ax.loglog(ks, [r.full_state_bytes for r in repairs], "s--", label="full-state resync")
ax.set_xlabel("keys that differ (of 20,000)")
ax.set_ylabel("bytes exchanged")
ax.legend()
plt.show()""",
        ),
        ("md", "## Answer"),
        (
            "code",
            """first, last = points[0], points[-1]
lossy = max((p for p in losses if p.sync_interval_s == min(x.sync_interval_s for x in losses)), key=lambda p: p.loss)
one = repairs[0]
crossing = next((r for r in repairs if r.digest_bytes >= r.full_state_bytes), None)
where = (f"the digest costs more than a full resync once {crossing.differing:,} keys "
         f"({crossing.differing / 20_000:.0%}) differ" if crossing else
         "the digest stayed cheaper at every difference measured")
display(Markdown(
    f"A write reached every node in **{first.visible_on_all_ms:.1f} ms** on {first.nodes} nodes "
    f"and **{last.visible_on_all_ms:.1f} ms** on {last.nodes}: one hop, whatever the size. Its "
    f"traffic grows linearly, {last.bytes_per_write / last.nodes:.0f} B per peer "
    f"({last.bytes_per_write:,.0f} B in all at {last.nodes} nodes). With {lossy.loss:.0%} message "
    f"loss and anti-entropy every {lossy.sync_interval_s} s, 100 writes converged in "
    f"{lossy.converged_after_s:.1f} s. Repairing {one.differing} differing key of 20,000 cost "
    f"**{one.digest_bytes:,} B** with the digest, against **{one.full_state_bytes:,} B** for a "
    f"full resync; {where}."
))""",
        ),
    ],
    "clock-skew": [
        (
            "md",
            """# Clock skew: does causality survive, and what does the skew guard hold back?

Four nodes whose wall clocks are off by -300, 0, +300 and +2,000 ms (the guard,
`max_offset_ms`, is 500). A chain of read-modify-writes hops between the first
three; then the +2,000 ms node tries to write, and so does the +300 ms one. **Is every
write ordered after what its node had seen, and what happens to entries from a clock
too far ahead?**""",
        ),
        ("code", SETUP + "\n\nrun = scenarios.clock_skew(seed=SEED)"),
        (
            "code",
            """fig, ax = plt.subplots()
colors = {"slow": "tab:blue", "exact": "tab:green", "fast": "tab:orange"}
base = run.timeline[0][3]
for name, color in colors.items():
    pts = [(t, w - base) for t, n, _, w in run.timeline if n == name]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", color=color, label=f"{name} ({run.skews_ms[name]:+} ms)")
ax.plot([t for t, *_ in run.timeline], [w - base for *_, w in run.timeline], color="0.6", linewidth=0.8)
ax.set_xlabel("simulated time (s)")
ax.set_ylabel("HLC wall time of each write (ms, from the first)")
ax.set_title("A chain of writes across skewed nodes (grey: in real-time order)")
ax.legend()
plt.show()""",
        ),
        (
            "code",
            """fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(list(run.held_back), list(run.held_back.values()), color="tab:purple")
ax.set_ylabel("entries held back")
ax.set_title("Entries each node held back (too far ahead of its clock)")
plt.show()""",
        ),
        ("md", "## Answer"),
        (
            "code",
            """held = ", ".join(f"{n}: {c}" for n, c in run.held_back.items())
display(Markdown(
    f"Across {len(run.timeline)} chained writes on nodes up to 600 ms apart, **{run.causal_violations}** "
    f"were ordered before a write their node had already seen: every received timestamp goes "
    f"through the HLC, and a write is ordered after the entries its node holds back, so a "
    f"lagging node writes after what it read. **{run.inversions}** writes carry an older "
    f"timestamp than a write made earlier in real time (the grey line stepping down): that "
    f"can still happen to a write made while an earlier one is in flight, and skew bounds "
    f"the window. The last write in real time was {run.last_written}; every node ended with "
    f"**{run.final_value}**. Entries more than 500 ms ahead of a receiver's clock were held "
    f"back, not dropped ({held}): the +300 ms node's write reached the -300 ms node after "
    f"**{run.accepted_after_s:.1f} s**, once its clock allowed it. The +2,000 ms node refused "
    f"its own write: *{run.far_refused}*. A clock that is wrong delays or refuses its own "
    f"writes; it never corrupts the others'. The counters are `node.stats.held_back` and "
    f"`node.stats.writes_refused`."
))""",
        ),
    ],
}


def build(name: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for kind, source in NOTEBOOKS[name]:
        cell = (
            nbformat.v4.new_markdown_cell(source)
            if kind == "md"
            else nbformat.v4.new_code_cell(source)
        )
        nb.cells.append(cell)
    return nb


def execute(nb: nbformat.NotebookNode) -> float:
    """Run every cell in a fresh kernel (cwd: the repository); return seconds taken.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed.
    """
    started = time.monotonic()
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(HERE.parent)}}
    ).execute()
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="execute the committed notebooks only")
    args = parser.parse_args(argv)
    for name in NOTEBOOKS:
        path = HERE / f"{name}.ipynb"
        nb = nbformat.read(path, as_version=4) if args.check else build(name)
        seconds = execute(nb)
        if not args.check:
            nbformat.write(nb, path)
        print(f"{path.name}: executed in {seconds:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

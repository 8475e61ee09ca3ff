"""The change feed (``GET /events``): memory per open stream, and what open streams
add to the cost of a write.

In one trio run, over a `FlagStore` on a `flags.LocalMap` (no network: the figures
are the feed's own), with a `flags._events.FlagEvents`:

- memory: ``tracemalloc``'s traced bytes after opening N streams (each a task
  iterating `FlagEvents.stream` past its snapshot, as the HTTP server does), minus
  before, divided by N. The HTTP connection's own buffers (Hypercorn's, the
  kernel's) are not counted.
- cost of a write: the time of ``store.enable_percentage_of_actors(...)`` alone (the writer's
  thread: the flag's JSON is encoded once and every stream is woken), and the time
  until every stream has the event in hand (the same thread here, as under
  ``chorus serve``), with no feed, and a feed with 0, 1, 10 and 100 streams;
  medians of many writes.

Prints a Markdown table and writes benchmarks/results/events.json.
Run: ``python benchmarks/bench_events.py`` (``--writes 300 --streams 100 --repeats 5``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__" and str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

from _report import report  # noqa: E402

from flags import FlagStore, LocalMap  # noqa: E402
from flags._events import FlagEvents  # noqa: E402


async def measure(streams: int | None, writes: int) -> dict[str, Any]:
    """``streams`` open streams on a feed; None: no feed at all (the baseline)."""
    store = FlagStore(LocalMap("n1"))
    for i in range(20):  # a small realistic flag set in the snapshot
        store.enable(f"flag-{i}")
    events = FlagEvents(store, node_id="n1") if streams is not None else None
    streams = streams or 0
    received = [0] * streams
    opened = trio.Semaphore(0)

    async def follow(i: int) -> None:
        assert events is not None
        stream = events.stream()
        await stream.__anext__()  # retry
        await stream.__anext__()  # snapshot
        opened.release()
        async for _ in stream:
            received[i] += 1

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    write_s: list[float] = []
    delivered_s: list[float] = []
    async with trio.open_nursery() as nursery:
        for i in range(streams):
            nursery.start_soon(follow, i)
        for _ in range(streams):
            await opened.acquire()
        per_stream = (tracemalloc.get_traced_memory()[0] - before) / max(1, streams)
        tracemalloc.stop()
        for n in range(writes):
            target = n + 1
            started = time.perf_counter()
            store.enable_percentage_of_actors("hot", (n % 100 + 1) / 100)
            write_s.append(time.perf_counter() - started)
            while any(r < target for r in received):
                await trio.lowlevel.checkpoint()
            delivered_s.append(time.perf_counter() - started)
        if events is not None:
            events.close()
        nursery.cancel_scope.cancel()
    return {
        "feed": events is not None,
        "streams": streams,
        "bytes_per_stream": per_stream if streams else 0.0,
        "write_us": statistics.median(write_s) * 1e6,
        "delivered_us": statistics.median(delivered_s) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks" / "results" / "events.json"
    )
    args = parser.parse_args()
    counts: list[int | None] = [None, *sorted({0, 1, 10, args.streams})]
    runs = [[trio.run(measure, n, args.writes) for n in counts] for _ in range(args.repeats)]
    results = [
        {
            **runs[0][i],
            **{
                k: statistics.median(run[i][k] for run in runs)
                for k in ("write_us", "delivered_us", "bytes_per_stream")
            },
        }
        for i in range(len(counts))
    ]
    base = results[0]["write_us"]
    rows = [("write, no feed", f"{base:.1f} µs", "a FlagStore over a LocalMap")]
    for r in results[1:]:
        rows.append(
            (
                f"write, feed with {r['streams']} streams",
                f"{r['write_us']:.1f} µs",
                f"{r['write_us'] / base:.2f}x; every stream has it after "
                f"{r['delivered_us']:.0f} µs",
            )
        )
    big = results[-1]
    rows.append(
        (
            "memory per open stream",
            f"{big['bytes_per_stream'] / 1024:.1f} KiB",
            f"traced Python allocations, {big['streams']} streams past their snapshot",
        )
    )
    report(
        "Change feed: cost of open streams (medians of "
        f"{args.writes} writes, median of {args.repeats} runs; one trio run, no network)",
        rows,
        results,
        args.json,
    )


if __name__ == "__main__":
    main()

"""Catch-up of a restarted node holding 100,000 keys, with real processes on loopback.

Two `transport.process` nodes; node a writes the keys (inside its process), node b
holds them all; b is killed (-9) and started again, empty; the time is from its
start until it reports synced with every key (the moment ``/ready`` would say 200).
Process start-up (Python, imports) is reported apart. Prints a Markdown table and
writes benchmarks/results/catchup.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import time
from pathlib import Path

from transport.process import NodeProcess

SECRET = "ca7c40b3e4c4a1b2c3d4e5f60718293a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "catchup.json"
    )
    args = parser.parse_args(argv)
    pa, pb = free_port(), free_port()
    a = NodeProcess("a", f"127.0.0.1:{pa}", [], SECRET)
    b = None
    catch_up_s, startup_s = [], []
    try:
        a.request(timeout=120, op="burst", map="m", prefix="key:", count=args.keys)
        for _ in range(args.repeats):
            started = time.monotonic()
            b = NodeProcess("b", f"127.0.0.1:{pb}", [f"127.0.0.1:{pa}"], SECRET)
            up = time.monotonic()  # the process answers: Python and imports are done
            while True:
                status = b.request(op="status")
                if status["synced"]:
                    break
                time.sleep(0.002)
            synced = time.monotonic()
            count = len(b.request(timeout=60, op="items", map="m")["items"])
            if count != args.keys:
                raise SystemExit(f"b synced with {count} keys, expected {args.keys}")
            startup_s.append(up - started)
            catch_up_s.append(synced - up)
            b.kill()
    finally:
        a.kill()
        if b is not None and b.process.poll() is None:
            b.kill()
    result = {
        "keys": args.keys,
        "catch_up_s": catch_up_s,
        "catch_up_median_s": statistics.median(catch_up_s),
        "process_start_median_s": statistics.median(startup_s),
    }
    median, low, high = result["catch_up_median_s"], min(catch_up_s), max(catch_up_s)
    start = result["process_start_median_s"]
    print(
        f"| catch-up of a restarted node, {args.keys:,} keys | {median:.2f} s "
        f"(min {low:.2f}, max {high:.2f}) | plus {start:.2f} s to start Python | target <= 1 s |"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

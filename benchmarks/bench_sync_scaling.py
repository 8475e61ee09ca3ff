"""Sync bytes against map size: digest anti-entropy, full-state resync, pycrdt.

For maps of 1,000 to 100,000 keys where one key (and ten keys) differ: the bytes
the digest protocol exchanges both ways, the bytes of a full-state resync (what
keathley/rollout ships on join), and pycrdt's state vector plus update.
Writes benchmarks/results/sync_scaling.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import crdt
from hlc import Timestamp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "sync_scaling.json"
    )
    args = parser.parse_args(argv)
    try:
        import pycrdt
    except ImportError:
        pycrdt = None
    rows: list[dict[str, Any]] = []
    for n in (1_000, 3_000, 10_000, 30_000, 100_000):
        base = crdt.LWWMap()
        for i in range(n):
            base.set(f"flag:{i}", i % 7 == 0, Timestamp(1_700_000_000_000 + i, 0, "a"))
        record: dict[str, Any] = {"keys": n, "full_state": len(crdt.encode_map(base))}
        for k in (1, 10):
            mine, theirs = base.copy(), base.copy()
            for i in range(k):
                theirs.set(
                    f"flag:{i * (n // k)}", "changed", Timestamp(1_800_000_000_000 + i, 0, "b")
                )
            record[f"digest_{k}"] = crdt.sync_exchange(mine, theirs)[1]
        if pycrdt is not None:
            doc = pycrdt.Doc()
            ymap = doc.get("flags", type=pycrdt.Map)
            with doc.transaction():
                for i in range(n):
                    ymap[f"flag:{i}"] = i % 7 == 0
            replica = pycrdt.Doc()
            replica.get("flags", type=pycrdt.Map)
            replica.apply_update(doc.get_update())
            vector = replica.get_state()
            ymap["flag:0"] = "changed"
            record["pycrdt_1"] = len(vector) + len(doc.get_update(vector))
        rows.append(record)
        print(record)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

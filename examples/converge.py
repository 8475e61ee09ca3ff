"""Two replicas of a feature-flag map diverge, lose a message, and converge.

Uses only the public API of hlc/ and crdt/: no network, so the "wire" here is a list
of encoded messages that this script delivers, drops and replays by hand. The node
runtime (transport/) does the same over real sockets.

Run: ``./scripts/demo`` (or ``python examples/converge.py`` with chorus installed).
"""

from __future__ import annotations

import time

import crdt
from hlc import HLC, system_wall_ms


def show(title: str, *replicas: tuple[str, crdt.LWWMap]) -> None:
    print(f"\n{title}")
    for name, m in replicas:
        flags = ", ".join(f"{k!s}={v}" for k, v in sorted(m.items())) or "(empty)"
        print(f"  {name}: {flags}   [{len(m)} live, {m.tombstone_count} tombstones]")


def deliver(data: bytes, replica: crdt.LWWMap, clock: HLC) -> None:
    """Decode a delta, pass its timestamp through the receiver's HLC, and merge it."""
    delta = crdt.decode_map(data)
    newest = delta.max_timestamp()
    if newest is not None:
        clock.update(newest)  # so the receiver's next write is ordered after what it saw
    replica.merge(delta)


def main() -> int:
    # Node b's wall clock runs 40 ms fast: the HLC keeps causality all the same.
    clock_a = HLC("node-a")
    clock_b = HLC("node-b", wall_ms=lambda: system_wall_ms() + 40)
    a, b = crdt.LWWMap(), crdt.LWWMap()
    wire_to_b: list[bytes] = []
    wire_to_a: list[bytes] = []

    print("chorus: two in-memory replicas of a flag map (hlc + crdt, no network)")

    # 1. Each node writes; deltas are encoded for the wire.
    wire_to_b.append(crdt.encode_map(a.set("new-checkout", True, clock_a.now())))
    wire_to_b.append(crdt.encode_map(a.set("dark-mode", False, clock_a.now())))
    wire_to_a.append(crdt.encode_map(b.set("search-v2", True, clock_b.now())))

    # 2. A conflict: both nodes set the same flag concurrently.
    wire_to_b.append(crdt.encode_map(a.set("banner", "spring", clock_a.now())))
    wire_to_a.append(crdt.encode_map(b.set("banner", "summer", clock_b.now())))
    show("after local writes (not yet exchanged):", ("a", a), ("b", b))

    # 3. Deliver, but the network loses a's "dark-mode" delta and duplicates b's.
    lost = wire_to_b.pop(1)
    for data in wire_to_b:
        deliver(data, b, clock_b)
    for data in wire_to_a + wire_to_a:  # duplicated: merge is idempotent
        deliver(data, a, clock_a)
    print(f"\nlost on the way to b: {len(lost)} bytes (the dark-mode delta)")
    show("after delivery with one loss and duplicates:", ("a", a), ("b", b))
    winner = a.register("banner")
    assert winner is not None
    print(f"  banner conflict: {winner.value!r} wins, written at {winner.timestamp} (greater HLC)")

    # 4. Anti-entropy: a Merkle digest exchange in rounds repairs the loss.
    started = time.perf_counter()
    step, sides, turn = crdt.sync_start(a), (a, b), 1
    rounds, sent = 0, 0
    while not step.done:
        wire = crdt.encode_sync_step(step)
        rounds, sent = rounds + 1, sent + len(wire)
        step, changed = crdt.sync_respond(sides[turn], crdt.decode_sync_step(wire))
        if changed:
            print(f"  round {rounds}: replica {'ab'[turn]} repaired {sorted(changed)}")
        turn ^= 1
    elapsed_ms = (time.perf_counter() - started) * 1000
    summary = f"{rounds} messages, {sent} bytes, {elapsed_ms:.1f} ms"
    show(f"after anti-entropy ({summary}):", ("a", a), ("b", b))

    # 5. A delete travels as a tombstone and wins over the older write.
    wire = crdt.encode_map(b.delete("search-v2", clock_b.now()))
    a.merge(crdt.decode_map(wire))
    show("after b deletes search-v2:", ("a", a), ("b", b))

    converged = a == b
    print(f"\nconverged: {'yes' if converged else 'NO'} (full state equal, tombstones included)")
    return 0 if converged else 1


if __name__ == "__main__":
    raise SystemExit(main())

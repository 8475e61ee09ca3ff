"""One anti-entropy exchange between two replicas in the same process, over the codec."""

from __future__ import annotations

from ._codec import decode_sync_step, encode_sync_step
from ._map import LWWMap
from ._sync import DEFAULT_THRESHOLD, sync_respond, sync_start


def sync_exchange(
    a: LWWMap, b: LWWMap, *, threshold: int = DEFAULT_THRESHOLD, max_steps: int = 16
) -> tuple[int, int]:
    """Run the digest protocol between ``a`` and ``b`` until it is done.

    ``a`` opens with `sync_start`; each step is encoded and decoded, as it would
    travel, and answered by the other side with `sync_respond`. Both maps end equal
    (unless changed meanwhile). For tests, benchmarks and simulations; a Node runs
    the same protocol over its transport.

    Args:
        a, b: the two replicas, updated in place.
        threshold: see `sync_respond`.
        max_steps: how many messages the exchange may take.

    Returns:
        ``(messages, bytes)``: steps sent, and their encoded size in bytes.

    Raises:
        RuntimeError: the exchange took more than ``max_steps`` messages.
    """
    sides, turn = (a, b), 1
    step = sync_start(a)
    messages = total = 0
    while not step.done:
        if messages == max_steps:
            raise RuntimeError(f"anti-entropy did not settle within {max_steps} messages")
        wire = encode_sync_step(step)
        messages, total = messages + 1, total + len(wire)
        step, _ = sync_respond(sides[turn], decode_sync_step(wire), threshold=threshold)
        turn ^= 1
    return messages, total

"""Digest anti-entropy in rounds: two replicas descend the Merkle tree together.

A sans-IO protocol in the manner of h11: no sockets, no clocks, bytes neither in nor
out (the codec turns steps into bytes). Each side holds an `LWWMap`; one calls
`sync_start`, then both sides answer every step they receive with `sync_respond`
until a step is `SyncStep.done`. The protocol keeps no session state, so a lost,
duplicated or late step does no harm: the next round starts afresh.

One round, for each tree node the incoming step summarises:

- equal summaries: nothing more to do under it;
- one side is empty there, the two hold at most ``threshold`` entries together, or
  the node is a leaf bucket: the responder ships all its entries under it and marks
  it *complete*;
- otherwise the responder sends the summaries of its children, and the other side
  compares them in the next round.

A side that receives a complete tree node merges the entries, then ships back its own
entries there that differ from what it received, which is exactly what the sender
lacks. Two replicas that differ in k of n keys settle in about ``DEPTH + 3`` steps
and exchange O(k * FANOUT * DEPTH) summaries plus the k differing entries, where a
full-state resync (keathley/rollout's join) ships all n.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ._map import LWWMap
from ._merkle import DEPTH, ROOT, Digest, Prefix, check_prefix
from ._values import Key

#: Two tree nodes holding at most this many entries together are settled by shipping
#: their entries rather than descending further.
DEFAULT_THRESHOLD = 32


def _to_prefixes(items: object) -> tuple[Prefix, ...]:
    return tuple(check_prefix(p) for p in items)  # type: ignore[attr-defined]


@attrs.frozen
class SyncStep:
    """One message of the anti-entropy protocol.

    Attributes:
        digest: tree nodes for the receiver to compare with its own.
        delta: entries for the receiver to merge.
        complete: tree nodes under which ``delta`` holds every entry the sender has;
            the receiver answers with its own entries there that differ.
        pull: tree nodes the receiver should send in full, marked complete, whatever
            it holds there (nothing included): how a joining replica asks for state.
    """

    digest: Digest = attrs.field(factory=lambda: Digest(()))
    delta: LWWMap = attrs.field(factory=LWWMap)
    complete: tuple[Prefix, ...] = attrs.field(default=(), converter=_to_prefixes)
    pull: tuple[Prefix, ...] = attrs.field(default=(), converter=_to_prefixes)

    @property
    def done(self) -> bool:
        """True when the step carries nothing: the exchange is over."""
        return not (self.digest.summaries or self.delta._regs or self.complete or self.pull)


def sync_start(replica: LWWMap) -> SyncStep:
    """Open an exchange: the step that carries ``replica``'s root summary."""
    return SyncStep(digest=replica.digest([ROOT]))


def sync_pull(prefixes: Iterable[Prefix] = (ROOT,)) -> SyncStep:
    """Ask for everything the other side holds under ``prefixes`` (all, by default).

    The answer marks each prefix complete, even where the other side holds nothing,
    so a joining replica can tell (with `Coverage`) when it has received everything.
    """
    return SyncStep(pull=tuple(prefixes))


def sync_respond(
    replica: LWWMap, step: SyncStep, *, threshold: int = DEFAULT_THRESHOLD
) -> tuple[SyncStep, set[Key]]:
    """Apply a received step to ``replica`` and return the answer.

    Args:
        replica: this side's map; it is updated in place with the step's delta.
        step: the step received from the other side.
        threshold: see `DEFAULT_THRESHOLD`; both sides may use different values.

    Returns:
        ``(answer, changed)``: the step to send back (``answer.done`` when there is
        nothing left to say), and the keys whose visible value changed here.
    """
    changed = replica.merge(step.delta)
    tree = replica._tree()
    reply_keys: list[Key] = []

    # Answer the sender's complete tree nodes with what it lacks there.
    sent, ours = step.delta._regs, replica._regs
    for key in tree.keys_under(step.complete):
        entry = sent.get(key)
        if entry is None or entry != ours[key]:
            reply_keys.append(key)

    # Compare the sender's summaries with ours; ship what it pulls.
    summaries: list[tuple[Prefix, int, int]] = []
    complete: list[Prefix] = list(step.pull)
    for prefix, their_hash, their_count in step.digest:
        our_hash, our_count = tree.summary(prefix)
        if (our_hash, our_count) == (their_hash, their_count):
            continue
        if (
            not our_count
            or not their_count
            or our_count + their_count <= threshold
            or prefix[0] >= DEPTH
        ):
            complete.append(prefix)
        else:
            summaries.extend(tree.children(prefix))
    reply_keys.extend(tree.keys_under(complete))
    delta = replica._subset(dict.fromkeys(reply_keys))
    answer = SyncStep(digest=Digest(summaries), delta=delta, complete=complete)
    return answer, changed

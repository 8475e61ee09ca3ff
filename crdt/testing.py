"""Hypothesis strategies and law checkers for CRDTs, ours and yours.

Strategies draw from small alphabets on purpose, so operations collide on the same
keys, timestamps and nodes, where the interesting bugs live::

    from hypothesis import given
    from crdt.testing import lww_maps, check_semilattice, join_maps

    @given(lww_maps(), lww_maps(), lww_maps())
    def test_merge_is_a_join(a, b, c):
        check_semilattice(join_maps, a, b, c)

`check_semilattice` takes any ``join(a, b) -> state`` that does not mutate its
arguments, so it serves any state-based CRDT. Requires hypothesis (the ``test``
extra); importing this module without it raises ImportError.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from hlc import HLC, MAX_LOGICAL, MAX_WALL_MS, ClockSkewError, Timestamp

from ._exchange import sync_exchange
from ._map import LWWMap
from ._register import TOMBSTONE, LWWRegister
from ._values import Key, encode_value

__all__ = [
    "LWWMapReplicas",
    "Operation",
    "apply_operations",
    "check_identity",
    "check_semilattice",
    "join_maps",
    "join_registers",
    "keys",
    "lww_maps",
    "model_state",
    "node_ids",
    "operations",
    "registers",
    "timestamps",
    "values",
    "visible",
]

S = TypeVar("S")

#: ``("set", key, value, ts)`` or ``("delete", key, None, ts)``.
Operation: TypeAlias = tuple[str, Key, Any, Timestamp]


def node_ids(*, small: bool = True) -> st.SearchStrategy[str]:
    """Node ids: three fixed names when ``small`` (to force ties), else any valid id."""
    if small:
        return st.sampled_from(["a", "b", "c"])
    return st.text(min_size=1, max_size=16).filter(lambda s: len(s.encode("utf-8")) <= 255)


def timestamps(
    *,
    wall_ms: st.SearchStrategy[int] | None = None,
    logical: st.SearchStrategy[int] | None = None,
    nodes: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[Timestamp]:
    """Valid Timestamps. By default fields span their whole range, biased to small."""
    if wall_ms is None:
        wall_ms = st.integers(0, 5) | st.integers(0, MAX_WALL_MS)
    if logical is None:
        logical = st.integers(0, 3) | st.integers(0, MAX_LOGICAL)
    if nodes is None:
        nodes = node_ids(small=False)
    return st.builds(Timestamp, wall_ms, logical, nodes)


def _small_timestamps() -> st.SearchStrategy[Timestamp]:
    return timestamps(wall_ms=st.integers(0, 6), logical=st.integers(0, 2), nodes=node_ids())


def keys() -> st.SearchStrategy[Key]:
    """Map keys: short str, bytes, ints and tuples of them, prone to collide."""
    scalar: st.SearchStrategy[Key] = (
        st.sampled_from(["", "a", "b", "flag:x"])
        | st.binary(max_size=2)
        | st.integers(-3, 3)
        | st.integers()
    )
    return st.recursive(
        scalar, lambda inner: st.tuples(inner) | st.tuples(inner, inner), max_leaves=4
    )


def values() -> st.SearchStrategy[Any]:
    """CBOR-encodable values, nested lists and str-keyed dicts included."""
    scalar = (
        st.none()
        | st.booleans()
        | st.integers(-3, 3)
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=8)
        | st.binary(max_size=8)
    )
    return st.recursive(
        scalar,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=6,
    )


def registers(
    ts: st.SearchStrategy[Timestamp] | None = None,
) -> st.SearchStrategy[LWWRegister]:
    """LWWRegisters, tombstones included, on a small timestamp domain."""
    return st.builds(
        LWWRegister, values() | st.just(TOMBSTONE), _small_timestamps() if ts is None else ts
    )


def operations(
    key: st.SearchStrategy[Key] | None = None,
    ts: st.SearchStrategy[Timestamp] | None = None,
) -> st.SearchStrategy[Operation]:
    """Writes and deletes on a few keys, at timestamps drawn from a small domain."""
    common: list[Key] = ["a", "b", ("t", 1), 7]
    some_keys = st.sampled_from(common) | keys()
    k = some_keys if key is None else key
    t = _small_timestamps() if ts is None else ts
    sets = st.tuples(st.just("set"), k, values(), t)
    deletes = st.tuples(st.just("delete"), k, st.none(), t)
    return st.one_of(sets, sets, deletes)


def apply_operations(operations: Iterable[Operation], into: LWWMap | None = None) -> LWWMap:
    """Apply operations to ``into`` (a new map by default) and return it."""
    m = LWWMap() if into is None else into
    for kind, key, value, ts in operations:
        if kind == "set":
            m.set(key, value, ts)
        else:
            m.delete(key, ts)
    return m


def lww_maps(
    ops: st.SearchStrategy[Operation] | None = None, *, max_size: int = 12
) -> st.SearchStrategy[LWWMap]:
    """LWWMaps built from random operation histories."""
    return st.lists(operations() if ops is None else ops, max_size=max_size).map(apply_operations)


def model_state(operations: Iterable[Operation]) -> dict[Key, bytes]:
    """The LWW answer for a history: each key's write with the greatest timestamp.

    Ties on timestamp go to the greater canonical CBOR encoding, and a delete loses a
    tie. Keys whose winner is a delete are absent.

    Returns:
        ``{key: canonical CBOR of the winning value}``; compare it with `visible`.
        Bytes, not values, so ``1`` and ``True``, or ``0.0`` and ``-0.0``, differ.
    """
    best: dict[Key, tuple[Timestamp, bytes]] = {}
    for kind, key, value, ts in operations:
        candidate = (ts, encode_value(value) if kind == "set" else b"")
        current = best.get(key)
        if current is None or candidate > current:
            best[key] = candidate
    return {k: payload for k, (_, payload) in best.items() if payload}


def visible(m: LWWMap) -> dict[Key, bytes]:
    """``{key: canonical CBOR of the value}`` for the live keys of a map."""
    return {key: encode_value(value) for key, value in m.items()}


def join_maps(a: LWWMap, b: LWWMap) -> LWWMap:
    """The join of two maps, leaving both untouched."""
    result = a.copy()
    result.merge(b)
    return result


def join_registers(a: LWWRegister, b: LWWRegister) -> LWWRegister:
    """The join of two registers."""
    return a.merge(b)


def check_semilattice(
    join: Callable[[S, S], S],
    a: S,
    b: S,
    c: S,
    *,
    equal: Callable[[S, S], bool] = lambda x, y: x == y,
) -> None:
    """Assert that ``join`` is commutative, associative and idempotent on a, b, c.

    Raises:
        AssertionError: naming the law that failed.
    """
    assert equal(join(a, b), join(b, a)), "join is not commutative"
    assert equal(join(join(a, b), c), join(a, join(b, c))), "join is not associative"
    assert equal(join(a, a), a), "join is not idempotent"
    ab = join(a, b)
    assert equal(join(ab, a), ab), "join does not absorb a merged-in state"


def check_identity(
    join: Callable[[S, S], S],
    bottom: S,
    a: S,
    *,
    equal: Callable[[S, S], bool] = lambda x, y: x == y,
) -> None:
    """Assert that ``bottom`` (the empty state) is the identity of ``join``."""
    assert equal(join(bottom, a), a), "bottom is not a left identity"
    assert equal(join(a, bottom), a), "bottom is not a right identity"


class LWWMapReplicas(RuleBasedStateMachine):
    """A stateful model of LWWMap replicas exchanging deltas over a faulty network.

    Three replicas, each with its own HLC over a hand-driven wall clock that may run
    ahead or behind (skew). Rules write and delete on any replica, deliver, duplicate,
    reorder and drop deltas, advance clocks, and run anti-entropy between two
    replicas over the codec. A delta whose timestamp the receiver's clock refuses
    (`hlc.ClockSkewError`) is held back and retried later, never dropped.

    Checked after every step: no replica holds anything that was never written.
    Checked by the ``settle`` rule, at random points: once every pair has synced, all
    replicas are equal and show the LWW answer over every write (`model_state`).

    Use it as a test in one line: ``TestReplicas = LWWMapReplicas.TestCase``.
    """

    NAMES = ("r0", "r1", "r2")

    def __init__(self) -> None:
        super().__init__()
        self.walls = {name: 1_000 for name in self.NAMES}
        self.clocks = {
            name: HLC(
                name, max_offset_ms=200, wall_ms=functools.partial(self.walls.__getitem__, name)
            )
            for name in self.NAMES
        }
        self.replicas = {name: LWWMap() for name in self.NAMES}
        self.inboxes: dict[str, list[LWWMap]] = {name: [] for name in self.NAMES}
        self.history: list[Operation] = []
        self.everything = LWWMap()

    def _write(self, name: str, key: Key, value: Any, delete: bool) -> None:
        ts = self.clocks[name].now()
        m = self.replicas[name]
        delta = m.delete(key, ts) if delete else m.set(key, value, ts)
        self.history.append(("delete" if delete else "set", key, value, ts))
        self.everything.merge(delta)
        for other in self.NAMES:
            if other != name:
                self.inboxes[other].append(delta)

    @rule(name=st.sampled_from(NAMES), key=st.sampled_from(["a", "b", ("c", 1)]), value=values())
    def write(self, name: str, key: Key, value: Any) -> None:
        self._write(name, key, value, delete=False)

    @rule(name=st.sampled_from(NAMES), key=st.sampled_from(["a", "b", ("c", 1)]))
    def delete(self, name: str, key: Key) -> None:
        self._write(name, key, None, delete=True)

    @rule(name=st.sampled_from(NAMES), step_ms=st.integers(-50, 300))
    def tick(self, name: str, step_ms: int) -> None:
        """Move one wall clock, backwards included: skew between replicas grows."""
        self.walls[name] = max(0, self.walls[name] + step_ms)

    @rule(data=st.data(), duplicate=st.booleans())
    def deliver(self, data: st.DataObject, duplicate: bool) -> None:
        """Deliver any pending delta (reordering); keep a copy to deliver again."""
        pending = [name for name in self.NAMES if self.inboxes[name]]
        if not pending:
            return
        name = data.draw(st.sampled_from(pending))
        index = data.draw(st.integers(0, len(self.inboxes[name]) - 1))
        delta = self.inboxes[name][index]
        newest = delta.max_timestamp()
        try:
            if newest is not None:
                self.clocks[name].update(newest)
        except ClockSkewError:
            return  # held back: it stays in the inbox until the clock allows it
        if not duplicate:
            del self.inboxes[name][index]
        self.replicas[name].merge(delta)

    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        """Lose a pending delta: anti-entropy must repair it."""
        pending = [name for name in self.NAMES if self.inboxes[name]]
        if pending:
            name = data.draw(st.sampled_from(pending))
            self.inboxes[name].pop(data.draw(st.integers(0, len(self.inboxes[name]) - 1)))

    @rule(a=st.sampled_from(NAMES), b=st.sampled_from(NAMES))
    def sync(self, a: str, b: str) -> None:
        """One anti-entropy session, started by ``a``: afterwards a and b are equal."""
        if a != b:
            expected = join_maps(self.replicas[a], self.replicas[b])
            _sync_over_codec(self.replicas[a], self.replicas[b])
            assert self.replicas[a] == self.replicas[b] == expected, "one session must equalise"

    @rule()
    def settle(self) -> None:
        """Sync along a chain and back: r0-r1, r1-r2, then r0-r1 again."""
        names = self.NAMES
        for a, b in itertools.pairwise(names):
            _sync_over_codec(self.replicas[a], self.replicas[b])
        _sync_over_codec(self.replicas[names[0]], self.replicas[names[1]])
        first = self.replicas[names[0]]
        for name in self.NAMES:
            assert self.replicas[name] == self.everything, f"{name} did not converge"
        assert visible(first) == model_state(self.history)

    @invariant()
    def nothing_is_invented(self) -> None:
        for name, m in self.replicas.items():
            assert join_maps(self.everything, m) == self.everything, f"{name} holds unknown writes"


def _sync_over_codec(a: LWWMap, b: LWWMap) -> None:
    try:
        sync_exchange(a, b)
    except RuntimeError as exc:
        raise AssertionError(str(exc)) from None

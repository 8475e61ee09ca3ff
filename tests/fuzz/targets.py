"""The decoders under fuzz: how to call each, what it may raise, and valid inputs for it.

A *target* takes untrusted bytes and either returns a result, which `Target.check`
validates (re-encoding it and decoding again gives the same), or raises its documented
error: `crdt.DecodeError` for the codec and the Node's messages, `ProtocolError` for
the TCP protocol. Nothing else, and never slower than `time_bound`.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable
from typing import Any

import attrs
from hypothesis import strategies as st

import crdt
from crdt.testing import lww_maps, registers, timestamps
from hlc import MAX_LOGICAL, MAX_WALL_MS
from transport import _wire
from transport._membership import Membership
from transport._tcp_protocol import (
    Authenticated,
    ClusterChanged,
    Connection,
    Message,
    Peers,
    ProtocolError,
)

#: A cluster secret strong enough for the transport's check (64 hex characters).
SECRET = b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
MAX_FRAME_BYTES = 1 << 16


def time_bound(size: int) -> float:
    """The most a decode of ``size`` bytes may take, in CPU seconds: generous for a
    loaded CI machine, far below what an amplification bomb costs."""
    return 0.25 + 20e-6 * size


class Stopwatch:
    """CPU seconds spent in a ``with`` block, garbage collection off inside it: a
    collection of the fuzzer's own garbage (hundreds of MB in a deep run) is not the
    code under test being slow."""

    seconds = 0.0

    def __enter__(self) -> Stopwatch:
        gc.disable()
        self._start = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.process_time() - self._start
        gc.enable()


@attrs.frozen
class Target:
    """One decoder under fuzz.

    Attributes:
        name: also the corpus directory's name.
        decode: bytes -> result.
        errors: what ``decode`` may raise.
        again: result -> the result decoded from its re-encoding (None: no check).
        seeds: valid inputs to mutate.
    """

    name: str
    decode: Callable[[bytes], Any]
    errors: tuple[type[BaseException], ...]
    again: Callable[[Any], Any] | None
    seeds: st.SearchStrategy[bytes]

    def check(self, data: bytes) -> None:
        """Decode ``data``; fail unless it gives a valid result or a documented error, in time."""
        result, seconds = self._timed(data)
        if seconds >= time_bound(len(data)):
            # A decoder that is slow is slow again; a pause (a collection of the fuzzer's
            # own garbage, say) is not.
            result, seconds = self._timed(data)
        assert seconds < time_bound(len(data)), f"{self.name}: {seconds:.3f} s for {len(data)} B"
        if result is not None and self.again is not None:
            assert self.again(result) == result, f"{self.name}: does not round-trip"

    def _timed(self, data: bytes) -> tuple[Any, float]:
        """``(result, or None on a documented error; CPU seconds)``."""
        result = None
        with Stopwatch() as watch, contextlib.suppress(*self.errors):
            result = self.decode(data)
        return result, watch.seconds


# -- the crdt codec --------------------------------------------------------------------


def _steps() -> st.SearchStrategy[crdt.SyncStep]:
    prefixes = st.lists(
        st.sampled_from([(0, 0), (1, 3), (2, 200), (4, 65535)]), max_size=3, unique=True
    )
    return st.builds(
        lambda m, at, complete, pull: crdt.SyncStep(
            digest=m.digest(at), delta=m, complete=complete, pull=pull
        ),
        lww_maps(max_size=6),
        prefixes.filter(bool),
        prefixes,
        prefixes,
    )


CODEC = [
    Target(
        "map",
        crdt.decode_map,
        (crdt.DecodeError,),
        lambda m: crdt.decode_map(crdt.encode_map(m)),
        lww_maps(max_size=8).map(crdt.encode_map),
    ),
    Target(
        "sync",
        crdt.decode_sync_step,
        (crdt.DecodeError,),
        lambda s: crdt.decode_sync_step(crdt.encode_sync_step(s)),
        _steps().map(crdt.encode_sync_step),
    ),
    Target(
        "digest",
        crdt.decode_digest,
        (crdt.DecodeError,),
        lambda d: crdt.decode_digest(crdt.encode_digest(d)),
        lww_maps(max_size=8).map(lambda m: crdt.encode_digest(m.digest([(0, 0), (1, 5)]))),
    ),
    Target(
        "register",
        crdt.decode_register,
        (crdt.DecodeError,),
        lambda r: crdt.decode_register(crdt.encode_register(r)),
        registers().map(crdt.encode_register),
    ),
    Target(
        "timestamp",
        crdt.decode_timestamp,
        (crdt.DecodeError,),
        lambda t: crdt.decode_timestamp(crdt.encode_timestamp(t)),
        timestamps().map(crdt.encode_timestamp),
    ),
]


# -- the Node's messages ---------------------------------------------------------------

_points = st.tuples(st.integers(0, MAX_WALL_MS), st.integers(0, MAX_LOGICAL))
_heartbeats = st.builds(
    _wire.Heartbeat,
    incarnation=st.text("abz09-_", min_size=1, max_size=12),
    synced=st.booleans(),
    cluster=st.none() | st.text(max_size=12),
    membership=st.binary(min_size=8, max_size=8),
    epoch=st.binary(min_size=8, max_size=8),
    clock=_points,
    wall_ms=st.integers(0, MAX_WALL_MS),
    root=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**63 - 1)),
    floor=_points,
    coverage=st.lists(_points, max_size=3).map(tuple),
    reports=st.just(()),
).map(lambda h: attrs.evolve(h, reports=h.coverage))


def _membership(founded: bool, joiners: int, accuse: bool) -> Membership:
    m = Membership()
    if founded:
        m.found("a/1", "a/1@1")
        for i in range(joiners):
            m.propose(f"n{i}/1", "a/1")
        if accuse and joiners:
            m.vote_expel("n0/1", "a/1")
    return m


_memberships = st.builds(_membership, st.booleans(), st.integers(0, 3), st.booleans())


def _peek(data: bytes) -> str:
    kind = _wire.peek_kind(data)
    assert kind in _wire.KINDS
    return kind


def _members_again(decoded: tuple[Any, Membership]) -> tuple[Any, list[Any]]:
    clock, membership = _wire.decode_members(_wire.encode_members(*decoded))
    return clock, membership.to_wire()


WIRE = [
    Target(
        "cbor",
        crdt.decode_cbor,
        (crdt.DecodeError,),
        None,
        st.sampled_from(CODEC).flatmap(lambda t: t.seeds),
    ),
    Target(
        "heartbeat",
        _wire.decode_heartbeat,
        (crdt.DecodeError,),
        lambda h: _wire.decode_heartbeat(_wire.encode_heartbeat(h)),
        _heartbeats.map(_wire.encode_heartbeat),
    ),
    Target(
        "ack",
        _wire.decode_ack,
        (crdt.DecodeError,),
        lambda p: _wire.decode_ack(_wire.encode_ack(p)),
        _points.map(_wire.encode_ack),
    ),
    Target(
        "members",
        lambda data: (lambda d: (d[0], d[1].to_wire()))(_wire.decode_members(data)),
        (crdt.DecodeError,),
        lambda d: _members_again((d[0], Membership.from_wire(d[1]))),
        st.tuples(_points, _memberships).map(lambda p: _wire.encode_members(*p)),
    ),
    Target(
        "peek",
        _peek,
        (crdt.DecodeError,),
        None,
        st.sampled_from(CODEC[:2]).flatmap(lambda t: t.seeds)
        | _heartbeats.map(_wire.encode_heartbeat),
    ),
]


# -- TCP frames and handshake ----------------------------------------------------------


def connection(client: bool, name: str | None = None) -> Connection:
    """A fresh Connection: a client has queued its first handshake message. The
    server belongs to a cluster, the client to none (both shapes of the field)."""
    name = name or ("client" if client else "server")
    return Connection(
        f"{name}/1",
        f"{name}:7000",
        SECRET,
        client=client,
        max_frame_bytes=MAX_FRAME_BYTES,
        cluster=None if client else f"001700000000000/{name}",
    )


def check_events(events: list[Any]) -> list[Any]:
    """Fail unless every event is a well-formed one; return them."""
    for event in events:
        if isinstance(event, Authenticated):
            assert type(event.node_id) is str
            assert type(event.listen) is str
            assert event.cluster is None or type(event.cluster) is str
        elif isinstance(event, Message):
            assert type(event.data) is bytes
        elif isinstance(event, ClusterChanged):
            assert event.cluster is None or type(event.cluster) is str
            assert event.cluster != ""
        else:
            assert isinstance(event, Peers), event
            assert all(type(a) is str for a in event.addresses)
    return events


def handshake(client: Connection, server: Connection) -> list[bytes]:
    """Run a handshake to the end; return the chunks sent, client's first, alternating."""
    chunks: list[bytes] = []
    for _ in range(10):
        moved = False
        for src, dst in ((client, server), (server, client)):
            data = src.data_to_send()
            if data:
                chunks.append(data)
                check_events(dst.receive_data(data))
                moved = True
        if not moved:
            break
    assert client.open
    assert server.open
    return chunks


def _server_receives(data: bytes) -> list[Any]:
    return check_events(connection(client=False).receive_data(data))


def _client_receives(data: bytes) -> list[Any]:
    client = connection(client=True)
    client.data_to_send()
    return check_events(client.receive_data(data))


def _client_flight(_: int) -> bytes:
    return connection(client=True).data_to_send()


def _server_flight(_: int) -> bytes:
    client, server = connection(client=True), connection(client=False)
    server.receive_data(client.data_to_send())
    return server.data_to_send()


TCP = [
    # A fresh server: what a stranger can send before proving anything.
    Target(
        "tcp-server",
        _server_receives,
        (ProtocolError,),
        None,
        st.integers(0, 3).map(_client_flight),
    ),
    # A fresh client that has sent its hello (seeds: replies to another client's hello).
    Target(
        "tcp-client",
        _client_receives,
        (ProtocolError,),
        None,
        st.integers(0, 3).map(_server_flight),
    ),
]

TARGETS = {target.name: target for target in CODEC + WIRE + TCP}

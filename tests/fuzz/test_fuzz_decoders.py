"""Fuzz every decoder of untrusted bytes: the crdt codec, the Node's messages, TCP frames
and the handshake.

Property (`tests.fuzz.targets.Target.check`): each decoder returns a valid result or
raises its documented error (`crdt.DecodeError`, `ProtocolError`), never another
exception, and never takes longer than `tests.fuzz.targets.time_bound`.

Inputs: random bytes, random CBOR items (tags, indefinite lengths, wide heads), valid
encodings mutated (`tests.fuzz.strategies`), valid messages with a random field; for
TCP, a live client and server whose traffic is mutated in flight. The corpus under
tests/fuzz/corpus/<target>/ (bombs, each refused tag, truncated frames, anything a
run found) is replayed on every run.

Budget: about a minute under the ``ci`` profile. A deep run (the ``deep`` profile
runs 20 times the examples; FUZZ_SCALE multiplies further)::

    HYPOTHESIS_PROFILE=deep .venv/bin/python -m pytest tests/fuzz -q \\
        --hypothesis-show-statistics

Keep what a run finds: save the input as tests/fuzz/corpus/<target>/<name>.bin, or
add it to tests/fuzz/seed_corpus.py and run ``python -m tests.fuzz.seed_corpus``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.hostile import sharing_bomb
from tests.fuzz.seed_corpus import CORPUS
from tests.fuzz.strategies import (
    SPLICES,
    Mutation,
    cbor_items,
    inputs,
    mutate,
    mutated,
    mutations,
    with_random_field,
)
from tests.fuzz.targets import (
    CODEC,
    TARGETS,
    TCP,
    WIRE,
    Stopwatch,
    check_events,
    connection,
    handshake,
    time_bound,
)
from transport._tcp_protocol import Connection, Message, Peers, ProtocolError

_F = TypeVar("_F", bound=Callable[..., Any])
_SCALE = {"deep": 20.0}.get(os.environ.get("HYPOTHESIS_PROFILE", "ci"), 1.0) * float(
    os.environ.get("FUZZ_SCALE", "1")
)


def budget(examples: int) -> Callable[[_F], _F]:
    """Hypothesis settings for ``examples`` examples (scaled for a deep run)."""
    return settings(
        max_examples=max(1, round(examples * _SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- the codec and the Node's messages ----------------------------------------------------


@pytest.mark.parametrize("name", [t.name for t in CODEC + WIRE])
@budget(800)
@given(data=st.data())
def test_a_decoder_returns_a_valid_result_or_its_error(name: str, data: st.DataObject) -> None:
    target = TARGETS[name]
    target.check(data.draw(inputs(target.seeds), label="input"))


# -- TCP: frames and the handshake -----------------------------------------------------------


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def _reframed(strategy: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Each first frame of ``strategy``'s outputs, its body changed by ``with_random_field``."""
    bodies = strategy.map(lambda flight: flight[4 : 4 + int.from_bytes(flight[:4], "big")])
    return with_random_field(bodies).map(frame)


@pytest.mark.parametrize("name", [t.name for t in TCP])
@budget(1000)
@given(data=st.data())
def test_a_fresh_connection_raises_only_protocol_errors(name: str, data: st.DataObject) -> None:
    target = TARGETS[name]
    strategy = st.one_of(
        st.binary(max_size=64),
        cbor_items.map(frame),
        mutated(target.seeds),
        _reframed(target.seeds),
        st.lists(cbor_items.map(frame), min_size=2, max_size=4).map(b"".join),
    )
    target.check(data.draw(strategy, label="input"))


def deliver(dst: Connection, data: bytes, cuts: list[int]) -> list[Any]:
    """Feed ``data`` to ``dst`` in pieces cut at ``cuts``; return the events."""
    events: list[Any] = []
    start = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        if cut > start:
            events += dst.receive_data(data[start:cut])
            start = cut
    return check_events(events)


@budget(1000)
@given(
    target=st.integers(0, 7),
    program=mutations,
    messages=st.lists(st.binary(max_size=64), min_size=8, max_size=8),
    cuts=st.lists(st.lists(st.integers(0, 2**16), max_size=3), min_size=16, max_size=16),
)
def test_a_live_handshake_and_session_mutated_in_flight(
    target: int, program: list[Mutation], messages: list[bytes], cuts: list[list[int]]
) -> None:
    # A client and a server talk: the whole handshake, then messages, cluster
    # notices and peer lists. The chunk in flight numbered ``target`` is mutated;
    # every chunk arrives cut into pieces. The handshake's shape is not assumed: the two sides
    # are pumped until they fall quiet. (Everything is drawn up front: what happens
    # depends on the random nonces, and Hypothesis must draw the same each replay.)
    client, server = connection(client=True), connection(client=False)
    sent = 0
    with Stopwatch() as watch, contextlib.suppress(ProtocolError):
        for message in messages:
            if client.open and server.open:
                client.send_message(message)
                client.send_cluster("001700000000000/client" if message else None)
                server.send_peers(["a:1", "b:2"])
            moved = False
            for src, dst in ((client, server), (server, client)):
                chunk = src.data_to_send()
                if not chunk:
                    continue
                moved = True
                if sent == target:
                    chunk = mutate(chunk, program)
                deliver(dst, chunk, cuts[sent % len(cuts)])
                sent += 1
            if not moved:
                break
    assert watch.seconds < time_bound(4096)


#: Python objects whose CBOR an authenticated peer might send as its "peer list".
_hostile_objects = st.recursive(
    st.text(max_size=12)
    | st.integers(-(2**70), 2**70)
    | st.binary(max_size=8)
    | st.none()
    | st.just(cbor2.undefined)
    | st.builds(cbor2.CBORTag, st.sampled_from([2, 25, 28, 29, 35, 70, 256, 1234]), st.just(0))
    | st.builds(lambda: cbor2.CBORTag(28, [cbor2.CBORTag(29, 0)])),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=3) | st.integers(0, 9), inner, max_size=3)
        | st.builds(cbor2.CBORTag, st.sampled_from([28, 256, 258]), inner)
    ),
    max_leaves=12,
)


@budget(500)
@given(addresses=st.lists(_hostile_objects | st.text(max_size=20), max_size=6))
def test_an_authenticated_peer_list_of_anything(addresses: list[Any]) -> None:
    # Only an authenticated peer can send a peer list: what it sends is still refused
    # as a ProtocolError unless it is a list of short str.
    client, server = connection(client=True), connection(client=False)
    handshake(client, server)
    try:
        client.send_peers(addresses)
    except (TypeError, ValueError, cbor2.CBOREncodeError):
        return  # not encodable at all: nothing to send
    events: list[Any] | None = None
    with Stopwatch() as watch, contextlib.suppress(ProtocolError):
        events = check_events(server.receive_data(client.data_to_send()))
    assert watch.seconds < time_bound(1024)
    assert events in (None, [Peers(tuple(addresses))])


def test_a_sharing_bomb_as_a_peer_list_is_refused_at_once() -> None:
    client, server = connection(client=True), connection(client=False)
    handshake(client, server)
    bomb: Any = cbor2.CBORTag(28, [])
    for i in range(40):
        bomb = cbor2.CBORTag(28, [cbor2.CBORTag(29, i), cbor2.CBORTag(29, i)])
    client.send_peers([bomb])
    with Stopwatch() as watch, pytest.raises(ProtocolError, match="tag 28"):
        server.receive_data(client.data_to_send())
    assert watch.seconds < 0.1
    assert len(sharing_bomb(40)) < 400


@budget(500)
@given(message=st.binary(max_size=32), program=mutations)
def test_session_frames_mutated_are_refused(message: bytes, program: list[Mutation]) -> None:
    client, server = connection(client=True), connection(client=False)
    handshake(client, server)
    client.send_message(message)
    client.send_peers(["a:1"])
    try:
        events = check_events(server.receive_data(mutate(client.data_to_send(), program)))
    except ProtocolError:
        return
    # A mutation that leaves the frames authentic (a truncation, say) delivers them.
    assert all(isinstance(e, (Message, Peers)) for e in events)


# -- the corpus, replayed every run -------------------------------------------------------


def _corpus() -> list[Any]:
    files = sorted(Path(CORPUS).glob("*/*.bin"))
    return [pytest.param(path, id=f"{path.parent.name}/{path.stem}") for path in files]


@pytest.mark.parametrize("path", _corpus())
def test_corpus(path: Path) -> None:
    TARGETS[path.parent.name].check(path.read_bytes())


def test_the_corpus_covers_every_target() -> None:
    assert {p.name for p in Path(CORPUS).iterdir() if p.is_dir()} == set(TARGETS)


def test_splices_are_distinct() -> None:
    assert len(set(SPLICES)) == len(SPLICES)

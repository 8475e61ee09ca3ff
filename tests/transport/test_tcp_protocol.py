import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport._tcp_protocol import (
    MAX_CLUSTER_CHARS,
    VERSION,
    Authenticated,
    ClusterChanged,
    Connection,
    Kind,
    Message,
    Peers,
    ProtocolError,
)

SECRET = b"c1a55e7e5ec7e7a0b1c2d3e4f5061728"
LIMIT = 1 << 16


def pair(secret_a: bytes = SECRET, secret_b: bytes = SECRET) -> tuple[Connection, Connection]:
    client = Connection("a", "127.0.0.1:1", secret_a, client=True, max_frame_bytes=LIMIT)
    server = Connection("b", "127.0.0.1:2", secret_b, client=False, max_frame_bytes=LIMIT)
    return client, server


def handshake(client: Connection, server: Connection) -> None:
    assert server.receive_data(client.data_to_send()) == []  # hello
    assert client.receive_data(server.data_to_send()) == []  # challenge
    assert server.receive_data(client.data_to_send()) == []  # proof
    assert client.receive_data(server.data_to_send()) == [Authenticated("b", "127.0.0.1:2")]
    assert server.receive_data(client.data_to_send()) == [Authenticated("a", "127.0.0.1:1")]


def frame(obj: object) -> bytes:
    body = cbor2.dumps(obj)
    return len(body).to_bytes(4, "big") + body


def unframe(data: bytes) -> object:
    size = int.from_bytes(data[:4], "big")
    assert len(data) == 4 + size
    return cbor2.loads(data[4:])


def test_handshake_then_messages_both_ways() -> None:
    client, server = pair()
    handshake(client, server)
    assert client.open
    assert server.open
    client.send_message(b"hello")
    client.send_peers(["10.0.0.1:7000"])
    assert server.receive_data(client.data_to_send()) == [
        Message(b"hello"),
        Peers(("10.0.0.1:7000",)),
    ]
    server.send_message(b"back")
    assert client.receive_data(server.data_to_send()) == [Message(b"back")]


def test_bytes_may_arrive_one_at_a_time() -> None:
    client, server = pair()
    handshake(client, server)
    client.send_message(b"x" * 100)
    events = []
    for byte in client.data_to_send():
        events += server.receive_data(bytes([byte]))
    assert events == [Message(b"x" * 100)]


def test_an_unauthenticated_client_learns_one_random_nonce_and_nothing_else() -> None:
    challenges = []
    for _ in range(2):
        server = Connection(
            "server-node-id", "10.1.2.3:7000", SECRET, client=False, max_frame_bytes=LIMIT
        )
        server.receive_data(frame([VERSION, "hello", b"\x00" * 32]))
        challenge = server.data_to_send()
        kind_and_nonce = unframe(challenge)
        assert isinstance(kind_and_nonce, list)
        assert kind_and_nonce[:2] == [VERSION, "challenge"]
        assert len(kind_and_nonce) == 3
        assert len(kind_and_nonce[2]) == 32
        assert b"10.1.2.3" not in challenge
        assert b"server-node-id" not in challenge
        challenges.append(kind_and_nonce[2])
        # A wrong proof gets the connection closed, and nothing more is sent.
        with pytest.raises(ProtocolError, match="client failed"):
            server.receive_data(frame([VERSION, "proof", b"\x00" * 32]))
        assert server.data_to_send() == b""
        assert server.peer is None
    assert challenges[0] != challenges[1]  # a fresh nonce, not a function of the hello


def test_a_server_without_the_secret_is_refused_by_the_client() -> None:
    client = Connection("a", "c", SECRET, client=True, max_frame_bytes=LIMIT)
    client.data_to_send()
    assert client.receive_data(frame([VERSION, "challenge", b"\x01" * 32])) == []
    client.data_to_send()  # the proof: a rogue server may guess the secret offline
    with pytest.raises(ProtocolError, match="server failed"):
        client.receive_data(frame([VERSION, "welcome", "b", "s", None, b"\x00" * 32]))
    assert not client.open
    assert client.data_to_send() == b""  # it never told the server who it is


def test_a_server_with_another_secret_refuses_the_client() -> None:
    client, server = pair(secret_b=b"0e1f5ecae7a1b2c3d4e5f60718293a4b")
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    with pytest.raises(ProtocolError, match="client failed"):
        server.receive_data(client.data_to_send())
    assert server.data_to_send() == b""


def test_a_replayed_handshake_is_refused() -> None:
    client, server = pair()
    hello = client.data_to_send()
    server.receive_data(hello)
    client.receive_data(server.data_to_send())
    proof = client.data_to_send()
    server.receive_data(proof)
    welcome = server.data_to_send()
    # A recording of the client's side, replayed to a new server connection:
    replay = Connection("b", "127.0.0.1:2", SECRET, client=False, max_frame_bytes=LIMIT)
    replay.receive_data(hello)
    replay.data_to_send()  # a fresh challenge, with a new nonce
    with pytest.raises(ProtocolError, match="client failed"):
        replay.receive_data(proof)
    # And of the server's side, replayed to a new client:
    victim = Connection("a", "127.0.0.1:1", SECRET, client=True, max_frame_bytes=LIMIT)
    victim.receive_data(unframe_challenge(server))
    with pytest.raises(ProtocolError, match="server failed"):
        victim.receive_data(welcome)


def unframe_challenge(server: Connection) -> bytes:
    return frame([VERSION, "challenge", server.nonce])


def test_a_changed_identity_is_refused() -> None:
    client, server = pair()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    identity = unframe(client.data_to_send())
    assert isinstance(identity, list)
    identity[2] = "mallory"  # a relay rewriting who the client is
    with pytest.raises(ProtocolError, match="identity"):
        server.receive_data(frame(identity))


def test_tampered_reordered_and_replayed_frames_are_refused() -> None:
    client, server = pair()
    handshake(client, server)
    client.send_message(b"one")
    first = client.data_to_send()
    client.send_message(b"two")
    second = client.data_to_send()
    tampered = bytearray(first)
    tampered[-1] ^= 1
    with pytest.raises(ProtocolError, match="authentication"):
        pair_server_copy(server).receive_data(bytes(tampered))
    with pytest.raises(ProtocolError, match="authentication"):
        pair_server_copy(server).receive_data(second)  # out of order
    assert server.receive_data(first) == [Message(b"one")]
    with pytest.raises(ProtocolError, match="authentication"):
        server.receive_data(first)  # replayed


def pair_server_copy(server: Connection) -> Connection:
    import copy

    return copy.deepcopy(server)


def test_oversized_frames_are_refused() -> None:
    client, server = pair()
    with pytest.raises(ProtocolError, match="limit"):
        server.receive_data((2_000).to_bytes(4, "big"))  # over the handshake limit
    client, server = pair()
    handshake(client, server)
    with pytest.raises(ProtocolError, match="limit"):
        server.receive_data((LIMIT + 1).to_bytes(4, "big"))
    with pytest.raises(ValueError, match="limit"):
        client.send_message(b"x" * LIMIT)


@pytest.mark.parametrize(
    "frame_body",
    [
        b"\xff\xff",  # not CBOR
        b"\x83\x01ehello\x00",  # wrong version
        b"\x82\x01dnope",  # unknown kind
        b"\x83\x02ehello\x00",  # version 2
        b"\x83\x03ehelloAx",  # short nonce
        b"\x83\x03eproofAx",  # a proof before the hello
    ],
)
def test_bad_handshakes_are_refused(frame_body: bytes) -> None:
    server = Connection("b", "s", SECRET, client=False, max_frame_bytes=LIMIT)
    with pytest.raises(ProtocolError):
        server.receive_data(len(frame_body).to_bytes(4, "big") + frame_body)
    with pytest.raises(ProtocolError, match="closed"):
        server.receive_data(b"")


def test_a_peer_claiming_our_id_is_refused() -> None:
    client = Connection("b", "c", SECRET, client=True, max_frame_bytes=LIMIT)
    server = Connection("b", "s", SECRET, client=False, max_frame_bytes=LIMIT)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    with pytest.raises(ProtocolError, match="own node id"):
        client.receive_data(server.data_to_send())


def test_messages_before_the_handshake_cannot_be_sent() -> None:
    client, _ = pair()
    with pytest.raises(RuntimeError, match="handshake"):
        client.send_message(b"early")


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        Connection("a", "x", b"", client=True, max_frame_bytes=LIMIT)


@given(st.binary(max_size=200))
def test_random_bytes_never_open_a_connection(data: bytes) -> None:
    server = Connection("b", "s", SECRET, client=False, max_frame_bytes=LIMIT)
    try:
        events = server.receive_data(data)
    except ProtocolError:
        return
    assert events == []
    assert not server.open


@pytest.mark.parametrize(
    "old_hello",
    [
        [1, "hello", "a", "127.0.0.1:1", b"\x00" * 32],  # version 1: the client named itself
        [2, "hello", b"\x00" * 32],  # version 2: no cluster in welcome and identity
    ],
    ids=["version-1", "version-2"],
)
def test_a_node_of_a_previous_handshake_version_gets_a_clear_error(old_hello: list[object]) -> None:
    server = Connection("b", "s", SECRET, client=False, max_frame_bytes=LIMIT)
    version = old_hello[0]
    with pytest.raises(
        ProtocolError, match=rf"unsupported handshake version {version} .*speaks {VERSION}"
    ):
        server.receive_data(frame(old_hello))
    assert server.data_to_send() == b""
    client = Connection("a", "c", SECRET, client=True, max_frame_bytes=LIMIT)
    client.data_to_send()
    with pytest.raises(ProtocolError, match=rf"unsupported handshake version 2 .*speaks {VERSION}"):
        client.receive_data(frame([2, "challenge", b"\x01" * 32]))


def _cluster_pair(
    client_cluster: str | None, server_cluster: str | None
) -> tuple[Connection, Connection]:
    client = Connection(
        "a", "127.0.0.1:1", SECRET, client=True, max_frame_bytes=LIMIT, cluster=client_cluster
    )
    server = Connection(
        "b", "127.0.0.1:2", SECRET, client=False, max_frame_bytes=LIMIT, cluster=server_cluster
    )
    return client, server


@pytest.mark.parametrize(
    ("client_cluster", "server_cluster"),
    [(None, None), ("001700000000000/a", None), (None, "001700000000000/b"), ("1/x", "2/y")],
)
def test_each_side_learns_the_others_cluster(
    client_cluster: str | None, server_cluster: str | None
) -> None:
    client, server = _cluster_pair(client_cluster, server_cluster)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    welcome = unframe(server.data_to_send())
    assert isinstance(welcome, list)
    assert welcome[:5] == [VERSION, "welcome", "b", "127.0.0.1:2", server_cluster]
    assert client.receive_data(frame(welcome)) == [
        Authenticated("b", "127.0.0.1:2", server_cluster)
    ]
    assert server.receive_data(client.data_to_send()) == [
        Authenticated("a", "127.0.0.1:1", client_cluster)
    ]


@pytest.mark.parametrize("side", ["welcome", "identity"])
@pytest.mark.parametrize("forged", [None, "000000000000001/mallory", "001700000000000/a "])
def test_a_changed_cluster_fails_the_proof(side: str, forged: str | None) -> None:
    # A relay making the server (or the client) look older, or in no cluster.
    client, server = _cluster_pair("001700000000000/a", "001700000000000/a")
    match = "server failed" if side == "welcome" else "identity"
    _refused_with_cluster(client, server, side, forged, match)


def _refused_with_cluster(
    client: Connection, server: Connection, side: str, cluster: object, match: str
) -> None:
    """Run a handshake with the cluster field of the ``side`` frame (``"welcome"``
    or ``"identity"``) replaced by ``cluster``; its receiver raises ``match``."""
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    welcome = unframe(server.data_to_send())
    assert isinstance(welcome, list)
    if side == "welcome":
        welcome[4] = cluster
        with pytest.raises(ProtocolError, match=match):
            client.receive_data(frame(welcome))
        return
    client.receive_data(frame(welcome))
    identity = unframe(client.data_to_send())
    assert isinstance(identity, list)
    identity[4] = cluster
    with pytest.raises(ProtocolError, match=match):
        server.receive_data(frame(identity))


@pytest.mark.parametrize(
    "cluster", ["", "x" * (MAX_CLUSTER_CHARS + 1), 7, b"1/a", ["1/a"]], ids=repr
)
@pytest.mark.parametrize("side", ["welcome", "identity"])
def test_a_malformed_cluster_is_refused(cluster: object, side: str) -> None:
    client, server = _cluster_pair(None, None)
    _refused_with_cluster(client, server, side, cluster, "bad cluster")


def test_a_welcome_or_identity_of_the_old_shape_is_refused() -> None:
    client, server = _cluster_pair(None, None)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    welcome = unframe(server.data_to_send())
    assert isinstance(welcome, list)
    del welcome[4]  # [v, "welcome", id, listen, proof]: no cluster
    with pytest.raises(ProtocolError, match="unexpected 'welcome'"):
        client.receive_data(frame(welcome))


def test_a_cluster_id_too_long_to_send_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="cluster id"):
        Connection("a", "c", SECRET, client=True, max_frame_bytes=LIMIT, cluster="x" * 257)
    with pytest.raises(ValueError, match="cluster id"):
        Connection("a", "c", SECRET, client=True, max_frame_bytes=LIMIT, cluster="")


@pytest.mark.parametrize("cluster", ["001700000000000/a", None, "x" * MAX_CLUSTER_CHARS])
def test_a_change_of_cluster_after_the_handshake_is_told(cluster: str | None) -> None:
    client, server = pair()
    handshake(client, server)
    client.send_cluster(cluster)
    client.send_message(b"after")
    assert server.receive_data(client.data_to_send()) == [
        ClusterChanged(cluster),
        Message(b"after"),
    ]


def test_a_bad_cluster_notice_is_refused() -> None:
    client, _ = pair()
    with pytest.raises(ValueError, match="cluster id"):
        client.send_cluster("x" * (MAX_CLUSTER_CHARS + 1))
    for payload in (b"\xff\xfe", b"x" * (MAX_CLUSTER_CHARS + 1)):
        client, server = pair()
        handshake(client, server)
        client._seal(Kind.CLUSTER, payload)  # as a peer that breaks the rules would
        with pytest.raises(ProtocolError, match="bad cluster"):
            server.receive_data(client.data_to_send())

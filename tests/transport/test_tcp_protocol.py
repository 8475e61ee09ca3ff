import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport._tcp_protocol import (
    Authenticated,
    Connection,
    Message,
    Peers,
    ProtocolError,
)

SECRET = b"cluster secret"
LIMIT = 1 << 16


def pair(secret_a: bytes = SECRET, secret_b: bytes = SECRET) -> tuple[Connection, Connection]:
    client = Connection("a", "127.0.0.1:1", secret_a, client=True, max_frame_bytes=LIMIT)
    server = Connection("b", "127.0.0.1:2", secret_b, client=False, max_frame_bytes=LIMIT)
    return client, server


def handshake(client: Connection, server: Connection) -> None:
    assert server.receive_data(client.data_to_send()) == []
    assert client.receive_data(server.data_to_send()) == [Authenticated("b", "127.0.0.1:2")]
    assert server.receive_data(client.data_to_send()) == [Authenticated("a", "127.0.0.1:1")]


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


def test_a_server_without_the_secret_is_refused_by_the_client() -> None:
    client, server = pair(secret_b=b"other")
    server.receive_data(client.data_to_send())
    with pytest.raises(ProtocolError, match="server failed"):
        client.receive_data(server.data_to_send())
    assert not client.open
    assert client.data_to_send() == b""  # it never answered with a proof


def test_a_client_without_the_secret_is_refused() -> None:
    server = Connection("b", "s", SECRET, client=False, max_frame_bytes=LIMIT)
    intruder = Connection("a", "c", b"guess", client=True, max_frame_bytes=LIMIT)
    server.receive_data(intruder.data_to_send())
    challenge = server.data_to_send()
    with pytest.raises(ProtocolError):
        intruder.receive_data(challenge)  # it sees the server proof does not match
    # Even if it ignores that and answers, its proof is wrong.
    import cbor2

    fake_proof = cbor2.dumps([1, "proof", b"\x00" * 32])
    with pytest.raises(ProtocolError, match="client failed"):
        server.receive_data(len(fake_proof).to_bytes(4, "big") + fake_proof)
    assert not server.open


def test_a_replayed_handshake_is_refused() -> None:
    client, server = pair()
    hello = client.data_to_send()
    server.receive_data(hello)
    client.receive_data(server.data_to_send())
    proof = client.data_to_send()
    server.receive_data(proof)
    # A recording of that conversation, replayed to a new server connection:
    replay = Connection("b", "127.0.0.1:2", SECRET, client=False, max_frame_bytes=LIMIT)
    replay.receive_data(hello)
    replay.data_to_send()  # a fresh challenge, with a new nonce
    with pytest.raises(ProtocolError, match="client failed"):
        replay.receive_data(proof)


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
        b"\x83\x02ehello\x00",  # wrong version
        b"\x82\x01dnope",  # unknown kind
        b"\x85\x01ehelloaa\x61c\x41x",  # short nonce
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
    with pytest.raises(ProtocolError, match="own node id"):
        server.receive_data(client.data_to_send())


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

"""The TCP transport's wire protocol, sans-IO: frames, handshake, authentication.

Bytes in (`Connection.receive_data`), events out; events in, bytes out, as h11 does
for HTTP. No sockets here: `transport._tcp` feeds this from trio streams.

Frames: a 4-byte big-endian length, then that many bytes; longer than
``max_frame_bytes`` is an error.

Handshake, mutual challenge-response over a shared secret (like Erlang's cookie,
but never sent). Neither side says who it is before the other has proved it knows
the secret::

    client -> server   [3, "hello", nonce_c]
    server -> client   [3, "challenge", nonce_s]
    client -> server   [3, "proof", proof_c]
    server -> client   [3, "welcome", server_id, server_listen, server_cluster, proof_s]
    client -> server   [3, "identity", client_id, client_listen, client_cluster, proof_i]

with ``proof_c = HMAC(secret, "chorus client" | nonce_c | nonce_s)``, ``proof_s``
over ``"chorus server" | nonce_c | nonce_s | server_id | server_listen |
server_cluster`` and ``proof_i`` over ``"chorus identity" | nonce_c | nonce_s |
client_id | client_listen | client_cluster | server_id``. Nonces are 32 random
bytes. A cluster is the sender's cluster id (`Membership.cluster`, at most
`MAX_CLUSTER_CHARS` characters), or null while it belongs to none (empty in the
MACs; a cluster id is never empty): a node that two processes with one node id
reach keeps the link of the one in the older cluster (see `transport._tcp`).

So a party without the secret that connects to a node gets one random nonce and
nothing else: no node id, no address, and no MAC to test guesses of the secret
against offline. A server learns the client's proof before proving itself (someone
has to go first); what it could do with it is guess the secret offline, which is why
`check_secret` refuses secrets under 128 bits. The server's fresh nonce makes a
replayed client proof worthless, the client's makes a replayed welcome worthless,
and both ids are bound into the last two proofs and the session keys.

After the handshake every frame is ``tag(32) | kind(1) | payload`` where ``tag`` is
HMAC-SHA256 under a per-direction session key (derived from the secret and both
nonces) over the frame's sequence number and the rest: a tampered, injected,
reordered or replayed frame fails. ``kind`` 0 carries a Node message, 1 a list of
peer addresses (gossip), 2 why the sender refuses this connection (UTF-8 text: say,
another live node already holds the peer's node id here; the sender closes after
it), 3 the sender's cluster id once it changes after the handshake (UTF-8, empty
for none: a process that joins a cluster while linked). Frames are authenticated,
not encrypted: use TLS (``ssl_context``) on untrusted networks.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets as _secrets
from typing import Any

import attrs
import cbor2

from crdt import DecodeError, decode_cbor

#: The handshake's version: 3 since welcome and identity carry the sender's cluster
#: (2: without it; 1: servers sent their id and a MAC first). Versions do not mix.
VERSION = 3
NONCE_BYTES = 32
TAG_BYTES = 32
MAX_ID_CHARS = 200
#: The longest cluster id sent or accepted in a handshake, in characters (as in
#: heartbeats: ``f"{wall_ms:015d}/{founder}"`` with a node id of at most 200).
MAX_CLUSTER_CHARS = 256
MAX_HANDSHAKE_BYTES = 1024


class ProtocolError(Exception):
    """The peer broke the protocol: bad frame, bad handshake, bad tag. Close the connection."""


class Kind(enum.IntEnum):
    MESSAGE = 0
    PEERS = 1
    REFUSED = 2
    CLUSTER = 3


@attrs.frozen
class Authenticated:
    """The handshake succeeded: the peer is ``node_id``, listening at ``listen``, a
    process of the cluster ``cluster`` (None: of none yet) when it connected."""

    node_id: str
    listen: str
    cluster: str | None = None


@attrs.frozen
class Message:
    """An authenticated Node message from the peer."""

    data: bytes


@attrs.frozen
class Peers:
    """Addresses (``"host:port"``) the peer knows other nodes at."""

    addresses: tuple[str, ...]


@attrs.frozen
class Refused:
    """The peer refuses this connection, and says why (then closes it)."""

    reason: str


@attrs.frozen
class ClusterChanged:
    """The peer now belongs to the cluster ``cluster`` (None: to none)."""

    cluster: str | None


Event = Authenticated | Message | Peers | Refused | ClusterChanged
#: The longest refusal reason sent or accepted, in characters.
MAX_REASON_CHARS = 1000


def _cbor(obj: Any) -> bytes:
    return cbor2.dumps(obj)


def _decode(body: bytes) -> Any:
    try:
        return decode_cbor(body, "frame")
    except DecodeError as exc:
        raise ProtocolError(str(exc)) from None


def _text(value: Any, what: str) -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_ID_CHARS:
        raise ProtocolError(f"bad {what}")
    return value


def _cluster(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is not str or not 0 < len(value) <= MAX_CLUSTER_CHARS:
        raise ProtocolError("bad cluster")
    return value


def _nonce(value: Any) -> bytes:
    if type(value) is not bytes or len(value) != NONCE_BYTES:
        raise ProtocolError("bad nonce")
    return value


def _mac(key: bytes, *parts: bytes) -> bytes:
    h = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


class _State(enum.Enum):
    # client: SENT_HELLO -> (challenge) -> SENT_PROOF -> (welcome) -> OPEN
    # server: AWAIT_HELLO -> (hello) -> SENT_CHALLENGE -> (proof) -> SENT_WELCOME
    #         -> (identity) -> OPEN
    SENT_HELLO = "sent hello"
    SENT_PROOF = "sent proof"
    AWAIT_HELLO = "await hello"
    SENT_CHALLENGE = "sent challenge"
    SENT_WELCOME = "sent welcome"
    OPEN = "open"
    CLOSED = "closed"


class Connection:
    """One side of one TCP connection, sans-IO.

    Args:
        node_id: our node id; listen: the address peers may dial us at.
        cluster: our cluster id (None: we belong to none yet), told to the peer.
        secret: the cluster secret (bytes; `check_secret` is the caller's job).
        client: True on the dialling side, which speaks first.
        max_frame_bytes: the largest frame accepted or sent, in bytes.
        nonce: for tests only; 32 random bytes by default.

    Raises:
        ValueError: the secret is empty.
    """

    def __init__(
        self,
        node_id: str,
        listen: str,
        secret: bytes,
        *,
        client: bool,
        max_frame_bytes: int,
        nonce: bytes | None = None,
        cluster: str | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the cluster secret must not be empty")
        if cluster is not None and not 0 < len(cluster) <= MAX_CLUSTER_CHARS:
            raise ValueError(f"a cluster id must have 1 to {MAX_CLUSTER_CHARS} characters")
        self.node_id, self.listen = node_id, listen
        self.cluster = cluster
        self.client = client
        self.max_frame_bytes = max_frame_bytes
        self.peer: str | None = None
        self._peer_listen = ""
        self._secret = secret
        self.nonce = nonce or _secrets.token_bytes(NONCE_BYTES)
        self.peer_nonce = b""
        self._buffer = bytearray()
        self._send_key = self._recv_key = b""
        self._send_seq = self._recv_seq = 0
        self._outgoing = bytearray()
        if client:
            self._state = _State.SENT_HELLO
            self._send_handshake("hello", self.nonce)
        else:
            self._state = _State.AWAIT_HELLO

    @property
    def open(self) -> bool:
        """True once the handshake has succeeded (and until closed)."""
        return self._state is _State.OPEN

    @property
    def proved(self) -> bool:
        """True on the client side once it has sent its proof (and the handshake is
        not done): a server that closes now did not accept it."""
        return self._state is _State.SENT_PROOF

    def data_to_send(self) -> bytes:
        """Bytes to write to the socket now (and forget)."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    # -- incoming ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the socket; return the events they complete.

        Raises:
            ProtocolError: the peer broke the protocol; close the connection.
        """
        if self._state is _State.CLOSED:
            raise ProtocolError("connection closed")
        self._buffer += data
        events: list[Event] = []
        try:
            while len(self._buffer) >= 4:
                size = int.from_bytes(self._buffer[:4], "big")
                limit = self.max_frame_bytes if self.open else MAX_HANDSHAKE_BYTES
                if size > limit:
                    raise ProtocolError(f"frame of {size} bytes is over the {limit}-byte limit")
                if len(self._buffer) < 4 + size:
                    break
                body = bytes(self._buffer[4 : 4 + size])
                del self._buffer[: 4 + size]
                event = self._on_frame(body)
                if event is not None:
                    events.append(event)
        except ProtocolError:
            self._state = _State.CLOSED
            raise
        return events

    def _on_frame(self, body: bytes) -> Event | None:
        state = self._state
        if state is _State.OPEN:
            return self._on_sealed(body)
        obj = _decode(body)
        if type(obj) is not list or len(obj) < 2:
            raise ProtocolError("a handshake message must be [version, kind, ...]")
        if obj[0] != VERSION:
            raise ProtocolError(
                f"unsupported handshake version {obj[0]!r:.20} (this node speaks {VERSION})"
            )
        kind, fields = obj[1], obj[2:]
        if state is _State.AWAIT_HELLO and kind == "hello" and len(fields) == 1:
            self.peer_nonce = _nonce(fields[0])
            self._send_handshake("challenge", self.nonce)
            self._state = _State.SENT_CHALLENGE
            return None
        if state is _State.SENT_HELLO and kind == "challenge" and len(fields) == 1:
            self.peer_nonce = _nonce(fields[0])
            self._send_handshake("proof", self._proof(b"chorus client"))
            self._state = _State.SENT_PROOF
            return None
        if state is _State.SENT_CHALLENGE and kind == "proof" and len(fields) == 1:
            if not hmac.compare_digest(_bytes(fields[0]), self._proof(b"chorus client")):
                raise ProtocolError("client failed to prove it knows the secret")
            ours = self.node_id, self.listen, self.cluster or ""
            proof = self._proof(b"chorus server", *ours)
            self._send_handshake("welcome", self.node_id, self.listen, self.cluster, proof)
            self._state = _State.SENT_WELCOME
            return None
        if state is _State.SENT_PROOF and kind == "welcome" and len(fields) == 4:
            peer, listen = _text(fields[0], "node id"), _text(fields[1], "listen address")
            cluster = _cluster(fields[2])
            expected = self._proof(b"chorus server", peer, listen, cluster or "")
            if not hmac.compare_digest(_bytes(fields[3]), expected):
                raise ProtocolError("server failed to prove it knows the secret")
            if peer == self.node_id:
                raise ProtocolError("peer claims our own node id")
            ours = self.node_id, self.listen, self.cluster or ""
            proof = self._proof(b"chorus identity", *ours, peer)
            self._send_handshake("identity", self.node_id, self.listen, self.cluster, proof)
            return self._opened(peer, listen, cluster)
        if state is _State.SENT_WELCOME and kind == "identity" and len(fields) == 4:
            peer, listen = _text(fields[0], "node id"), _text(fields[1], "listen address")
            cluster = _cluster(fields[2])
            expected = self._proof(b"chorus identity", peer, listen, cluster or "", self.node_id)
            if not hmac.compare_digest(_bytes(fields[3]), expected):
                raise ProtocolError("client failed to prove its identity")
            if peer == self.node_id:
                raise ProtocolError("peer claims our own node id")
            return self._opened(peer, listen, cluster)
        raise ProtocolError(f"unexpected {kind!r:.20} in state {state.value}")

    def _nonces(self) -> tuple[bytes, bytes]:
        """(client nonce, server nonce)."""
        if self.client:
            return self.nonce, self.peer_nonce
        return self.peer_nonce, self.nonce

    def _proof(self, label: bytes, *texts: str) -> bytes:
        return _mac(self._secret, label, *self._nonces(), *(t.encode() for t in texts))

    def _opened(self, peer: str, listen: str, cluster: str | None) -> Authenticated:
        self.peer, self._peer_listen = peer, listen
        client_id, server_id = (self.node_id, peer) if self.client else (peer, self.node_id)
        c2s = self._proof(b"chorus c2s", client_id, server_id)
        s2c = self._proof(b"chorus s2c", client_id, server_id)
        self._send_key, self._recv_key = (c2s, s2c) if self.client else (s2c, c2s)
        self._state = _State.OPEN
        return Authenticated(peer, listen, cluster)

    def _on_sealed(self, body: bytes) -> Event:
        if len(body) < TAG_BYTES + 1:
            raise ProtocolError("frame too short")
        tag, rest = body[:TAG_BYTES], body[TAG_BYTES:]
        expected = _mac(self._recv_key, self._recv_seq.to_bytes(8, "big"), rest)
        if not hmac.compare_digest(tag, expected):
            raise ProtocolError("frame failed authentication")
        self._recv_seq += 1
        kind, payload = rest[0], rest[1:]
        if kind == Kind.MESSAGE:
            return Message(payload)
        if kind == Kind.PEERS:
            addresses = _decode(payload)
            if type(addresses) is not list or len(addresses) > 1024:
                raise ProtocolError("bad peer list")
            return Peers(tuple(_text(a, "address") for a in addresses))
        if kind == Kind.REFUSED:
            try:
                reason = payload.decode()
            except UnicodeDecodeError:
                raise ProtocolError("bad refusal reason") from None
            if not 0 < len(reason) <= MAX_REASON_CHARS or not reason.isprintable():
                raise ProtocolError("bad refusal reason")
            return Refused(reason)
        if kind == Kind.CLUSTER:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                raise ProtocolError("bad cluster") from None
            return ClusterChanged(_cluster(text) if text else None)
        raise ProtocolError(f"unknown frame kind {kind}")

    # -- outgoing ------------------------------------------------------------------

    def send_message(self, data: bytes) -> None:
        """Queue an authenticated Node message (see `data_to_send`).

        Raises:
            ValueError: the frame would exceed ``max_frame_bytes``.
            RuntimeError: the handshake is not done.
        """
        self._seal(Kind.MESSAGE, data)

    def send_peers(self, addresses: list[str]) -> None:
        """Queue an authenticated list of peer addresses."""
        self._seal(Kind.PEERS, _cbor(addresses))

    def send_refused(self, reason: str) -> None:
        """Queue an authenticated refusal of this connection, with its reason (printable
        text, cut to `MAX_REASON_CHARS`); the caller closes the connection after it."""
        text = "".join(c if c.isprintable() else "?" for c in reason)[:MAX_REASON_CHARS]
        self._seal(Kind.REFUSED, (text or "refused").encode())

    def send_cluster(self, cluster: str | None) -> None:
        """Queue an authenticated notice that we now belong to ``cluster`` (None: to
        none).

        Raises:
            ValueError: ``cluster`` is empty or over `MAX_CLUSTER_CHARS` characters.
        """
        if cluster is not None and not 0 < len(cluster) <= MAX_CLUSTER_CHARS:
            raise ValueError(f"a cluster id must have 1 to {MAX_CLUSTER_CHARS} characters")
        self._seal(Kind.CLUSTER, (cluster or "").encode())

    def _seal(self, kind: Kind, payload: bytes) -> None:
        if not self.open:
            raise RuntimeError("the handshake is not done")
        rest = bytes([kind]) + payload
        if TAG_BYTES + len(rest) > self.max_frame_bytes:
            raise ValueError(f"frame of {TAG_BYTES + len(rest)} bytes is over the limit")
        tag = _mac(self._send_key, self._send_seq.to_bytes(8, "big"), rest)
        self._send_seq += 1
        self._frame(tag + rest)

    def _send_handshake(self, kind: str, *fields: object) -> None:
        self._frame(_cbor([VERSION, kind, *fields]))

    def _frame(self, body: bytes) -> None:
        self._outgoing += len(body).to_bytes(4, "big")
        self._outgoing += body


def _bytes(value: Any) -> bytes:
    if type(value) is not bytes:
        raise ProtocolError("bad proof")
    return value

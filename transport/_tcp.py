"""TcpTransport: the Transport over real TCP, on trio streams, authenticated.

The wire protocol lives in `_tcp_protocol` (sans-IO); this module only moves its
bytes. Hypercorn's trio backend is the model: a thin server around a protocol that
does not know its backend.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import math
import random
import ssl
from collections.abc import Iterable

import attrs
import trio

from ._addresses import AddressBook, Dial
from ._interface import Event, PeerDown, PeerUp, Received, Transport, TransportClosed
from ._secret import check_secret
from ._tcp_protocol import (
    Authenticated,
    ClusterChanged,
    Connection,
    Message,
    Peers,
    ProtocolError,
    Refused,
)
from ._tcp_protocol import Event as ProtoEvent

log = logging.getLogger("chorus.tcp")
_MAX_KNOWN_SOURCES = 4096
_FAILED_HANDSHAKE_LOG_INTERVAL_S = 10.0
#: How often a DNS seed is looked up while it resolves to nothing or no link is up, in s.
_QUICK_RESOLVE_S = 1.0
_HTTP_METHODS = frozenset(
    [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"PRI"]
)
#: How long a peer's refusal of our node id is believed without being repeated, in s
#: (a refused node redials every few seconds, and is refused again while it holds).
_REFUSAL_TTL_S = 15.0


def _source_of(host: str) -> str:
    """The unit per-source limits count in: an IPv4 address, or an IPv6 /64 (one
    host commonly holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _diagnose(proto: Connection | None, exc: BaseException, received: bytes) -> tuple[str, bool]:
    """Why a dial failed, for an operator: ``(reason, misconfigured)``, the usual
    misconfigurations (an HTTP port, another secret or version) named as such."""
    if received.startswith(b"HTTP/"):
        return "it answers HTTP: an HTTP port, not a chorus cluster port?", True
    if isinstance(exc, trio.TooSlowError):
        return "no answer in time", False
    cause = exc.__cause__  # trio.open_tcp_stream: an OSError from a group of attempts
    attempts = cause.exceptions if isinstance(cause, BaseExceptionGroup) else (exc, cause)
    if any(isinstance(e, ConnectionRefusedError) for e in attempts):
        return "connection refused: nothing listening there?", False
    text = str(exc) or type(exc).__name__
    if proto is not None and proto.proved and "closed" in text:
        return "it closed the connection at our proof: a different cluster secret?", True
    if "failed to prove" in text:
        return "it does not know our cluster secret", True
    return text, "handshake version" in text


def _failure_reason(proto: Connection, exc: BaseException, received: bytes) -> str:
    """A failed handshake's reason, as one word from a fixed set (a counter label:
    anyone can connect and fail, so never the peer's own text)."""
    text = str(exc)
    if isinstance(exc, trio.TooSlowError):
        return "timeout"
    if received.startswith(b"HTTP/") or received[:8].split(b" ")[0] in _HTTP_METHODS:
        return "http"
    if "failed to prove it knows the secret" in text or (proto.proved and "closed" in text):
        return "secret"
    if "failed to prove its identity" in text:
        return "identity"
    if "handshake version" in text:
        return "version"
    if "claims our own node id" in text:
        return "own_node_id"
    if "we dialled ourselves" in text:
        return "self"
    if "closed" in text or not isinstance(exc, ProtocolError):
        return "closed"  # closed, reset or broken before it was done
    return "malformed"


def _older(cluster: str | None, than: str | None) -> bool:
    """True if ``cluster`` is older than ``than``: cluster ids sort by age, and a
    process in no cluster (None) counts as the youngest."""
    return cluster is not None and (than is None or cluster < than)


def _taken_reason(node_id: str, listen: str, older: str | None) -> str:
    """Why a process with ``node_id`` is refused: another one holds it, at ``listen``
    (of the cluster ``older``, older than the refused one's, if given)."""
    of = f" of the older cluster {older}" if older else ""
    return (
        f"node id {node_id} is already taken by a live node at {listen}{of}: "
        f"is a second process running with --node-id {node_id}?"
    )


def parse_address(address: str | tuple[str, int]) -> tuple[str, int]:
    """``"host:port"`` or ``(host, port)`` to ``(host, port)``; IPv6 as ``[::1]:7000``.

    Raises:
        ValueError: not of that form, or the port is not in 0..65535.
    """
    if isinstance(address, tuple):
        host, port = address
    else:
        host, sep, port_text = address.rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise ValueError(f"expected host:port, got {address!r}")
        port = int(port_text)
    host = host.strip("[]")
    if not host or not 0 <= port <= 65535:
        raise ValueError(f"bad address {address!r}")
    return host, port


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@attrs.define
class TcpStats:
    """Counters of one TcpTransport (cumulative)."""

    connections_accepted: int = 0
    connections_dialled: int = 0
    handshakes_failed: int = 0  # wrong secret, malformed, timed out
    # The same, by reason (see _failure_reason): "secret", "identity", "version",
    # "http", "timeout", "closed", "own_node_id", "self", "malformed".
    handshakes_failed_by_reason: dict[str, int] = attrs.field(factory=dict)
    connections_refused: int = 0  # over a pending-handshake limit (total, reserve, source)
    protocol_errors: int = 0  # bad frames after the handshake
    sends_dropped: int = 0  # a peer's queue was full
    idle_closed: int = 0
    slow_closed: int = 0  # a peer that stopped reading
    addresses_dropped: int = 0  # gossiped addresses refused: max_learned_addresses reached
    addresses_forgotten: int = 0  # learned addresses that stopped answering, or moved


class _Link:
    """One authenticated connection to a peer (internal)."""

    def __init__(
        self,
        peer: str,
        initiator: str,
        queue_size: int,
        listen: str = "",
        cluster: str | None = None,
    ) -> None:
        self.peer = peer
        self.initiator = initiator
        self.listen = listen  # where the peer says it listens: one process, one address
        self.cluster = cluster  # the peer's cluster, as it last told (None: none yet)
        self.told: str | None = None  # our cluster, as we last told the peer
        self.refusal: str | None = None  # why it was displaced: sent as it closes
        # Node messages; None wakes the writer to tell a change of our cluster.
        self.send_channel, self.receive_channel = trio.open_memory_channel[bytes | None](queue_size)
        self.cancel_scope = trio.CancelScope()


class TcpTransport(Transport):
    """A `Transport` over TCP between nodes that share a secret.

    One link per peer node id. When a second live process with a linked node id
    connects (another listen address), the link goes to the process in the older
    cluster (the smaller cluster id, as each told in its handshake; one in no cluster
    counts as the youngest), and the other is refused with a REFUSED frame
    (`refusals`). Between processes of one cluster, or of none, the link up keeps
    it. A process that joins a cluster while linked tells its peers (a CLUSTER
    frame). So a paused node that comes back finds its peers again even when a
    duplicate of it founded a younger cluster with them meanwhile: the Node's
    two-clusters rule then makes that cluster give way. Set `cluster` (the Node
    does) to say which cluster this process belongs to.

    Args:
        node_id: this node's name; peers know it by this.
        listen: ``(host, port)`` or ``"host:port"`` to listen on; port 0 picks a free
            port (see `address` once serving). Default ``127.0.0.1:0``.
        seeds: addresses to dial, ``"host:port"``: IP addresses or DNS names, the
            latter re-resolved every ``resolve_interval_s`` (a Kubernetes headless
            service lists every pod), and every second while the name resolves to
            nothing or no link is up. Peers also tell each other the addresses they
            know, so one seed is enough.
        secret: the cluster secret (bytes, or str as UTF-8), at least 128 random
            bits (`check_secret`; make one with ``chorus secret``). Never sent: see
            `_tcp_protocol`.
        ssl_context, client_ssl_context: TLS for accepted and for dialled
            connections (a server-side and a client-side ``ssl.SSLContext``; give
            both, with certificates and a CA on each, for mutual TLS). Without them
            frames are authenticated but not encrypted.
        advertise: the ``"host:port"`` peers should dial us at (default: the bound
            address; set it when listening on 0.0.0.0). Port 0 stands for the port
            bound (``"web-1.internal:0"`` with ``listen="0.0.0.0:0"``, as each worker
            of a multi-process server does).
        max_message_bytes: the largest message, in bytes.
        queue_size: messages queued per peer; beyond it `send` drops (returns False).
        handshake_timeout_s, first_byte_timeout_s, idle_timeout_s, write_timeout_s,
            connect_timeout_s: a connection is closed when its handshake takes longer,
            when an accepted one sends nothing for ``first_byte_timeout_s``, when
            nothing arrives for ``idle_timeout_s`` (Node heartbeats keep it busy), or
            when a write blocks for ``write_timeout_s`` (a peer that stopped reading).
        backoff_initial_s, backoff_max_s: reconnection delays double from the first
            to the cap, each jittered by +-50%.
        max_pending_handshakes, reserved_handshakes, max_pending_per_source: limits on
            unauthenticated inbound connections, beyond which a new one is closed at
            once. Sources that are not known peers (seed addresses, addresses peers
            connected from or listen at) share all but ``reserved_handshakes`` of the
            ``max_pending_handshakes`` slots (the reserve is at most half), at most
            ``max_pending_per_source`` per IP address: a flood of idle connections
            cannot keep known peers out.
        forget_after_s, probe_interval_s, max_learned_addresses: how long learned
            addresses are dialled without answering, and how many are kept (see
            `AddressBook`). Seeds are dialled for as long as they resolve.

    Raises:
        ValueError: an address is malformed, or only one of the two TLS contexts is
            given.
        WeakSecretError: (a ValueError) the secret shows under 128 bits.
    """

    def __init__(
        self,
        node_id: str,
        *,
        secret: bytes | str,
        listen: tuple[str, int] | str = ("127.0.0.1", 0),
        seeds: Iterable[str | tuple[str, int]] = (),
        ssl_context: ssl.SSLContext | None = None,
        client_ssl_context: ssl.SSLContext | None = None,
        advertise: str | None = None,
        max_message_bytes: int = 1 << 20,
        queue_size: int = 1024,
        handshake_timeout_s: float = 5.0,
        first_byte_timeout_s: float = 1.0,
        idle_timeout_s: float = 10.0,
        write_timeout_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        resolve_interval_s: float = 30.0,
        max_pending_handshakes: int = 64,
        reserved_handshakes: int = 16,
        max_pending_per_source: int = 8,
        forget_after_s: float = 300.0,
        probe_interval_s: float = 60.0,
        max_learned_addresses: int = 256,
    ) -> None:
        self._node_id = node_id
        self._secret = check_secret(secret)
        self._listen = parse_address(listen)
        self._seeds = [parse_address(s) for s in seeds]
        if (ssl_context is None) != (client_ssl_context is None):
            raise ValueError("TLS needs both ssl_context and client_ssl_context")
        self._ssl_context = ssl_context
        self._client_ssl_context = client_ssl_context
        self._advertise = advertise
        if advertise is not None:
            parse_address(advertise)  # a malformed one fails here, not at serve()
        self._max_message_bytes = max_message_bytes
        self._queue_size = queue_size
        self._handshake_timeout_s = handshake_timeout_s
        self._first_byte_timeout_s = first_byte_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._write_timeout_s = write_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._resolve_interval_s = resolve_interval_s
        self._max_pending = max_pending_handshakes
        self._reserved = min(reserved_handshakes, max_pending_handshakes // 2)
        self._max_per_source = max_pending_per_source
        self._probe_interval_s = probe_interval_s
        self._stats = TcpStats()
        self._book = AddressBook(forget_after_s, probe_interval_s, max_learned_addresses)
        self._links: dict[str, _Link] = {}
        self._gone: dict[str, trio.Event] = {}
        self._known: dict[str, str] = {}  # peer -> its advertised address
        # Sources (see _source_of) of seeds and of authenticated peers.
        self._known_sources: set[str] = set()
        self._dialling: set[str] = set()  # addresses with a dial loop
        self._own_nonces: dict[bytes, str] = {}  # our hello nonces -> address dialled
        # Addresses that led back to us -> until when to believe it (trio time): a
        # relay can echo our hello back to us, so the mark must not last forever.
        self._self_addresses: dict[str, float] = {}
        self._forget_after_s = forget_after_s
        self._pending = 0
        self._pending_unknown = 0
        self._pending_by_source: dict[str, int] = {}
        self._dial_errors: dict[str, str] = {}  # address or seed -> why dialling fails
        # Peer address -> (why it refused our node id, trio time): see refusals().
        self._refusals: dict[str, tuple[str, float]] = {}
        self._refusal_logged = ""  # the last refusal logged at ERROR
        self._duplicates_logged: set[tuple[str, str]] = set()  # (node id, listen) refused
        self._failed_logged_at = -float("inf")
        self._failed_since_log = 0
        self._events_send, self._events_receive = trio.open_memory_channel[Event](1024)
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self._cluster: str | None = None
        self._rng = random.Random()
        self.address: tuple[str, int] | None = None

    # -- the Transport interface -------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def cluster(self) -> str | None:
        """This process's cluster (see `Transport.cluster`): told to peers in the
        handshake, and on every link up when it changes."""
        return self._cluster

    @cluster.setter
    def cluster(self, cluster: str | None) -> None:
        if cluster == self._cluster:
            return
        self._cluster = cluster
        for link in self._links.values():
            # A full queue drops the wake-up: the next message tells it first.
            with contextlib.suppress(
                trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError
            ):
                link.send_channel.send_nowait(None)

    @property
    def advertised(self) -> str | None:
        """The ``"host:port"`` peers dial this node at (None until `serve` has bound)."""
        return self._advertise if self.address is not None else None

    @property
    def seeded(self) -> bool:
        return bool(self._seeds)

    @property
    def max_message_bytes(self) -> int:
        return self._max_message_bytes

    def peers(self) -> frozenset[str]:
        return frozenset(self._links)

    @property
    def stats(self) -> TcpStats:
        """This transport's counters (cumulative), read at the call."""
        stats, book = self._stats, self._book
        stats.addresses_dropped, stats.addresses_forgotten = book.dropped, book.forgotten
        return stats

    def dial_errors(self) -> dict[str, str]:
        """Why dialling fails, in plain words, by address (or by seed, for a name that
        does not resolve): refused, no answer, an HTTP port, a different cluster
        secret or handshake version, or our node id taken there by another live
        process (`refusals`). An address leaves once a handshake there works, or its
        node connects to us from there."""
        return {**self._dial_errors, **self.refusals()}

    def refusals(self) -> dict[str, str]:
        """Peers that refuse us because another live process holds our node id there,
        by the peer's address: its reason (``"node id b is already taken by a live
        node at 127.0.0.1:7401: ..."``). A peer keeps a link per node id, and keeps the
        one it has (see `TcpTransport`). An entry leaves once a link with that peer is
        up, once dialling it fails otherwise, or ``15`` s after the last refusal."""
        now = trio.current_time()
        return {a: r for a, (r, at) in self._refusals.items() if now - at < _REFUSAL_TTL_S}

    def peer_addresses(self) -> dict[str, str]:
        """Where each node this transport has had a link with says it listens (the
        address it advertised in its handshake, ``"host:port"``), by node id: what
        this transport dials when the link drops. Kept after a link drops, as the
        dialling is; the last address told wins."""
        return dict(self._known)

    def dialling(self) -> frozenset[str]:
        """The addresses (``"host:port"``) this transport keeps dialling now: seeds as
        resolved, and learned addresses not yet forgotten (see `AddressBook`)."""
        return frozenset(self._dialling)

    def send(self, peer: str, data: bytes) -> bool:
        if len(data) > self._max_message_bytes:
            raise ValueError(
                f"message of {len(data)} bytes is over the {self._max_message_bytes}-byte limit"
            )
        link = self._links.get(peer)
        if link is None or self._closed:
            return False
        try:
            link.send_channel.send_nowait(data)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self._stats.sends_dropped += 1
            return False
        return True

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every peer's queue is empty (its messages written to the socket)."""
        with trio.move_on_after(timeout_s):
            while any(
                link.send_channel.statistics().current_buffer_used for link in self._links.values()
            ):
                await trio.sleep(0.005)
            return True
        return False

    async def receive(self) -> Event:
        try:
            return await self._events_receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise TransportClosed(f"{self._node_id}: transport closed") from None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                host, port = self._listen
                listeners = await nursery.start(
                    functools.partial(trio.serve_tcp, self._accept, port, host=host)
                )
                bound = listeners[0].socket.getsockname()
                self.address = (bound[0], bound[1])
                if self._advertise is None:
                    self._advertise = format_address(*self.address)
                else:
                    advertised_host, advertised_port = parse_address(self._advertise)
                    if advertised_port == 0:
                        self._advertise = format_address(advertised_host, self.address[1])
                for seed in self._seeds:
                    nursery.start_soon(self._resolve_loop, seed)
                log.info("tcp %s: listening on %s", self._node_id, self._advertise)
                task_status.started()
        finally:
            self._closed = True
            self._events_send.close()
            self._links.clear()

    # -- dialling ------------------------------------------------------------------

    async def _resolve_loop(self, seed: tuple[str, int]) -> None:
        host, port = seed
        name = format_address(host, port)
        while True:
            try:
                infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
            except OSError as exc:
                self._dial_failed(name, f"cannot resolve {host!r}: {exc}", misconfigured=True)
                infos = []
            else:
                # Only the lookup's own error: a seed given as an IP address is its
                # own dial address, whose dial error must stay until a dial succeeds.
                if self._dial_errors.get(name, "").startswith("cannot resolve"):
                    del self._dial_errors[name]
            resolved = frozenset(format_address(str(i[4][0]), int(i[4][1])) for i in infos)
            if resolved:  # a failed lookup keeps the last answer
                self._book.set_seed(name, resolved)
                self._add_known_hosts(str(i[4][0]) for i in infos)
            for address in sorted(resolved):
                self._dial(address)
            # Until the name resolves and a link is up, look again soon: a fresh
            # Kubernetes StatefulSet's pods appear in its headless service's DNS a
            # few at a time, and a node that saw only itself must not wait minutes.
            quick = not resolved or not self._links
            await trio.sleep(
                min(self._resolve_interval_s, _QUICK_RESOLVE_S)
                if quick
                else self._resolve_interval_s
            )

    def _add_known_hosts(self, hosts: Iterable[str]) -> None:
        for host in hosts:
            if len(self._known_sources) < _MAX_KNOWN_SOURCES:
                self._known_sources.add(_source_of(host))

    def _dial(self, address: str) -> None:
        if address in self._dialling or self._nursery is None:
            return
        if address == self._advertise:
            return
        self._dialling.add(address)
        self._nursery.start_soon(self._dial_loop, address)

    def _peer_at(self, address: str) -> str | None:
        peer = self._book.node_at(address)
        if peer is None:
            peer = next((p for p, a in self._known.items() if a == address), None)
        return peer

    async def _dial_loop(self, address: str) -> None:
        host, port = parse_address(address)
        delay = self._backoff[0]
        try:
            while True:
                until = self._self_addresses.get(address)
                if until is not None:  # it led back to us: try again once the mark expires
                    await trio.sleep_until(until)
                    self._self_addresses.pop(address, None)
                    continue
                step = self._book.next_step(address, trio.current_time())
                if step is Dial.STOP:
                    log.info("tcp %s: no longer dialling %s", self._node_id, address)
                    return
                peer = self._peer_at(address)
                if peer is not None and peer in self._links:
                    await self._gone.setdefault(peer, trio.Event()).wait()
                    self._book.seen(address, trio.current_time())
                    continue
                if step is Dial.PROBE:
                    await trio.sleep(self._probe_interval_s * self._rng.uniform(0.5, 1.5))
                    if self._book.next_step(address, trio.current_time()) is Dial.STOP:
                        continue
                node: str | None = None
                linked = False
                try:
                    with trio.fail_after(self._connect_timeout_s):
                        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
                    if self._client_ssl_context is not None:
                        stream = trio.SSLStream(
                            stream, self._client_ssl_context, server_hostname=host
                        )
                    self._stats.connections_dialled += 1
                    node, linked = await self._run(stream, client=True, address=address)
                except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                    log.debug("tcp %s: dial %s failed: %s", self._node_id, address, exc)
                    self._dial_failed(address, *_diagnose(None, exc, b""))
                except Exception:  # one connection's failure must not stop the transport
                    log.exception("tcp %s: connection to %s failed", self._node_id, address)
                if node is not None:
                    self._dial_errors.pop(address, None)
                    self._book.answered(address, node, trio.current_time())
                if linked:  # a link that was up: reconnect quickly
                    delay = self._backoff[0]
                await trio.sleep(delay * self._rng.uniform(0.5, 1.5))
                delay = min(delay * 2, self._backoff[1])
        finally:
            self._dialling.discard(address)
            self._dial_errors.pop(address, None)

    # -- accepting -----------------------------------------------------------------

    def _admit(self, source: str, known: bool) -> bool:
        """Take a pending-handshake slot for an inbound connection from ``source``."""
        if self._pending >= self._max_pending:
            return False
        if self._pending_by_source.get(source, 0) >= self._max_per_source:
            return False  # known or not: a stranger may share a known peer's IP (NAT)
        if not known:
            if self._pending_unknown >= self._max_pending - self._reserved:
                return False
            self._pending_unknown += 1
        self._pending += 1
        self._pending_by_source[source] = self._pending_by_source.get(source, 0) + 1
        return True

    def _release(self, source: str, known: bool) -> None:
        self._pending -= 1
        self._pending_unknown -= not known
        left = self._pending_by_source[source] - 1
        if left:
            self._pending_by_source[source] = left
        else:
            del self._pending_by_source[source]

    async def _accept(self, stream: trio.SocketStream) -> None:
        try:
            host = str(stream.socket.getpeername()[0])
        except OSError:  # it hung up already
            await trio.aclose_forcefully(stream)
            return
        source = _source_of(host)
        known = source in self._known_sources
        if not self._admit(source, known):
            self._stats.connections_refused += 1
            await trio.aclose_forcefully(stream)
            return
        self._stats.connections_accepted += 1
        try:
            wrapped: trio.abc.Stream = stream
            if self._ssl_context is not None:
                wrapped = trio.SSLStream(stream, self._ssl_context, server_side=True)
            await self._run(wrapped, client=False, address=None, source=(source, known), host=host)
        except Exception:  # one connection's failure must not stop the transport
            log.exception("tcp %s: an accepted connection failed", self._node_id)
            await trio.aclose_forcefully(stream)

    # -- one connection ----------------------------------------------------------------

    async def _run(
        self,
        stream: trio.abc.Stream,
        *,
        client: bool,
        address: str | None,
        source: tuple[str, bool] | None = None,
        host: str | None = None,
    ) -> tuple[str | None, bool]:
        """Handshake, then carry messages until the connection ends.

        ``source`` is an accepted connection's (source, known) slot, released once
        the handshake ends; ``host`` its IP address. Returns the peer's node id
        (None if the handshake failed) and whether a link was up (False for a
        duplicate of an existing link).
        """
        assert self._advertise is not None
        proto = Connection(
            self._node_id,
            self._advertise,
            self._secret,
            client=client,
            max_frame_bytes=self._max_message_bytes + 64,
            cluster=self.cluster,
        )
        if client and address is not None:
            self._own_nonces[proto.nonce] = address
        try:
            handshake = await self._handshake(stream, proto, address if client else None)
        finally:
            if source is not None:
                self._release(*source)
            if client:
                self._own_nonces.pop(proto.nonce, None)
        if handshake is None:
            await trio.aclose_forcefully(stream)
            return None, False
        authenticated, early = handshake
        if host is not None:
            self._add_known_hosts([host])
        taken = self._taken(authenticated)
        if taken is not None:
            await self._refuse(stream, proto, authenticated, taken)
            return authenticated.node_id, False
        self._displace(authenticated)
        link = self._register(
            authenticated, initiator=self._node_id if client else authenticated.node_id
        )
        if link is None:
            await trio.aclose_forcefully(stream)
            return authenticated.node_id, False
        link.told = proto.cluster
        try:
            with link.cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop, stream, proto, link, nursery.cancel_scope)
                    if await self._deliver(early, link):
                        await self._read_loop(stream, proto, link)
                    nursery.cancel_scope.cancel()
        finally:
            self._unregister(link)
            self._book.seen(authenticated.listen, trio.current_time())
            await trio.aclose_forcefully(stream)
        # A link refused at once was never up: back off as after a failed dial.
        return authenticated.node_id, authenticated.listen not in self.refusals()

    def _taken(self, auth: Authenticated) -> str | None:
        """Why a connection from ``auth`` must be refused: another process holds its
        node id here (a live link to that id from another address), and it is not
        of a cluster older than that process's. None if not.

        One link per node id: a second process with the same id must not take the
        link from the first (they would replace each other on every reconnection,
        and each replacement drops a node's state). The link up keeps it, unless the
        newcomer belongs to an older cluster (see `_displace`); the newcomer is told
        why, and gets the link once the first is gone.
        """
        existing = self._links.get(auth.node_id)
        if existing is None or existing.listen == auth.listen:
            return None  # none, or the same process (both sides dialled; see _register)
        if _older(auth.cluster, existing.cluster):
            return None  # the newcomer takes the link: see _displace
        older = existing.cluster if _older(existing.cluster, auth.cluster) else None
        return _taken_reason(auth.node_id, existing.listen, older)

    def _displace(self, auth: Authenticated) -> None:
        """Close the link of another process with ``auth``'s node id, which belongs to
        a cluster younger than ``auth``'s (or to none). It redials, and is refused.

        A process of the older cluster must get the link: otherwise a duplicate that
        founded a new cluster with our node while the first process was paused would
        keep that one out for good, and its cluster, with its state, would never
        meet ours (the younger gives way when two clusters meet, see `Node`).
        """
        existing = self._links.get(auth.node_id)
        if existing is None or existing.listen == auth.listen:
            return
        log.warning(
            "tcp %s: %s at %s, of the cluster %s, takes the link from %s at %s, of %s: "
            "the process of the older cluster keeps the node id",
            self._node_id,
            auth.node_id,
            auth.listen,
            auth.cluster,
            auth.node_id,
            existing.listen,
            f"the cluster {existing.cluster}" if existing.cluster else "no cluster",
        )
        # Its write loop sends what is queued, then this refusal, and closes.
        existing.refusal = _taken_reason(auth.node_id, auth.listen, auth.cluster)
        self._unregister(existing)

    async def _refuse(
        self, stream: trio.abc.Stream, proto: Connection, auth: Authenticated, reason: str
    ) -> None:
        key = (auth.node_id, auth.listen)
        if key not in self._duplicates_logged and len(self._duplicates_logged) < _MAX_KNOWN_SOURCES:
            self._duplicates_logged.add(key)
            log.warning(
                "tcp %s: refused %s at %s: %s", self._node_id, auth.node_id, auth.listen, reason
            )
        proto.send_refused(reason)
        with contextlib.suppress(trio.TooSlowError, trio.BrokenResourceError, OSError):
            with trio.fail_after(1.0):
                await stream.send_all(proto.data_to_send())
        await trio.aclose_forcefully(stream)

    def _on_refused(self, link: _Link, reason: str) -> None:
        self._refusals[link.listen] = (reason, trio.current_time())
        if reason != self._refusal_logged:  # once, not once per peer or per redial
            self._refusal_logged = reason
            log.error("tcp %s: %s refuses this node: %s", self._node_id, link.peer, reason)

    async def _handshake(
        self, stream: trio.abc.Stream, proto: Connection, address: str | None = None
    ) -> tuple[Authenticated, list[ProtoEvent]] | None:
        """Run the handshake. Returns the peer, and the frames that came in the
        same read as its last message; None if it failed (then, for a dial to
        ``address``, `dial_errors` says why)."""
        received = b""
        try:
            with trio.fail_after(self._handshake_timeout_s):
                out = proto.data_to_send()
                if out:
                    await stream.send_all(out)
                # An accepted connection must say something soon; a dialled one waits.
                first = not proto.client
                while True:
                    limit = self._first_byte_timeout_s if first else math.inf
                    with trio.fail_after(limit):
                        data = bytes(await stream.receive_some(65536))
                    first = False
                    received = received or data
                    if not data:
                        raise ProtocolError("connection closed during the handshake")
                    events = proto.receive_data(data)
                    if not proto.client and proto.peer_nonce in self._own_nonces:
                        # A hello with one of our own nonces: we dialled ourselves.
                        address = self._own_nonces[proto.peer_nonce]
                        until = trio.current_time() + self._forget_after_s
                        self._self_addresses[address] = until
                        raise ProtocolError("we dialled ourselves")
                    out = proto.data_to_send()
                    if out:
                        await stream.send_all(out)
                    for i, event in enumerate(events):
                        if isinstance(event, Authenticated):
                            return event, events[i + 1 :]
        except (ProtocolError, trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
            self._stats.handshakes_failed += 1
            by_reason = self._stats.handshakes_failed_by_reason
            reason = _failure_reason(proto, exc, received)
            by_reason[reason] = by_reason.get(reason, 0) + 1
            self._log_failed_handshake(str(exc) or type(exc).__name__)
            if address is not None:
                self._dial_failed(address, *_diagnose(proto, exc, received))
            return None

    def _dial_failed(self, address: str, why: str, misconfigured: bool) -> None:
        # A misconfiguration (another secret, protocol or version, a seed that does
        # not resolve) gets one ERROR line each time the reason for an address
        # changes; the rest (refused, no answer) are routine.
        if misconfigured and self._dial_errors.get(address) != why:
            log.error("tcp %s: cannot connect to %s: %s", self._node_id, address, why)
        self._dial_errors[address] = why
        self._refusals.pop(address, None)  # whoever refused us there is gone

    def _log_failed_handshake(self, reason: str) -> None:
        # Anyone can fail a handshake: say so at most once per interval, with a count.
        now = trio.current_time()
        self._failed_since_log += 1
        if now - self._failed_logged_at < _FAILED_HANDSHAKE_LOG_INTERVAL_S:
            log.debug("tcp %s: handshake failed: %s", self._node_id, reason)
            return
        log.warning(
            "tcp %s: handshake failed: %s (%d failed since the last such message)",
            self._node_id,
            reason,
            self._failed_since_log,
        )
        self._failed_logged_at, self._failed_since_log = now, 0

    def _register(self, auth: Authenticated, initiator: str) -> _Link | None:
        peer = auth.node_id
        preferred = min(self._node_id, peer)
        existing = self._links.get(peer)
        if existing is not None:
            if existing.initiator == preferred or initiator != preferred:
                return None  # keep the existing one: both sides choose the same
            existing.cancel_scope.cancel()
            self._unregister(existing)
        link = _Link(peer, initiator, self._queue_size, auth.listen, auth.cluster)
        self._links[peer] = link
        self._known[peer] = auth.listen
        self._dial_errors.pop(auth.listen, None)  # it answers, whoever dialled whom
        self._gone.pop(peer, None)
        self._emit(PeerUp(peer))
        log.info("tcp %s: connected to %s (%s)", self._node_id, peer, auth.listen)
        if not auth.listen.startswith(("0.0.0.0:", "[::]:")):
            # It listens there: dial it if the link drops. Its other addresses go.
            self._book.answered(auth.listen, peer, trio.current_time())
            with contextlib.suppress(ValueError):
                self._add_known_hosts([parse_address(auth.listen)[0]])
            self._dial(auth.listen)
        return link

    def _unregister(self, link: _Link) -> None:
        if self._links.get(link.peer) is link:
            del self._links[link.peer]
            link.send_channel.close()
            self._gone.setdefault(link.peer, trio.Event()).set()
            self._emit(PeerDown(link.peer))
            log.info("tcp %s: disconnected from %s", self._node_id, link.peer)

    def _emit(self, event: Event) -> None:
        # Dropping a membership event when the queue is full is harmless: the Node's
        # heartbeats and failure detector track membership on their own.
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self._events_send.send_nowait(event)

    async def _read_loop(self, stream: trio.abc.Stream, proto: Connection, link: _Link) -> None:
        while True:
            data = b""
            with trio.move_on_after(self._idle_timeout_s):
                try:
                    data = bytes(await stream.receive_some(65536))
                except (trio.BrokenResourceError, OSError):
                    return
                if not data:
                    return
            if not data:
                self._stats.idle_closed += 1
                log.info(
                    "tcp %s: %s idle for %s s, closing",
                    self._node_id,
                    link.peer,
                    self._idle_timeout_s,
                )
                return
            try:
                events = proto.receive_data(data)
            except ProtocolError as exc:
                self._stats.protocol_errors += 1
                log.warning("tcp %s: closing %s: %s", self._node_id, link.peer, exc)
                return
            if not await self._deliver(events, link):
                return

    async def _deliver(self, events: list[ProtoEvent], link: _Link) -> bool:
        """Hand ``events`` on; False when the peer refused the link (close it)."""
        for event in events:
            if isinstance(event, Message):
                if self._refusals:  # it takes us now: the other process is gone
                    self._refusals.pop(link.listen, None)
                await self._events_send.send(Received(link.peer, event.data))
            elif isinstance(event, ClusterChanged):
                link.cluster = event.cluster
            elif isinstance(event, Peers):
                self._learn(event.addresses)
            elif isinstance(event, Refused):
                self._on_refused(link, event.reason)
                return False
        return True

    def _learn(self, addresses: Iterable[str]) -> None:
        now = trio.current_time()
        for address in addresses:
            try:
                parse_address(address)
            except ValueError:
                continue
            if self._book.learn(address, now):
                self._dial(address)

    async def _write_loop(
        self, stream: trio.abc.Stream, proto: Connection, link: _Link, scope: trio.CancelScope
    ) -> None:
        gossip = sorted(a for p, a in self._known.items() if p != link.peer)
        if gossip:
            proto.send_peers(gossip)
        if link.told != self._cluster:  # it changed during the handshake
            link.told = self._cluster
            proto.send_cluster(self._cluster)
        out = proto.data_to_send()
        if out:
            await stream.send_all(out)
        async for data in link.receive_channel:
            if link.told != self._cluster:
                link.told = self._cluster
                proto.send_cluster(self._cluster)
            if data is not None:
                proto.send_message(data)
            out = proto.data_to_send()
            if not out:
                continue
            with trio.move_on_after(self._write_timeout_s) as write:
                try:
                    await stream.send_all(out)
                except (trio.BrokenResourceError, OSError):
                    break
            if write.cancelled_caught:
                self._stats.slow_closed += 1
                log.warning("tcp %s: %s stopped reading, closing", self._node_id, link.peer)
                break
        else:
            if link.refusal is not None:  # displaced (see _displace): say why
                proto.send_refused(link.refusal)
                with contextlib.suppress(trio.TooSlowError, trio.BrokenResourceError, OSError):
                    with trio.fail_after(1.0):
                        await stream.send_all(proto.data_to_send())
        scope.cancel()

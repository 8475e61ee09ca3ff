"""The Transport interface: what a Node needs from the network, and nothing more."""

from __future__ import annotations

import abc

import attrs
import trio


class TransportClosed(Exception):
    """The transport was closed (or its node crashed): it will deliver nothing more."""


@attrs.frozen
class Received:
    """A message from ``peer``: the bytes it passed to `Transport.send`, intact."""

    peer: str
    data: bytes


@attrs.frozen
class PeerUp:
    """``peer`` became reachable (connected, or attached to the network)."""

    peer: str


@attrs.frozen
class PeerDown:
    """``peer`` stopped being reachable (disconnected, crashed or closed)."""

    peer: str


#: What `Transport.receive` returns.
Event = Received | PeerUp | PeerDown


class Transport(abc.ABC):
    """The contract between a `Node` and a network. Third parties may implement it.

    A transport moves opaque byte messages between named peers, best effort: a message
    may be lost, duplicated, delayed or reordered, and the Node's protocol tolerates all
    four. What a transport must guarantee:

    - a message is delivered whole or not at all, and never altered (frames carry
      their own length; authentication is the transport's business);
    - a message arrives attributed to the peer that sent it;
    - `send` never blocks and never raises for a slow, dead or unknown peer: it queues
      (within a bound) or drops, and says which. A slow peer must not hold back the
      others, nor grow memory without bound;
    - `receive` returns events in the order they arrived.

    Lifecycle: the Node calls ``await nursery.start(transport.serve)`` and cancels that
    nursery to stop. After `serve` returns, `receive` raises TransportClosed and
    `send` returns False.
    """

    #: The id of the cluster this node belongs to (`Membership.cluster`), None while
    #: it belongs to none. The Node sets it whenever it changes. A transport may tell
    #: peers (TcpTransport does, in its handshake: of two live processes with one
    #: node id, a peer keeps the link of the one in the older cluster) or ignore it.
    cluster: str | None = None

    @property
    @abc.abstractmethod
    def node_id(self) -> str:
        """This node's name on the network."""

    @property
    @abc.abstractmethod
    def seeded(self) -> bool:
        """True when there are peers to try (seeds, or other members of the network).

        A Node on an unseeded transport knows it is alone and reports ready at once.
        """

    @property
    @abc.abstractmethod
    def max_message_bytes(self) -> int:
        """The largest message `send` accepts, in bytes."""

    @abc.abstractmethod
    def peers(self) -> frozenset[str]:
        """The peers currently reachable, this node excluded."""

    @abc.abstractmethod
    def send(self, peer: str, data: bytes) -> bool:
        """Queue ``data`` for ``peer``, without blocking. Call from the trio thread.

        Returns:
            True if queued (delivery is still best effort), False if dropped: the
            peer is unknown or unreachable, its queue is full, or the transport is
            closed.

        Raises:
            ValueError: ``data`` is larger than `max_message_bytes`; nothing is sent.
        """

    @abc.abstractmethod
    async def receive(self) -> Event:
        """Wait for the next event.

        Raises:
            TransportClosed: the transport is closed; no event will follow.
        """

    async def flush(self, timeout_s: float) -> bool:
        """Wait until queued messages have been handed to the network.

        For a graceful shutdown. The default returns at once (nothing is queued).

        Returns:
            True if everything was handed over within ``timeout_s`` seconds.
        """
        return True

    @abc.abstractmethod
    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the transport's background work until cancelled, then close.

        Calls ``task_status.started()`` once the transport can send and receive.
        """

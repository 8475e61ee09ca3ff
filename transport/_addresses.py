"""AddressBook: which addresses a TcpTransport keeps dialling, and for how long.

Sans-IO: the caller passes the time (``now``, in seconds, from any monotonic clock).

Two kinds of address:

- **Seeds**: what the operator configured, as resolved (a DNS name gives one address
  per record, re-resolved now and then). Dialled for as long as they resolve.
- **Learned**: gossiped by an authenticated peer, or advertised by a peer that
  connected to us. A learned address is dialled while it answers; one that has not
  answered a handshake for ``forget_after_s`` is forgotten if it never answered at
  all, and only *probed* (every ``probe_interval_s``) if it once did, so two nodes
  split for longer than every timeout still find each other when the split heals.
  An address is forgotten at once when the node that answered there shows up at
  another address (a restarted pod with a new IP), and at most
  ``max_learned_addresses`` are kept: further gossip is dropped, and an address a
  peer proved it listens at evicts the stalest one.
"""

from __future__ import annotations

import enum

import attrs


class Dial(enum.Enum):
    """What a dial loop should do next with its address."""

    STOP = "stop"  # forgotten: end the loop
    DIAL = "dial"  # dial, with the usual backoff
    PROBE = "probe"  # dial once every probe_interval_s


@attrs.define
class _Learned:
    learned_at: float
    answered_at: float | None = None


@attrs.define
class AddressBook:
    """The addresses worth dialling (see the module notes).

    Args:
        forget_after_s: how long a learned address may go unanswered before it is
            forgotten (never answered) or only probed (answered once), in seconds.
        probe_interval_s: the delay between probes, in seconds.
        max_learned_addresses: the most learned addresses kept.
    """

    forget_after_s: float = 300.0
    probe_interval_s: float = 60.0
    max_learned_addresses: int = 256
    dropped: int = 0  # gossiped addresses refused for want of room
    forgotten: int = 0  # learned addresses forgotten: unanswered, moved, or evicted
    _seeds: dict[str, frozenset[str]] = attrs.field(factory=dict)
    _learned: dict[str, _Learned] = attrs.field(factory=dict)
    _node_at: dict[str, str] = attrs.field(factory=dict)  # address -> node that answered

    def set_seed(self, seed: str, addresses: frozenset[str]) -> None:
        """Record what ``seed`` resolves to now (replacing what it resolved to)."""
        self._seeds[seed] = addresses

    def is_seed(self, address: str) -> bool:
        return any(address in resolved for resolved in self._seeds.values())

    def learn(self, address: str, now: float) -> bool:
        """A peer gossiped ``address``. True if it is new here: start dialling it."""
        if address in self._learned or self.is_seed(address):
            return False
        if len(self._learned) >= self.max_learned_addresses:
            self.dropped += 1
            return False
        self._learned[address] = _Learned(learned_at=now)
        return True

    def answered(self, address: str, node: str, now: float) -> bool:
        """``node`` authenticated at ``address``: we dialled it there, or it proved
        it knows the secret and told us it listens there. Other learned addresses of
        ``node`` are forgotten. True if the address is new here: start dialling it.
        """
        for other in [a for a, at in self._node_at.items() if at == node and a != address]:
            if other in self._learned:  # seeds stay: the operator listed them
                self._forget(other)
        self._node_at[address] = node
        new = False
        entry = self._learned.get(address)
        if entry is None and not self.is_seed(address):
            if len(self._learned) >= self.max_learned_addresses and not self._evict(now):
                return False
            entry = self._learned[address] = _Learned(learned_at=now)
            new = True
        if entry is not None:
            entry.answered_at = now
        return new

    def _evict(self, now: float) -> bool:
        """Forget the stalest learned address. False if there is none."""
        if not self._learned:
            return False
        stalest = min(self._learned, key=lambda a: self._last(self._learned[a]))
        self._forget(stalest)
        return True

    def seen(self, address: str, now: float) -> None:
        """A link over ``address`` was up until ``now``: it still answers. (An
        address that never answered a handshake is not refreshed.)"""
        entry = self._learned.get(address)
        if entry is not None and entry.answered_at is not None:
            entry.answered_at = now

    def node_at(self, address: str) -> str | None:
        """The node that last authenticated at ``address``, if any."""
        return self._node_at.get(address)

    def next_step(self, address: str, now: float) -> Dial:
        """Whether the dial loop of ``address`` should go on, and how."""
        if self.is_seed(address):
            return Dial.DIAL
        entry = self._learned.get(address)
        if entry is None:
            return Dial.STOP
        if now - self._last(entry) <= self.forget_after_s:
            return Dial.DIAL
        if entry.answered_at is None:
            self._forget(address)
            return Dial.STOP
        return Dial.PROBE

    def learned(self) -> list[str]:
        """The learned addresses, oldest first."""
        return list(self._learned)

    @staticmethod
    def _last(entry: _Learned) -> float:
        return entry.learned_at if entry.answered_at is None else entry.answered_at

    def _forget(self, address: str) -> None:
        del self._learned[address]
        self._node_at.pop(address, None)
        self.forgotten += 1

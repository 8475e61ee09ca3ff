"""Which nodes serve a recipe: a per-map member set, and owners elected among it.

Each node that serves a recipe on map ``M`` announces itself in the replicated map
``M.members``: key its node id, value its incarnation. Owners are elected by
rendezvous (HRW) hashing among the nodes that are live (`Node.members`), are
members of the cluster, and whose announcement names their current member
incarnation. A node that never runs the recipe (a ``chorus serve`` node, a worker
that only reads flags) never owns a key; a node that crashed or restarted stops
owning keys once the others see it down or see its new incarnation, whatever its
old announcement says. Phoenix.Tracker keeps presences per topic the same way.

A node that stops serving while it refuses writes (a clock step not yet confirmed,
a rejoin) cannot delete its announcement then; it keeps trying until it can, since
a node that keeps running stays live and would keep owning keys. Likewise a node
that starts serving while it refuses writes announces itself once it takes them.

The rule lives in `_serving` alone, so it can be swapped (for services carried in
the membership itself) without touching the recipes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

import trio

from crdt import Key
from transport import Node, WriteRefused, rendezvous_owner

log = logging.getLogger("chorus.recipes")


def _serving(
    live: Iterable[str], members: frozenset[str], announced: Callable[[str], Any]
) -> set[str]:
    """The election's candidates: the ``live`` node ids whose announcement (their
    incarnation, ``announced(name)``) makes a member incarnation ``name/incarnation``."""
    return {
        name
        for name in live
        if type(incarnation := announced(name)) is str and f"{name}/{incarnation}" in members
    }


class MemberSet:
    """The nodes serving a recipe on one map, and the owner of each key among them.

    Args:
        node: the running node; use the member set from its trio thread.
        name: the recipe's map; announcements go in the map ``f"{name}.members"``.
        refresh_s: while serving (`run`), how often to check, in seconds, that this
            node's announcement is current and to delete announcements of
            incarnations the cluster removed. A change to this node's entry is
            answered at once. Once it stops serving, how often to retry a
            withdrawal the node refused (`withdraw`).

    Raises:
        TypeError: ``name`` is not a non-empty str.
        ValueError: ``refresh_s`` is not positive.
    """

    def __init__(self, node: Node, name: str, *, refresh_s: float = 1.0) -> None:
        if not refresh_s > 0:
            raise ValueError(f"refresh_s must be positive, got {refresh_s!r}")
        if type(name) is not str or not name:
            raise TypeError(f"map names are non-empty str, not {name!r}")
        self._node = node
        self._map = node.map(f"{name}.members")
        self._refresh_s = refresh_s
        self._serving = False
        self._retrying = False  # a task retries a refused withdrawal (`_retry_withdraw`)
        self._changed = trio.Event()
        self._map.subscribe(self._on_change)

    @property
    def name(self) -> str:
        """The map holding the announcements."""
        return self._map.name

    def serving(self) -> frozenset[str]:
        """The node ids that serve the recipe now, as this node sees them: live,
        members of the cluster, and announced under their member incarnation."""
        node = self._node
        return frozenset(_serving(node.members(), node.membership.members(), self._map.get))

    def owner(self, key: Key) -> str | None:
        """The node that owns ``key``: HRW over `serving`; None when no node serves."""
        serving = self.serving()
        return rendezvous_owner(key, serving) if serving else None

    def announce(self) -> bool:
        """Write this node's announcement unless it is current already.

        Returns:
            True when this node is announced under its current incarnation; False
            when the node refuses writes for now (not ready: joining, draining).
        """
        node = self._node
        if self._map.get(node.node_id) == node.incarnation:
            return True
        try:
            self._map.set(node.node_id, node.incarnation)
        except WriteRefused as exc:
            log.debug("%s: cannot announce %s yet (%s)", self.name, node.node_id, exc)
            return False
        return True

    def withdraw(self) -> bool:
        """Delete this node's announcement, if it is there.

        A node that refuses writes now cannot delete it, and it would stay an owner
        while it stays live: the withdrawal is then retried every ``refresh_s``
        seconds, in a task of its own, until it is written, or moot: this node
        serves again (`run`), its incarnation left or was removed from the cluster,
        or the node stopped (its announcement then names no live member). Each
        refused try counts in the node's ``stats.writes_refused``.

        Returns:
            True when this node is not announced (any more); False when the
            withdrawal was refused for now, and is retried.
        """
        if self._withdraw_now():
            return True
        if not self._retrying:
            try:
                trio.lowlevel.spawn_system_task(self._retry_withdraw)
            except RuntimeError:  # the trio run is ending: so is the node
                return False
            self._retrying = True
        return False

    def _withdraw_now(self) -> bool:
        """Try to delete this node's announcement once: True when it is not (or no
        longer needs to be) there; False when the node refused the write."""
        node = self._node
        if self._map.get(node.node_id) != node.incarnation:
            return True
        if f"{node.node_id}/{node.incarnation}" in node.membership.removed:
            return True  # it left or was removed: its announcement names no member
        try:
            self._map.delete(node.node_id)
        except WriteRefused as exc:
            log.debug("%s: cannot withdraw %s yet (%s)", self.name, node.node_id, exc)
            return False
        except RuntimeError:  # the node stopped
            return True
        return True

    async def _retry_withdraw(self) -> None:
        """Retry a refused withdrawal until it is written or moot (see `withdraw`).
        One such task per member set at a time; it checks `_serving` right before
        each try, so a node that serves again is never withdrawn by it."""
        try:
            while True:
                await trio.sleep(self._refresh_s)
                if self._serving or self._withdraw_now():
                    return
        except Exception:  # a system task must not raise: that would end the trio run
            log.exception("%s: retrying the withdrawal of %s failed", self.name, self._node.node_id)
        finally:
            self._retrying = False

    def collect(self) -> int:
        """Delete the announcements of incarnations the cluster removed (they left,
        were replaced by a restart, or were expelled) that this node owns by the
        election; return how many. Removal is final, so none of them serves again.

        Raises:
            WriteRefused: the node takes no writes now.
        """
        removed = self._node.membership.removed
        me = self._node.node_id
        serving = self.serving()
        if me not in serving:
            return 0
        stale = [
            name
            for name, incarnation in list(self._map.items())
            if type(name) is str
            and name != me
            and f"{name}/{incarnation}" in removed
            and rendezvous_owner(name, serving) == me
        ]
        for name in stale:
            self._map.delete(name)
        return len(stale)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled: announce this node (retried every ``refresh_s``
        seconds until the node takes writes), keep the announcement current, collect
        stale ones; withdraw when cancelled (retried in the background until the node
        takes writes, see `withdraw`). ``await nursery.start(members.run)`` returns
        after the first try.

        Cancel it before `Node.drain`, which refuses writes: the withdrawal then goes
        out with the writes drain hands over.
        """
        self._serving = True
        try:
            self.announce()
            task_status.started()
            while True:
                with trio.move_on_after(self._refresh_s):
                    await self._changed.wait()
                self._changed = trio.Event()
                if self.announce():  # so this node serves, and takes writes
                    with contextlib.suppress(WriteRefused):
                        self.collect()
        finally:
            self._serving = False
            self.withdraw()

    def _on_change(self, keys: frozenset[Key]) -> None:
        if self._serving and self._node.node_id in keys:
            self._changed.set()

"""Which nodes serve a recipe, and the owner of each key among them.

A recipe serves a named service on each node that runs it (`Node.serve`), and its
nodes learn who serves what from the services each node tells its peers, carried
with membership (`Node.services_of`). Owners are elected by rendezvous (HRW)
hashing among the live members whose current incarnation serves the service
(`Node.serving`, `Node.owner_of`). A node that never runs the recipe (a ``chorus
serve`` node, a worker that only reads flags) never owns a key; a node that
crashed or restarted stops owning keys once the others see it down or see its new
incarnation; a node that stops serving stops owning keys once its peers hear it
(at once while linked: the change is sent right away, not written to a map).

Earlier versions announced each serving node in a replicated map
``f"{name}.members"``; that map is no longer written or read, and a node that
refuses writes (a clock step not yet confirmed) now starts and stops serving like
any other.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import trio

from crdt import Key
from transport import Handler, Node
from transport._calls import check_service

log = logging.getLogger("chorus.recipes")


async def _present(caller: str, payload: Any) -> None:
    """The handler of a service that only marks its nodes as members: answers None."""
    return None


class MemberSet:
    """The nodes serving a recipe's service, and the owner of each key among them.

    Args:
        node: the running node; use the member set from its trio thread.
        service: the service that makes a node a member while it serves it (1 to
            100 ASCII characters). Recipes name theirs after their map
            (``"cache:<name>"``, ``"ratelimit:<name>"``).
        handler: answers calls of the service while `run` serves it (see
            `Node.serve`); by default each call is answered None.
        max_concurrent: handlers running at once (see `Node.serve`).
        refresh_s: no longer used (announcements were refreshed in a map);
            accepted so that older callers keep working.

    Raises:
        TypeError: ``service`` is not a str.
        ValueError: ``service`` is not 1 to 100 ASCII characters, or ``refresh_s``
            or ``max_concurrent`` is not positive.
    """

    def __init__(
        self,
        node: Node,
        service: str,
        *,
        handler: Handler = _present,
        max_concurrent: int = 64,
        refresh_s: float = 1.0,
    ) -> None:
        if not refresh_s > 0:
            raise ValueError(f"refresh_s must be positive, got {refresh_s!r}")
        if type(service) is not str:
            raise TypeError(f"service names are str, not {service!r}")
        if type(max_concurrent) is not int or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be a positive int, got {max_concurrent!r}")
        self._node = node
        self._service = check_service(service)
        self._handler = handler
        self._max_concurrent = max_concurrent
        self._unserve: Callable[[], None] | None = None

    @property
    def name(self) -> str:
        """The service (as `service`)."""
        return self._service

    @property
    def service(self) -> str:
        """The service that makes a node a member."""
        return self._service

    def serving(self) -> frozenset[str]:
        """The node ids that serve the recipe now, as this node sees them: live,
        members of the cluster, and serving the service (`Node.serving`)."""
        return self._node.serving(self._service)

    def owner(self, key: Key) -> str | None:
        """The node that owns ``key``: HRW over `serving`; None when no node serves."""
        return self._node.owner_of(key, self._service)

    def _serve(self) -> None:
        if self._unserve is None:
            self._unserve = self._node.serve(
                self._service, self._handler, max_concurrent=self._max_concurrent
            )

    def _stop_serving(self) -> None:
        unserve, self._unserve = self._unserve, None
        if unserve is not None:
            unserve()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled: this node is a member (a candidate owner) from the
        moment ``await nursery.start(members.run)`` returns until it is cancelled.
        Its peers hear of each change within a message (at most a heartbeat
        interval for one that was not linked then).

        Raises:
            ValueError: this node serves the service already (another `run`, or
                `Node.serve` of the same name).
        """
        self._serve()
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self._stop_serving()

    # -- deprecated: the announcements of earlier versions ---------------------------

    def announce(self) -> bool:
        """Deprecated (use `run`): serve the service until `withdraw`; True."""
        warnings.warn("MemberSet.announce is deprecated: use run", DeprecationWarning, 2)
        self._serve()
        return True

    def withdraw(self) -> bool:
        """Deprecated (cancel `run`): stop serving the service now; True."""
        warnings.warn("MemberSet.withdraw is deprecated: cancel run", DeprecationWarning, 2)
        self._stop_serving()
        return True

    def collect(self) -> int:
        """Deprecated, and nothing to do: there are no announcements to collect; 0."""
        warnings.warn("MemberSet.collect is deprecated: nothing to collect", DeprecationWarning, 2)
        return 0

"""Running a recipe in a `BackgroundNode`'s thread, for the sync facades."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol, Self

import trio

from transport import BackgroundNode

log = logging.getLogger("chorus.recipes")


class Served(Protocol):
    """A recipe whose ``run`` serves it until cancelled."""

    def run(self, *, task_status: trio.TaskStatus[None] = ...) -> Awaitable[None]: ...


class NodeTask:
    """Run a recipe's ``run`` in a `BackgroundNode`'s thread, until `close`.

    Started as a trio system task, so it needs no nursery of the caller's; it ends
    with the node at the latest. Returns once ``run`` reported it started.

    Raises:
        RuntimeError: the node is not running, ``run`` failed before it started (the
            cause is chained), or it did not start within ``timeout_s`` seconds.
    """

    def __init__(
        self, background: BackgroundNode, recipe: Served, *, timeout_s: float = 10.0
    ) -> None:
        self._background = background
        self._scope = trio.CancelScope()
        self._started = threading.Event()
        self._done = threading.Event()
        self._error: BaseException | None = None
        background.run_sync(trio.lowlevel.spawn_system_task, self._main, recipe.run)
        if not self._started.wait(timeout_s):
            raise RuntimeError(f"{recipe!r} did not start within {timeout_s} s")
        if self._error is not None:
            raise RuntimeError(f"{recipe!r} failed to start") from self._error

    async def _main(self, run: Callable[..., Awaitable[None]]) -> None:
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    await nursery.start(run)
                    self._started.set()
        except Exception as exc:  # a system task must not raise: that would end the node
            self._error = exc
            log.exception("recipe task %r failed", run)
        finally:
            self._started.set()
            self._done.set()

    def close(self, timeout_s: float = 10.0) -> None:
        """Cancel the task (the node stops serving the recipe) and wait up to
        ``timeout_s`` seconds for it to end. Idempotent; nothing to do once the node
        stopped."""
        if not self._done.is_set():
            with contextlib.suppress(RuntimeError, trio.RunFinishedError):  # node gone
                self._background.run_sync(self._scope.cancel)
            self._done.wait(timeout_s)


class Serving:
    """The closing part of the sync facades: `close` ends the task serving the
    recipe (``_task``); a context manager closes on exit."""

    _task: NodeTask | None

    def close(self) -> None:
        """Stop serving the recipe from this node (its peers hear it at once);
        idempotent. The replicated entries stay, on every node."""
        if self._task is not None:
            self._task.close()
            self._task = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

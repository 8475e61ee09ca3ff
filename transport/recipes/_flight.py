"""Single flight: concurrent callers for one key share one computation (Go's
``golang.org/x/sync/singleflight``, groupcache's ``singleflight.Group``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import attrs
import trio


@attrs.define
class _Flight:
    done: trio.Event = attrs.Factory(trio.Event)
    finished: bool = False
    value: Any = None
    error: Exception | None = None


class SingleFlight:
    """Run at most one computation per key at a time, in one trio thread.

    A caller that finds one running waits for it and gets its outcome: its value,
    or the exception it raised (the same exception object). When the computing
    caller is cancelled instead, the waiting ones start over: one of them computes.
    Nothing is kept once a computation ends.
    """

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight] = {}

    def running(self, key: Hashable) -> bool:
        """True while a computation for ``key`` runs."""
        return key in self._flights

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[Any]]) -> Any:
        """``await fn()``, unless a computation for ``key`` runs: then its outcome.

        Raises:
            What ``fn`` (or the shared computation) raised.
        """
        while (flight := self._flights.get(key)) is not None:
            await flight.done.wait()
            if flight.finished:
                if flight.error is not None:
                    raise flight.error
                return flight.value
        flight = self._flights[key] = _Flight()
        try:
            flight.value = await fn()
        except Exception as exc:
            flight.error, flight.finished = exc, True
            raise
        else:
            flight.finished = True
            return flight.value
        finally:
            del self._flights[key]
            flight.done.set()

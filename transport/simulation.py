"""Simulated clusters: Nodes on one MemoryNetwork, driven by simulated time.

Used by the test suite and the notebooks, so that what the notebooks show is what
the tests check::

    async def scenario():
        async with Simulation(seed=7) as sim:
            await sim.start("a", "b", "c")
            sim.node("a").map("flags").set("beta", True)
            await sim.run_for(1.0)
            assert sim.converged()

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))

Under ``MockClock`` a simulated hour takes milliseconds. `run_for` turns autojump on
for its own duration, so the same code also works with autojump off (as
`SimulationThread` uses it, to step a simulation from synchronous code).
"""

from __future__ import annotations

import math
import queue
import random
import threading
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import trio
import trio.testing

from crdt import LWWMap

from ._memory import SIM_EPOCH_MS, MemoryNetwork
from ._node import Node

T = TypeVar("T")


def _seed_trio_scheduler(seed: int) -> None:
    """Seed the generator trio shuffles its run queue with, for replayable runs.

    trio reorders runnable tasks at random for fairness, from a module-level
    ``random.Random`` (``trio._core._run._r``, private). Seeding it makes a simulation
    replay exactly; should a trio release move it, runs stay correct but are no
    longer bit-for-bit replayable.
    """
    scheduler_random = getattr(getattr(trio, "_core", None), "_run", None)
    generator = getattr(scheduler_random, "_r", None)
    if isinstance(generator, random.Random):
        generator.seed(seed)


class Simulation:
    """A cluster of `Node`s on a `MemoryNetwork`, run inside the caller's trio run.

    Deterministic: the same seed (and the same calls) gives the same history, as
    the network's choices and trio's scheduling order are both seeded.

    Args:
        network: the network to use (default: a new ``MemoryNetwork(seed)``).
        seed: the seed of the default network.
        skew_ms: per-node wall-clock skew, in ms (default 0); see `set_skew`.
        node_options: keyword arguments for every `Node` (timeouts, intervals...).
    """

    def __init__(
        self,
        network: MemoryNetwork | None = None,
        *,
        seed: int = 0,
        skew_ms: Mapping[str, int] | None = None,
        **node_options: Any,
    ) -> None:
        self.network = network if network is not None else MemoryNetwork(seed)
        self.skew_ms = dict(skew_ms or {})
        self.node_options = node_options
        self._nodes: dict[str, Node] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self._manager: Any = None

    async def __aenter__(self) -> Simulation:
        _seed_trio_scheduler(self.network.rng.getrandbits(64))
        self._manager = trio.open_nursery()
        self._nursery = await self._manager.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        result: bool | None = await self._manager.__aexit__(exc_type, exc, tb)
        return result

    # -- nodes ---------------------------------------------------------------------

    async def start(
        self, *node_ids: str, ready: bool = True, ready_timeout: float = 60.0, **options: Any
    ) -> list[Node]:
        """Start nodes (empty, with fresh incarnations) and return them.

        Args:
            node_ids: the nodes' names.
            ready: wait until every node started is `Node.ready` (admitted, synced,
                clock within bounds), at most ``ready_timeout`` simulated seconds,
                starting them together.
            options: override `node_options` for these nodes.

        Raises:
            TimeoutError: ``ready`` and some node was not ready in time.
        """
        started = []
        for node_id in node_ids:
            if node_id in self._nodes:
                raise ValueError(f"node {node_id!r} is running")
            transport = self.network.transport(node_id)
            node = Node(
                node_id,
                transport,
                wall_ms=self._wall_clock(node_id),
                incarnation=self.network.incarnation(node_id),
                **{**self.node_options, **options},
            )
            assert self._nursery is not None
            self._scopes[node_id] = await self._nursery.start(self._host, node)
            self._nodes[node_id] = node
            started.append(node)
        if ready:
            deadline = trio.current_time() + ready_timeout
            while not all(node.ready for node in started):
                if trio.current_time() > deadline:
                    waiting = {n.node_id: n.not_ready_reason() for n in started if not n.ready}
                    raise TimeoutError(f"nodes not ready after {ready_timeout} s: {waiting}")
                await self.run_for(0.05)
        return started

    def _wall_clock(self, node_id: str) -> Callable[[], int]:
        skews = self.skew_ms

        def wall_ms() -> int:
            return SIM_EPOCH_MS + skews.get(node_id, 0) + math.floor(trio.current_time() * 1000)

        return wall_ms

    def set_skew(self, node_id: str, skew_ms: int) -> None:
        """Set a node's wall-clock skew, in ms, at once: a clock step (as NTP makes),
        forward or back. Applies to the running node and to later restarts."""
        self.skew_ms[node_id] = skew_ms

    async def _host(self, node: Node, *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            async with node:
                task_status.started(scope)
                await trio.sleep_forever()

    def crash(self, node_id: str) -> None:
        """Kill a node at once, as ``kill -9`` would: its state is gone."""
        self.network.crash(node_id)
        self._scopes.pop(node_id).cancel()
        del self._nodes[node_id]

    async def restart(self, node_id: str, **options: Any) -> Node:
        """Crash a node (if running) and start it again, empty (see `start`)."""
        if node_id in self._nodes:
            self.crash(node_id)
            await trio.sleep(0)
        (node,) = await self.start(node_id, **options)
        return node

    def node(self, node_id: str) -> Node:
        return self._nodes[node_id]

    @property
    def live(self) -> list[str]:
        """The ids of the running nodes, sorted."""
        return sorted(self._nodes)

    # -- time and convergence --------------------------------------------------------

    async def run_for(self, seconds: float) -> None:
        """Let ``seconds`` of (simulated) time pass."""
        clock = trio.lowlevel.current_clock()
        if isinstance(clock, trio.testing.MockClock):
            previous = clock.autojump_threshold
            clock.autojump_threshold = 0
            try:
                await trio.sleep(seconds)
            finally:
                clock.autojump_threshold = previous
        else:
            await trio.sleep(seconds)

    async def settle(self, timeout: float = 60.0, step: float = 0.1) -> float | None:
        """Run until every live node holds the same state.

        Returns:
            The simulated seconds it took, or None if ``timeout`` passed first.
        """
        start = trio.current_time()
        while trio.current_time() - start <= timeout:
            if self.converged():
                return trio.current_time() - start
            await self.run_for(step)
        return None

    def states(self) -> dict[str, LWWMap]:
        """Each live node's full state (copies)."""
        return {node_id: node.state() for node_id, node in self._nodes.items()}

    def converged(self) -> bool:
        """True when every live node holds the same full state, tombstones included."""
        states = list(self.states().values())
        return all(s == states[0] for s in states[1:])

    def divergent_keys(self) -> int:
        """How many keys some pair of live nodes disagrees on (entry or presence)."""
        states = [node._state._regs for node in self._nodes.values()]
        keys: set[Any] = set().union(*states) if states else set()
        return sum(1 for k in keys if len({s.get(k) for s in states}) > 1)


class SimulationThread:
    """A `Simulation` in a trio run of its own thread, stepped from synchronous code.

    The trio run uses ``MockClock`` with autojump off, so simulated time stands still
    between calls and moves only inside `Simulation.run_for`. This is how hypothesis'
    stateful tests (whose rules are synchronous) drive a cluster.

    Args:
        seed, skew_ms, node_options: as for `Simulation`.
    """

    def __init__(self, **simulation_options: Any) -> None:
        self._options = simulation_options
        self._calls: queue.Queue[Any] = queue.Queue()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.simulation: Simulation
        self._token: trio.lowlevel.TrioToken
        self._thread = threading.Thread(target=self._main, name="chorus-simulation", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        async def host() -> None:
            async with Simulation(**self._options) as simulation:
                self.simulation = simulation
                self._token = trio.lowlevel.current_trio_token()
                self._stop = trio.Event()
                self._ready.set()
                await self._stop.wait()
                simulation._nursery.cancel_scope.cancel()  # type: ignore[union-attr]

        try:
            trio.run(host, clock=trio.testing.MockClock(autojump_threshold=math.inf))
        except BaseException as exc:  # reported to the caller by __init__
            self._error = exc
            self._ready.set()

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` in the simulation's trio run; return its result."""
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def call_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the simulation's trio thread; return its result."""
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the simulation and its thread."""
        if self._thread.is_alive():
            self.call_sync(self._stop.set)
            self._thread.join(timeout)

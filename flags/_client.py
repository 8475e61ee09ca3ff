"""FlagClient: feature flags for apps that do not run trio (Flask, Django, FastAPI).

A `FlagClient` runs a cluster node in a background thread of this process and
builds a `FlagStore` over its ``"flags"`` map there. Made at import, it starts on
first use (or at `FlagClient.start`), and waits until the node is ready;
``flags.connect(...)`` makes one and starts it at once. Then:

- reads (`FlagClient.enabled`) look up the store's immutable snapshot in the calling
  thread: no lock, no hop to the node's thread, no network;
- writes (`FlagClient.enable`...) run in the node's thread, where the map lives, and
  return once applied there; they check their arguments, and whether the map takes
  every entry they write (`transport.ReplicatedMap.check_writable`), before writing
  any, so they either complete or raise with nothing applied.

One client per process. Under a multi-process server every worker is a node with an
id of its own (`transport.claim_node_id`), started after the fork, on first use; a
client used in a process forked after it started raises `transport.ForkedError`
rather than read values frozen at the fork.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, NoReturn

import trio

from hlc import Timestamp
from transport import (
    BackgroundNode,
    ForkedError,
    Node,
    NodeIdClaim,
    TcpTransport,
    check_secret,
    claim_node_id,
)

from ._evaluation import Evaluation
from ._export import ImportPlan
from ._readiness import not_ready_reason
from ._schema import Flag
from ._store import AuditEntry, FlagStore, FlagSubscriber


class NotReadyError(RuntimeError):
    """The node did not become ready in time; ``reason`` says why (one line)."""

    def __init__(self, node_id: str, waited_s: float, reason: str) -> None:
        super().__init__(f"chorus node {node_id} not ready after {waited_s:g} s: {reason}")
        self.reason = reason


class _Refusing:
    """Stands in for the store when there is none to read: every access raises."""

    def __init__(self, error: Callable[[], Exception]) -> None:
        self._error = error

    def __getattr__(self, name: str) -> NoReturn:
        raise self._error()


class _StartOnUse:
    """Stands in for the store until the client starts: the first use starts it."""

    def __init__(self, client: FlagClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client.start()._store, name)


_FORK_HINT = (
    "Make the client with flags.FlagClient(...) rather than flags.connect(...): it starts "
    "on first use, in each worker. Or call client.start() after the fork (gunicorn's "
    "post_fork hook)."
)


def _closed() -> Exception:
    return RuntimeError("FlagClient is closed")


class FlagClient:
    """Feature flags through a node of the cluster run in a background thread.

    Nothing runs until the first read or write, or `start`: make it at import,
    before a server forks its workers, and each worker starts a node of its own.

    Args:
        seeds: ``"host:port"`` cluster addresses of running nodes (``chorus serve``
            nodes, or other apps' nodes), as a list or one comma-separated str.
            Default: the ``CHORUS_JOIN`` environment variable. An explicit empty
            list founds a cluster of one, for tests and scripts.
        secret: the cluster secret (default: ``CHORUS_SECRET``).
        node_id: this node's id. Default: `transport.claim_node_id` (``prefix``,
            the host name and the smallest slot free on this host), so each worker
            of a multi-process server has its own id and a restarted worker takes
            the id of the one it replaces.
        prefix: put before the host name in a claimed id (e.g. ``"checkout-"``).
        listen: ``"host:port"`` for the node's cluster port (default
            ``127.0.0.1:0``: loopback, a free port). Listen on ``0.0.0.0:0`` and
            set ``advertise`` when nodes on other hosts must reach it.
        advertise: ``"host:port"`` peers dial; port 0 is the port bound.
        map_name: the replicated map the flags live in.
        defaults: flag defaults, applied while the cluster holds no gate for a flag
            (a bool, or a `Flag` whose gates decide; see `FlagStore`).
        count_evaluations: count each flag's checks, for `evaluations` (see
            `FlagStore`: about 40 ns more per check, no lock).
        wait_ready_s: `start`, and so the first read or write, waits this long, in
            seconds, for the node to be ready (admitted and synced), and raises
            `NotReadyError` if it is not. None waits for nothing: reads then give
            defaults until the node has synced, so gate your app's readiness probe
            on `ready`.
        lock_dir: where claimed ids are locked (see `transport.claim_node_id`).
        transport_options: more keyword arguments for `transport.TcpTransport`.
        node_options: more keyword arguments for `transport.Node` (e.g.
            ``max_offset_ms``).

    Raises:
        ValueError: no secret, a weak secret (`transport.WeakSecretError`), or a
            malformed address.
    """

    def __init__(
        self,
        seeds: Iterable[str] | str | None = None,
        *,
        secret: str | bytes | None = None,
        node_id: str | None = None,
        prefix: str = "",
        listen: str = "127.0.0.1:0",
        advertise: str | None = None,
        map_name: str = "flags",
        defaults: Mapping[str, bool | Flag] | None = None,
        count_evaluations: bool = False,
        wait_ready_s: float | None = 30.0,
        lock_dir: str | os.PathLike[str] | None = None,
        transport_options: Mapping[str, Any] | None = None,
        **node_options: Any,
    ) -> None:
        if seeds is None:
            seeds = os.environ.get("CHORUS_JOIN", "")
        if isinstance(seeds, str):
            seeds = [s.strip() for s in seeds.split(",") if s.strip()]
        self._seeds = list(seeds)
        if secret is None:
            secret = os.environ.get("CHORUS_SECRET")
            if not secret:
                raise ValueError("no cluster secret: pass secret= or set CHORUS_SECRET")
        self._secret = check_secret(secret)
        self._node_id = node_id
        self._prefix = prefix
        self._listen = listen
        self._advertise = advertise
        self._map_name = map_name
        self._defaults = dict(defaults or {})
        self._count_evaluations = count_evaluations
        self._wait_ready_s = wait_ready_s
        self._lock_dir = lock_dir
        self._transport_options = dict(transport_options or {})
        self._node_options = node_options
        self._store: FlagStore
        self._set_store(_StartOnUse(self))
        self._lock = threading.RLock()  # start and close
        _every_client.add(self)
        self._failed: tuple[float, BaseException] | None = None  # last start: when, why
        self._closed = False
        self._background: BackgroundNode | None = None
        self._transport: TcpTransport | None = None
        self._claim: NodeIdClaim | None = None
        self._forked_from: int | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self, *, wait: bool = True) -> FlagClient:
        """Start the node, and wait up to ``wait_ready_s`` for it to be ready.

        The first read or write of a client not yet started calls it, so a client
        made at import starts in the process that uses it: after the fork, in each
        worker of a multi-process server. Call it yourself (gunicorn's
        ``post_fork``, an ASGI lifespan) to join at boot rather than on the first
        request. It does nothing more on a running, ready client. In a process
        forked from one where the client was started, it starts a node of this
        process's own.

        Args:
            wait: wait for readiness. With False it returns once the node runs
                (`ready` does so); reads still wait, on their first use.

        Returns:
            The client itself.

        Raises:
            RuntimeError: the client is closed, or the node failed to start (the
                listen address is in use, say; the cause is chained).
            NotReadyError: not ready within ``wait_ready_s``. The node is stopped;
                the next use tries again.
            ValueError: a flag default is invalid.
        """
        asked = time.monotonic()
        with self._lock:
            if self._closed:
                raise _closed()
            failed = self._failed
            if failed is not None and failed[0] >= asked:
                # Another thread's start failed while this one waited for the lock:
                # one attempt (one wait) for all the threads that asked meanwhile.
                raise failed[1]
            if self._forked_from is not None:  # a fresh start in the child
                self._forked_from, self._background = None, None
                self._set_store(_StartOnUse(self))
            if self._background is None:
                self._start_node()
            if wait and isinstance(self._store, _StartOnUse):
                try:
                    if self._wait_ready_s is not None and not self.wait_ready(self._wait_ready_s):
                        raise NotReadyError(
                            self.node_id,
                            self._wait_ready_s,
                            self.not_ready_reason() or "not ready",
                        )
                except BaseException as exc:
                    self._failed = (time.monotonic(), exc)
                    self._stop_node(drain_s=0)
                    raise
                self._failed = None
                self._set_store(self._started_store)
        return self

    def _start_node(self) -> None:
        claim = None
        if self._node_id is None:
            claim = claim_node_id(self._prefix, lock_dir=self._lock_dir)
        node_id = claim.node_id if claim is not None else self._node_id
        assert node_id is not None
        self._claim = claim
        try:
            transport = TcpTransport(
                node_id,
                secret=self._secret,
                listen=self._listen,
                advertise=self._advertise,
                seeds=self._seeds,
                **self._transport_options,
            )
            background = BackgroundNode(lambda: Node(node_id, transport, **self._node_options))
            background.on_fork(self._after_fork)
            background.start(wait_synced=None)
        except BaseException:
            self._release()
            raise
        self._transport, self._background = transport, background
        _clients.add(self)
        try:
            self._started_store: FlagStore = background.run_sync(
                lambda: FlagStore(
                    background.node.map(self._map_name),
                    self._defaults,
                    count_evaluations=self._count_evaluations,
                )
            )
        except BaseException:
            self._stop_node(drain_s=0)
            raise

    def close(self, drain_s: float = 5.0) -> None:
        """Stop the node for good (idempotent); reads and writes raise afterwards.

        Every write this node acknowledged is first handed to a peer (for up to
        ``drain_s`` seconds, see `transport.Node.drain`) and the node leaves the
        cluster, so its id is free for the next process at once. Runs at
        interpreter exit too. In a forked child it only lets go of the parent's
        node, which runs on in the parent.
        """
        with self._lock:
            self._closed = True
            if self._forked_from is None:
                self._set_store(_Refusing(_closed))
                self._stop_node(drain_s)
            self._background = None
            self._release()

    def _stop_node(self, drain_s: float) -> None:
        background, self._background = self._background, None
        if not self._closed:
            self._set_store(_StartOnUse(self))
        if background is not None:
            try:
                if drain_s > 0:
                    background.run(background.node.drain, drain_s)
            except (RuntimeError, trio.RunFinishedError):
                pass  # the node stopped on its own: nothing left to hand over
            finally:
                background.stop()
        self._release()

    def _set_store(self, store: FlagStore | _StartOnUse | _Refusing) -> None:
        self._store = store  # type: ignore[assignment]
        # The hot path: once started, ``client.enabled`` *is* the store's bound
        # method (an instance attribute shadows the class's), which saves a Python
        # call per check (about 25 ns of 125). Any other state reads through the
        # class's method, which raises or starts.
        if isinstance(store, FlagStore):
            self.enabled = store.enabled  # type: ignore[method-assign]
        else:
            self.__dict__.pop("enabled", None)

    def _release(self) -> None:
        claim, self._claim = self._claim, None
        if claim is not None:
            claim.release()

    def __enter__(self) -> FlagClient:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the node --------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        """This node's id (claimed at `start` unless given)."""
        if self._claim is not None:
            return self._claim.node_id
        return self._node_id or ""

    @property
    def address(self) -> str | None:
        """The ``"host:port"`` peers dial this node at, once started."""
        transport = self._transport
        if transport is None or transport.address is None:
            return None
        return transport.advertised

    @property
    def background(self) -> BackgroundNode:
        """The `transport.BackgroundNode` the client runs (for `members`, other maps).

        Raises:
            RuntimeError: not started, or closed.
            ForkedError: the client was started in a parent of this process.
        """
        self._check_fork()
        if self._background is None:
            raise _closed() if self._closed else RuntimeError("FlagClient is not started")
        return self._background

    @property
    def ready(self) -> bool:
        """True while the node is admitted, synced and its clock sane (`not_ready_reason`)."""
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Why the node is not ready (None when it is): the text of ``GET /ready``.

        Starts a client not yet started, without waiting, so that a readiness probe
        that runs before any request starts the node it reports on.
        """
        if self._background is None and not self._closed:
            if not self._lock.acquire(blocking=False):
                # Another thread is starting it (and may wait wait_ready_s for
                # readiness): a probe answers now rather than wait with it.
                return "starting: another thread is starting this node"
            try:
                self.start(wait=False)
            finally:
                self._lock.release()
        background = self.background
        transport = self._transport
        assert transport is not None
        result: str | None = background.run_sync(not_ready_reason, background.node, transport)
        return result

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until the node is ready; False if ``timeout_s`` seconds passed first."""
        background = self.background
        node = background.node

        async def wait() -> bool:
            with trio.move_on_after(timeout_s):
                while not node.ready:
                    await trio.sleep(0.02)
                return True
            return False

        result: bool = background.run(wait)
        return result

    # -- reads: any thread, no lock --------------------------------------------------

    def enabled(self, name: str, actor: str | None = None, groups: Iterable[str] = ()) -> bool:
        """Is flag ``name`` on for this actor and these groups? (See `FlagStore.enabled`.)

        A lookup in this process's snapshot, from any thread; never raises for bad
        arguments (a wrong type reads as off). The first call in a process starts
        the client (see `start`).

        Raises:
            NotReadyError: on the first call, the node was not ready in time.
            RuntimeError: the client is closed.
            ForkedError: the client was started in a parent of this process.
        """
        return self._store.enabled(name, actor, groups)

    def known(self, name: str) -> bool:
        """True when the flag has gates in the cluster or a default here."""
        return self._store.known(name)

    def explain(
        self, name: str, actor: str | None = None, groups: Iterable[str] = ()
    ) -> tuple[bool, str]:
        """`enabled`, with the gate that decided (see `FlagStore.explain`); from any
        thread, with no hop to the node's."""
        return self._store.explain(name, actor, groups)

    def metadata(self, name: str) -> dict[str, str]:
        """The flag's description, owner and expiry date that are set (see
        `FlagStore.metadata`); from any thread, with no hop to the node's."""
        return self._store.metadata(name)

    def evaluations(self) -> tuple[dict[str, int], int] | None:
        """Checks per flag, and of unknown flags, since start; None unless made with
        ``count_evaluations=True`` (see `FlagStore.evaluations`). From any thread."""
        return self._store.evaluations()

    def export(self) -> list[Flag]:
        """Every flag the cluster holds (see `FlagStore.export`)."""
        result: list[Flag] = self._in_node(self._store.export)
        return result

    def import_flags(
        self, flags: Iterable[Flag], *, author: str | None = None, dry_run: bool = False
    ) -> list[ImportPlan]:
        """Make each flag given equal in the cluster (see `FlagStore.import_flags`),
        in the node's thread: whole or not at all."""
        result: list[ImportPlan] = self._in_node(
            self._store.import_flags, list(flags), author=author, dry_run=dry_run
        )
        return result

    def flag(self, name: str) -> Flag:
        """Everything known about one flag (see `FlagStore.flag`)."""
        result: Flag = self._in_node(self._store.flag, name)
        return result

    def all(self) -> list[Flag]:
        """Every flag with gates, metadata or a default, by name."""
        result: list[Flag] = self._in_node(self._store.all)
        return result

    def audit(self, name: str | None = None, *, limit: int | None = None) -> list[AuditEntry]:
        """Recorded changes, newest first (see `FlagStore.audit`)."""
        result: list[AuditEntry] = self._in_node(self._store.audit, name, limit=limit)
        return result

    def subscribe(self, callback: FlagSubscriber) -> Callable[[], None]:
        """Call ``callback(names)`` when flags change, here or anywhere in the cluster.

        The callback runs in the node's thread and must not block. Returns a
        function that unsubscribes.
        """
        unsubscribe: Callable[[], None] = self._in_node(self._store.subscribe, callback)
        return functools.partial(self._in_node, unsubscribe)

    # -- writes: in the node's thread, validated before anything is applied ----------

    def enable(self, name: str, *, author: str | None = None) -> None:
        """Turn the flag on for everyone (see `FlagStore.enable`).

        Raises:
            ValueError: an invalid name or author; nothing is written.
            transport.WriteRefused: the node is not ready (joining, clock off,
                shutting down); nothing is written.
            NotReadyError, RuntimeError, ForkedError: as for `enabled`.
        """
        self._in_node(self._store.enable, name, author=author)

    def disable(self, name: str, *, author: str | None = None) -> None:
        """Turn the flag off for everyone (see `FlagStore.disable`). Raises as `enable`."""
        self._in_node(self._store.disable, name, author=author)

    def enable_for_actor(self, name: str, actor: str, *, author: str | None = None) -> None:
        """Turn the flag on for one actor. Raises as `enable`."""
        self._in_node(self._store.enable_for_actor, name, actor, author=author)

    def disable_for_actor(self, name: str, actor: str, *, author: str | None = None) -> None:
        """Deny the flag to one actor. Raises as `enable`."""
        self._in_node(self._store.disable_for_actor, name, actor, author=author)

    def enable_for_group(self, name: str, group: str, *, author: str | None = None) -> None:
        """Turn the flag on for a group's members. Raises as `enable`."""
        self._in_node(self._store.enable_for_group, name, group, author=author)

    def disable_for_group(self, name: str, group: str, *, author: str | None = None) -> None:
        """Deny the flag to a group's members. Raises as `enable`."""
        self._in_node(self._store.disable_for_group, name, group, author=author)

    def enable_percentage_of_actors(
        self, name: str, ratio: float, *, author: str | None = None
    ) -> None:
        """Turn the flag on for a stable fraction of actors, ``ratio`` in [0, 1]."""
        self._in_node(self._store.enable_percentage_of_actors, name, ratio, author=author)

    def enable_percentage_of_time(
        self, name: str, ratio: float, *, author: str | None = None
    ) -> None:
        """Turn the flag on for a random fraction of checks, ``ratio`` in [0, 1]."""
        self._in_node(self._store.enable_percentage_of_time, name, ratio, author=author)

    def clear(
        self,
        name: str,
        *,
        actor: str | None = None,
        group: str | None = None,
        gate: str | None = None,
        author: str | None = None,
    ) -> None:
        """Remove one actor's gate, one group's, one other gate, or all of them (see
        `FlagStore.clear`)."""
        self._in_node(self._store.clear, name, actor=actor, group=group, gate=gate, author=author)

    def delete(self, name: str, *, author: str | None = None) -> bool:
        """Remove the flag's gates and metadata (see `FlagStore.delete`); False when
        the cluster held none. Raises as `enable`."""
        result: bool = self._in_node(self._store.delete, name, author=author)
        return result

    def restore(self, name: str, timestamp: str, *, author: str | None = None) -> bool:
        """Write back the gates recorded by the flag's audit entry ``timestamp``, as
        one audited change (see `FlagStore.restore`); False when they already match.

        Raises:
            RestoreError: no such entry, or it records no state.
            ValueError, transport.WriteRefused: as `enable`.
        """
        result: bool = self._in_node(self._store.restore, name, timestamp, author=author)
        return result

    def last_changed(self, name: str) -> Timestamp | None:
        """The newest timestamp among the flag's gates (see `FlagStore.last_changed`)."""
        result: Timestamp | None = self._in_node(self._store.last_changed, name)
        return result

    def set_metadata(
        self,
        name: str,
        *,
        description: str | None = None,
        owner: str | None = None,
        expires: datetime.date | str | None = None,
        author: str | None = None,
    ) -> None:
        """Set a flag's description, owner or expiry date (see `FlagStore.set_metadata`)."""
        self._in_node(
            self._store.set_metadata,
            name,
            description=description,
            owner=owner,
            expires=expires,
            author=author,
        )

    # -- typed flags (see the FlagStore methods of the same names) -------------------

    def evaluate(
        self,
        name: str,
        default: Any,
        *,
        actor: str | None = None,
        groups: Iterable[str] = (),
        attributes: Mapping[str, Any] | None = None,
    ) -> Evaluation:
        """Evaluate a flag of any type: value, variant, reason and detail (see
        `FlagStore.evaluate`). From any thread, with no hop to the node's; never
        raises for bad arguments (reason ERROR). Raises as `enabled` on the first
        call in a process."""
        return self._store.evaluate(
            name, default, actor=actor, groups=groups, attributes=attributes
        )

    def flag_type(self, name: str) -> str | None:
        """The flag's value type, or None for an unknown flag (see
        `FlagStore.flag_type`); from any thread."""
        return self._store.flag_type(name)

    def is_typed(self, name: str) -> bool:
        """True when the flag has typed parts (see `FlagStore.is_typed`); from any
        thread."""
        return self._store.is_typed(name)

    def segments(self) -> dict[str, list[dict[str, Any]]]:
        """The cluster's segments, ``{name: [condition, ...]}``."""
        result: dict[str, list[dict[str, Any]]] = self._in_node(self._store.segments)
        return result

    def set_variants(
        self,
        name: str,
        variants: Mapping[str, Any],
        *,
        type: str | None = None,
        author: str | None = None,
    ) -> None:
        """Make the flag's variants exactly these, and set its type when given (see
        `FlagStore.set_variants`). Raises `FlagFormatError` for a bad field, and
        as `enable`."""
        self._in_node(self._store.set_variants, name, variants, type=type, author=author)

    def set_variant(
        self, name: str, variant: str, value: Any, *, author: str | None = None
    ) -> None:
        """Add or change one variant. Raises as `set_variants`."""
        self._in_node(self._store.set_variant, name, variant, value, author=author)

    def delete_variant(self, name: str, variant: str, *, author: str | None = None) -> bool:
        """Remove one variant; False when there was none. Raises as `enable`."""
        result: bool = self._in_node(self._store.delete_variant, name, variant, author=author)
        return result

    def set_off_variant(self, name: str, variant: str | None, *, author: str | None = None) -> None:
        """Set (or, with None, remove) the variant served when the gates say off."""
        self._in_node(self._store.set_off_variant, name, variant, author=author)

    def set_fallthrough(
        self, name: str, serve: Mapping[str, Any] | None, *, author: str | None = None
    ) -> None:
        """Set (or, with None, remove) what is served when no rule matches."""
        self._in_node(self._store.set_fallthrough, name, serve, author=author)

    def set_rule(
        self,
        name: str,
        rule_id: str,
        *,
        serve: Mapping[str, Any],
        conditions: Iterable[Mapping[str, Any]] = (),
        segments: Iterable[str] = (),
        before: str | None = None,
        after: str | None = None,
        author: str | None = None,
    ) -> None:
        """Add or replace one rule (see `FlagStore.set_rule`). Raises as
        `set_variants`."""
        self._in_node(
            self._store.set_rule,
            name,
            rule_id,
            serve=serve,
            conditions=list(conditions),
            segments=list(segments),
            before=before,
            after=after,
            author=author,
        )

    def delete_rule(self, name: str, rule_id: str, *, author: str | None = None) -> bool:
        """Remove one rule; False when there was none. Raises as `enable`."""
        result: bool = self._in_node(self._store.delete_rule, name, rule_id, author=author)
        return result

    def set_prerequisite(
        self, name: str, other: str, variants: Iterable[str], *, author: str | None = None
    ) -> None:
        """Make the flag require one of ``other``'s variants (see
        `FlagStore.set_prerequisite`: a cycle is refused). Raises as `set_variants`."""
        wanted = [variants] if isinstance(variants, str) else list(variants)
        self._in_node(self._store.set_prerequisite, name, other, wanted, author=author)

    def delete_prerequisite(self, name: str, other: str, *, author: str | None = None) -> bool:
        """Remove the flag's prerequisite on ``other``; False when it had none.
        Raises as `enable`."""
        result: bool = self._in_node(self._store.delete_prerequisite, name, other, author=author)
        return result

    def set_segment(
        self, segment: str, conditions: Iterable[Mapping[str, Any]], *, author: str | None = None
    ) -> None:
        """Define a named segment (see `FlagStore.set_segment`)."""
        self._in_node(self._store.set_segment, segment, list(conditions), author=author)

    def delete_segment(self, segment: str, *, author: str | None = None) -> bool:
        """Remove a segment; False when there was none."""
        result: bool = self._in_node(self._store.delete_segment, segment, author=author)
        return result

    def schedule(
        self,
        name: str,
        schedule_id: str,
        at: int | datetime.datetime,
        *,
        set: Iterable[Sequence[Any]] = (),
        delete: Iterable[Sequence[Any]] = (),
        author: str | None = None,
    ) -> None:
        """Schedule a change of the flag at a time (see `FlagStore.schedule`)."""
        self._in_node(
            self._store.schedule,
            name,
            schedule_id,
            at,
            set=[list(w) for w in set],
            delete=[list(w) for w in delete],
            author=author,
        )

    def delete_schedule(self, name: str, schedule_id: str, *, author: str | None = None) -> bool:
        """Remove a schedule (see `FlagStore.delete_schedule`); False when none."""
        result: bool = self._in_node(self._store.delete_schedule, name, schedule_id, author=author)
        return result

    def _in_node(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # The store's writers validate, then write, with no await in between: in the
        # node's thread nothing else runs meanwhile, so a write is applied whole or
        # not at all.
        return self.background.run_sync(functools.partial(fn, *args, **kwargs))

    # -- fork --------------------------------------------------------------------------

    def _check_fork(self) -> None:
        if self._forked_from is not None:
            raise ForkedError(self._forked_from, _FORK_HINT)

    def _after_fork(self, parent: int) -> None:
        self._forked_from = parent
        self._set_store(_Refusing(lambda: ForkedError(parent, _FORK_HINT)))
        self._release()  # the child's copy of the lock; the parent keeps its slot

    def __repr__(self) -> str:
        state = (
            "forked"
            if self._forked_from is not None
            else ("running" if self._background is not None else "stopped")
        )
        return f"<FlagClient {self.node_id or '?'} {state}>"


def connect(
    seeds: Iterable[str] | str | None = None,
    **options: Any,
) -> FlagClient:
    """Start a `FlagClient` and return it once its node is ready.

    Takes the arguments of `FlagClient`. Use it as a context manager, or call
    `FlagClient.close` (it also runs at interpreter exit)::

        client = flags.connect(["chorus-1.internal:7400"])  # CHORUS_SECRET from the env
        if client.enabled("new-checkout", actor=user_id):
            ...

    Raises:
        NotReadyError: the node was not ready within ``wait_ready_s`` (30 s).
        ValueError, RuntimeError: as `FlagClient` and `FlagClient.start`.
    """
    return FlagClient(seeds, **options).start()


# Running clients, closed at interpreter exit so that each leaves the cluster.
_clients: weakref.WeakSet[FlagClient] = weakref.WeakSet()
# Every client: a fork while another thread holds one's lock (in `start`) must not
# leave the child's copy of the lock held for ever.
_every_client: weakref.WeakSet[FlagClient] = weakref.WeakSet()


def _reset_locks_in_child() -> None:
    for client in list(_every_client):
        client._lock = threading.RLock()


os.register_at_fork(after_in_child=_reset_locks_in_child)


@atexit.register
def _close_all() -> None:
    for client in list(_clients):
        client.close()

"""``chorus serve``: one node, its flags, and its HTTP admin, in one trio run."""

from __future__ import annotations

import functools
import logging
import resource
import signal
from collections.abc import Mapping
from typing import Any, cast

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route

from transport import Node, TcpTransport

from ._cluster_view import ClusterHistory, cluster_document
from ._events import FlagEvents
from ._metrics import metrics_registry
from ._readiness import not_ready_reason
from ._schema import Flag
from ._store import FlagStore
from .http import create_app
from .ui import create_ui

log = logging.getLogger("chorus.serve")


@attrs.frozen
class ServeConfig:
    """What ``chorus serve`` needs (see ``chorus serve --help``).

    Attributes:
        node_id: this node's name in the cluster.
        listen: ``host:port`` for the cluster (gossip) port.
        advertise: ``host:port`` peers dial this node at (`transport.TcpTransport`'s
            ``advertise``); None for the bound address. Needed when ``listen`` is
            ``0.0.0.0`` (a container), whose bound address peers cannot dial.
        join: ``host:port`` seeds (IP addresses or DNS names).
        http: ``host:port`` for the HTTP admin.
        secret: the cluster secret; token: the admin bearer token; viewer_token: a
            token that reads but never writes (None: none). Never logged.
        flags_map: the replicated map holding the flags.
        reads_need_token: the HTTP admin's reads need the token too (see
            `flags.http.create_app`); ``/health`` and ``/ready`` stay open.
        defaults: the store's defaults (``chorus serve --defaults``): a flag's
            default answers while the cluster holds no gate for it.
        node_options: extra keyword arguments for `transport.Node`.
        ui: the web UI at ``/ui/``: ``"on"``, ``"read-only"`` (no write control,
            writes refused) or ``"off"`` (no such route). ``/`` redirects to it.
        ui_banner, ui_banner_colour: the environment banner atop every page (None:
            none) and its colour (`flags.ui.BANNER_COLOURS`).
        ui_create, ui_delete: False: the UI neither offers nor takes creating
            (deleting) a flag.
    """

    node_id: str
    listen: str = "127.0.0.1:7400"
    advertise: str | None = None
    join: tuple[str, ...] = ()
    http: str = "127.0.0.1:8400"
    secret: str = attrs.field(default="", repr=False)
    token: str = attrs.field(default="", repr=False)
    viewer_token: str | None = attrs.field(default=None, repr=False)
    flags_map: str = "flags"
    reads_need_token: bool = False
    defaults: Mapping[str, bool | Flag] = attrs.field(factory=dict)
    node_options: dict[str, Any] = attrs.field(factory=dict)
    ui: str = "on"
    ui_banner: str | None = None
    ui_banner_colour: str = "red"
    ui_create: bool = True
    ui_delete: bool = True


async def _to_the_ui(request: Request) -> RedirectResponse:
    return RedirectResponse("ui/", status_code=303)


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open descriptors to its hard limit.

    A node holds a descriptor per connection on each port; the common soft default
    (1,024) would let a flood of idle connections on one port stop the other from
    accepting. A platform that refuses (macOS with an unlimited hard limit) leaves
    the limit as it was, with a warning.

    Returns:
        The soft limit in force afterwards, in descriptors.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("open-file limit left at %d (hard limit %d): %s", soft, hard, exc)
        return soft
    log.info("open-file limit raised from %d to %d", soft, hard)
    return hard


def admin_http_config(bind: str) -> HypercornConfig:
    """Hypercorn's settings for the HTTP admin on ``bind`` (``host:port``).

    Each connection's life is bounded, however slowly its client sends: no more than
    ``keep_alive_timeout`` without a whole request head, and (in `flags.http`)
    `flags.http.BODY_TIMEOUT_S` for a whole body; an event stream stays open while
    its client reads.
    Hypercorn 0.18 has no cap on concurrent connections; these bounds, and the raised
    descriptor limit, keep a flood from exhausting descriptors or memory.
    """
    http_config = HypercornConfig()
    http_config.bind = [bind]
    http_config.accesslog = None
    # A Logger (not "-") makes hypercorn log through ours: one format everywhere.
    http_config.errorlog = logging.getLogger("hypercorn.error")
    http_config.graceful_timeout = 1.0
    # Hypercorn's idle timer runs from accept until a whole request head has arrived,
    # and partial data does not restart it: this is also the header-read timeout
    # that closes slow-header (slowloris) connections. 5 s is ample for one packet.
    http_config.keep_alive_timeout = 5.0
    # No timeout between two reads: Hypercorn's counts from the client's last byte,
    # while a response is sent too, so it would cut every idle /events stream (whose
    # client sends nothing after its request). Bodies are bounded without it: a
    # handler reads one within flags.http.BODY_TIMEOUT_S (408 after), and a body no
    # handler reads closes its connection once the response is sent.
    http_config.read_timeout = None
    # Request line plus headers, buffered per connection until complete; beyond
    # this h11 answers 431. Our clients send well under 1 KiB.
    http_config.h11_max_incomplete_size = 8 * 1024
    # Cleartext HTTP/2 (prior knowledge or h2c upgrade) is accepted too: bound the
    # requests one connection can multiplex, and the size of its headers.
    http_config.h2_max_concurrent_streams = 8
    http_config.h2_max_header_list_size = 8 * 1024
    # The accept queue: a burst beyond it has its SYNs dropped and retried after 1,
    # 3, 7 s, readiness probes included. The kernel caps it at net.core.somaxconn.
    http_config.backlog = 4096
    return http_config


async def serve(
    config: ServeConfig,
    *,
    task_status: trio.TaskStatus[tuple[str, list[str]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a node with its flags and HTTP admin until SIGTERM or SIGINT.

    On the signal: writes get 503, every write this node acknowledged is handed to
    a peer (`transport.Node.drain`, 5 s at most; what could not be is logged at
    ERROR with its count), the node leaves the cluster, the HTTP server stops, and
    the function returns.

    Reports ``(cluster address, [HTTP addresses])`` through ``task_status``.
    """
    raise_open_files_limit()
    transport = TcpTransport(
        config.node_id,
        secret=config.secret,
        listen=config.listen,
        seeds=config.join,
        advertise=config.advertise,
    )
    accepting = True
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with Node(config.node_id, transport, **config.node_options) as node:
            # Counting checks costs ~40 ns each; here they come over HTTP (ms each).
            store = FlagStore(node.map(config.flags_map), config.defaults, count_evaluations=True)
            if config.defaults:
                log.info("node %s: defaults for %d flags", config.node_id, len(config.defaults))

            events = FlagEvents(store, node_id=config.node_id)
            events.follow()  # from the start: a stream may resume from any change
            flags_map = node.map(config.flags_map)
            history = ClusterHistory(config.node_id, flags_map.timestamp)
            flags_map.subscribe(history.map_changed)
            node.watch_members(history.member_event)

            def cluster() -> dict[str, Any]:
                return {**cluster_document(node, transport), **history.view()}

            app = create_app(
                store,
                token=config.token,
                viewer_token=config.viewer_token,
                events=events,
                node_id=config.node_id,
                synced=lambda: node.synced,
                cluster=cluster,
                accepting_writes=lambda: accepting,
                not_ready=lambda: not_ready_reason(node, transport),
                replicated=node.wait_replicated,
                reads_need_token=config.reads_need_token,
                metrics=metrics_registry(
                    store,
                    node,
                    transport,
                    ready=lambda: accepting and node.ready,
                ),
            )
            if config.ui != "off":
                ui = create_ui(
                    store,
                    token=config.token,
                    viewer_token=config.viewer_token,
                    mode=config.ui,
                    banner=config.ui_banner,
                    banner_colour=config.ui_banner_colour,
                    allow_create=config.ui_create,
                    allow_delete=config.ui_delete,
                    events=events,
                    cluster=cluster,
                )
                app.router.routes[:0] = [
                    Mount("/ui", app=ui),
                    Route("/", _to_the_ui, methods=["GET"]),
                ]
            http_config = admin_http_config(config.http)
            stop_http = trio.Event()
            async with trio.open_nursery() as nursery:
                # Starlette is an ASGI app; hypercorn's own stubs type ASGI more narrowly.
                asgi = cast(Any, app)
                bound = await nursery.start(
                    functools.partial(
                        hypercorn_serve, asgi, http_config, shutdown_trigger=stop_http.wait
                    )
                )
                address = transport.address
                gossip = f"{address[0]}:{address[1]}" if address else config.listen
                advertised = transport.advertised
                log.info(
                    "node %s serving: cluster %s%s, http %s, joining %s",
                    config.node_id,
                    gossip,
                    f" (peers dial {advertised})" if advertised and advertised != gossip else "",
                    " ".join(bound),
                    ",".join(config.join) or "nobody",
                )
                task_status.started((gossip, list(bound)))
                async for signum in signals:
                    log.info(
                        "node %s: %s received, shutting down",
                        config.node_id,
                        signal.Signals(signum).name,
                    )
                    break
                accepting = False
                events.close()  # end event streams now, not at the graceful timeout
                lost = await node.drain(5.0)
                if lost:
                    log.error(
                        "node %s: %d acknowledged writes were not handed to any peer and are lost",
                        config.node_id,
                        lost,
                    )
                else:
                    log.info("node %s: every write is held by a peer", config.node_id)
                stop_http.set()
    log.info("node %s stopped", config.node_id)

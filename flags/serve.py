"""``chorus serve``: one node, its flags, and its HTTP admin, in one trio run."""

from __future__ import annotations

import functools
import logging
import signal
from typing import Any, cast

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from transport import Node, TcpTransport

from ._store import FlagStore
from .http import create_app

log = logging.getLogger("chorus.serve")


@attrs.frozen
class ServeConfig:
    """What ``chorus serve`` needs (see ``chorus serve --help``).

    Attributes:
        node_id: this node's name in the cluster.
        listen: ``host:port`` for the cluster (gossip) port.
        join: ``host:port`` seeds (IP addresses or DNS names).
        http: ``host:port`` for the HTTP admin.
        secret: the cluster secret; token: the admin bearer token. Never logged.
        flags_map: the replicated map holding the flags.
        node_options: extra keyword arguments for `transport.Node`.
    """

    node_id: str
    listen: str = "127.0.0.1:7400"
    join: tuple[str, ...] = ()
    http: str = "127.0.0.1:8400"
    secret: str = attrs.field(default="", repr=False)
    token: str = attrs.field(default="", repr=False)
    flags_map: str = "flags"
    node_options: dict[str, Any] = attrs.field(factory=dict)


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
    transport = TcpTransport(
        config.node_id, secret=config.secret, listen=config.listen, seeds=config.join
    )
    accepting = True
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with Node(config.node_id, transport, **config.node_options) as node:
            store = FlagStore(node.map(config.flags_map))

            def cluster() -> dict[str, Any]:
                membership = node.membership
                return {
                    "node": node.node_id,
                    "incarnation": node.incarnation,
                    "synced": node.synced,
                    "ready": node.ready,
                    "not_ready_reason": node.not_ready_reason(),
                    "clock_offset_ms": node.clock_offset_ms(),
                    "clock": node.clock_status(),  # steps of the wall clock, HLC lead
                    "members": sorted(node.members()),
                    "membership": {
                        "cluster": membership.cluster,
                        "members": sorted(membership.members()),
                        "removed": dict(sorted(membership.removed.items())),
                    },
                    "floor": str(node.floor),
                    "held": node.held,
                    "stats": attrs.asdict(node.stats),
                }

            app = create_app(
                store,
                token=config.token,
                node_id=config.node_id,
                synced=lambda: node.synced,
                cluster=cluster,
                accepting_writes=lambda: accepting,
                not_ready=node.not_ready_reason,
                replicated=node.wait_replicated,
            )
            http_config = HypercornConfig()
            http_config.bind = [config.http]
            http_config.accesslog = None
            # A Logger (not "-") makes hypercorn log through ours: one format everywhere.
            http_config.errorlog = logging.getLogger("hypercorn.error")
            http_config.graceful_timeout = 1.0
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
                log.info(
                    "node %s serving: cluster %s, http %s, joining %s",
                    config.node_id,
                    gossip,
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

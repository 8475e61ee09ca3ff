"""The background node both web examples start, configured from the environment."""

from __future__ import annotations

import os

from transport import BackgroundNode, Node, TcpTransport


def node_from_env() -> BackgroundNode:
    """A BackgroundNode configured by CHORUS_NODE_ID, CHORUS_LISTEN, CHORUS_JOIN and
    CHORUS_SECRET (the same secret as the cluster's ``chorus serve`` nodes)."""
    node_id = os.environ.get("CHORUS_NODE_ID", "web-1")
    secret = os.environ["CHORUS_SECRET"]
    listen = os.environ.get("CHORUS_LISTEN", "127.0.0.1:0")
    join = [s for s in os.environ.get("CHORUS_JOIN", "").split(",") if s]
    return BackgroundNode(
        lambda: Node(node_id, TcpTransport(node_id, secret=secret, listen=listen, seeds=join))
    )

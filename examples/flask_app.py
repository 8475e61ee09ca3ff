"""A Flask app that reads a flag on every request, from a node in a background thread.

    CHORUS_SECRET=... CHORUS_JOIN=127.0.0.1:7400 flask --app examples.flask_app run

Toggle the flag through any node's HTTP admin (``chorus flags enable new-checkout``)
and the next request here sees it: ``FlagStore.enabled`` reads an immutable snapshot
in this process, safe from Flask's request threads, with no lock and no network.
"""

from __future__ import annotations

from flask import Flask, request

from flags import FlagStore
from transport import BackgroundNode

from ._web_node import node_from_env


def create_app(node: BackgroundNode) -> Flask:
    """A Flask app over a started BackgroundNode."""
    # Built in the node's thread, where the map's changes arrive; read anywhere.
    store: FlagStore = node.run_sync(lambda: FlagStore(node.node.map("flags")))
    app = Flask(__name__)

    @app.get("/checkout")
    def checkout() -> dict[str, str]:
        user = request.args.get("user")
        new = store.enabled("new-checkout", actor=user)
        return {"checkout": "new" if new else "old"}

    return app


if __name__ == "__main__":
    create_app(node_from_env().start()).run()

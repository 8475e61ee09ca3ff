"""A FastAPI app that reads a flag on every request, from a node in a background thread.

    CHORUS_SECRET=... CHORUS_JOIN=127.0.0.1:7400 uvicorn examples.fastapi_app:app

The node starts with the app (lifespan) and stops with it. ``FlagStore.enabled``
reads an immutable snapshot: safe from the event loop and from worker threads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from flags import FlagStore
from transport import BackgroundNode

from ._web_node import node_from_env


def create_app(node: BackgroundNode | None = None) -> FastAPI:
    """A FastAPI app over ``node`` (started), or over a node from the environment,
    started and stopped with the app."""
    state: dict[str, FlagStore] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        running = node if node is not None else node_from_env().start()
        state["flags"] = running.run_sync(lambda: FlagStore(running.node.map("flags")))
        try:
            yield
        finally:
            if node is None:
                running.stop()

    app = FastAPI(lifespan=lifespan)

    @app.get("/checkout")
    def checkout(user: str | None = None) -> dict[str, str]:
        new = state["flags"].enabled("new-checkout", actor=user)
        return {"checkout": "new" if new else "old"}

    return app


app = create_app()  # for `uvicorn examples.fastapi_app:app`; the node starts with it

"""FastAPI: a flag read on every request; the node starts and stops with the app.

CHORUS_JOIN=127.0.0.1:7400 CHORUS_SECRET=... uvicorn --workers 4 examples.fastapi_app:app
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import flags

client = flags.FlagClient()  # joins CHORUS_JOIN with the secret in CHORUS_SECRET


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    with client:  # this worker's node: joins before the first request, leaves at exit
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/checkout")
def checkout(user: str | None = None) -> dict[str, str]:
    return {"checkout": "new" if client.enabled("new-checkout", actor=user) else "old"}

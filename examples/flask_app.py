"""Flask: a flag read on every request, from this process's own node.

CHORUS_JOIN=127.0.0.1:7400 CHORUS_SECRET=... flask --app examples.flask_app run
CHORUS_JOIN=127.0.0.1:7400 CHORUS_SECRET=... gunicorn -w 4 examples.flask_app:app
"""

from flask import Flask, request

import flags

client = flags.FlagClient()  # joins CHORUS_JOIN; its node starts on first use, in each worker
app = Flask(__name__)


@app.get("/checkout")
def checkout() -> dict[str, str]:
    new = client.enabled("new-checkout", actor=request.args.get("user"))
    return {"checkout": "new" if new else "old"}


@app.get("/ready")
def ready() -> tuple[dict[str, object], int]:
    reason = client.not_ready_reason()  # for the load balancer: 503 until synced
    return {"ready": reason is None, "reason": reason}, 200 if reason is None else 503

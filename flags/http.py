"""The HTTP admin of a node: flags as JSON, for people, scripts and load balancers.

Endpoints (Starlette; served by Hypercorn's trio worker in the node's own trio run):

- ``GET /flags?actor=A&group=G``: every flag (gates, metadata, default); with an
  actor or groups, each evaluated for them (``enabled`` and ``reason``).
- ``GET /flags/{name}?actor=A&group=G&group=H``: one flag's gates and metadata, with
  ``enabled`` and ``reason`` evaluated for that actor and those groups; 404 for a flag
  with no gate, metadata or default.
- ``PUT /flags/{name}``: one change, as JSON: ``{"enabled": bool}``,
  ``{"actor": id, "enabled": bool}``, ``{"group": g, "enabled": bool}``,
  ``{"percentage_of_actors": p}`` or ``{"percentage_of_time": p}``, with an optional
  ``"author"``.
- ``PUT /flags/{name}/meta``: ``{"description"?, "owner"?, "expires"?, "author"?}``.
- ``DELETE /flags/{name}``: delete the flag (gates and metadata; the audit log stays
  and records it); ``?actor=`` or ``?group=``: remove that one gate.
- ``GET /flags/{name}/audit?limit=N`` and ``GET /audit?limit=N``: recorded changes,
  newest first.
- Writes take ``?ack=replicated``: answer only once another node holds the change
  (503, with ``"written": true``, if none confirms it within 2 s; the change stays
  applied here and keeps replicating).
- ``GET /export``: every flag the cluster holds, as an export document (see
  `flags._export`).
- ``POST /import?dry_run=true&author=WHO``: make each flag of an export document
  (the body, up to `MAX_IMPORT_BYTES`) equal in the cluster; answers what changed,
  or would with ``dry_run``; 422 with a JSON ``pointer`` to the first bad value.
- ``GET /health``: 200 while the process serves.
- ``GET /ready``: 200 once the node is admitted, synced and its clock agrees with its
  peers'; 503 with the reason otherwise: the readiness probe of a rolling deploy.
- ``GET /cluster``: this node's id, members, clock, floor, and the counters of the
  node and of its transport.
- ``GET /metrics``: the same and more in the Prometheus text format (see
  `flags._metrics`), when the app is given a registry.
- ``GET /events``: Server-Sent Events, one per flag change, each with the flag's new
  state (see `flags._events`), when the app is given a feed. Always needs a token
  (the admin's or the viewer's).

Names follow `flags.FlagStore`'s grammar (`flags._schema.NAME_PATTERN`). Writes need
``Authorization: Bearer <token>`` (scheme in any case); reads too with
``reads_need_token``, except ``/health`` and ``/ready``, and there the viewer
token, if one is set, reads as well. Errors are JSON
``{"error": ...}``: 401 without a valid token, 404 for no such route or flag, 405 for
a method the route does not take, 400 for a body that is not JSON (or a malformed Content-Length),
408 for a body that takes over `BODY_TIMEOUT_S` to arrive, 413 for a body over
`MAX_BODY_BYTES` (refused from its Content-Length alone, or as soon as the streamed body
passes the limit: never buffered whole), 422 for JSON of the wrong shape (unknown
fields, bad percentages), 503 while the node refuses writes (shutting down, joining, or
its clock is off: the error says which). A rejected request changes nothing.
"""

from __future__ import annotations

import datetime
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from transport import WriteRefused

from ._events import FlagEvents, flag_json
from ._export import export_document, loads, parse_export
from ._schema import FlagFormatError
from ._store import FlagStore

log = logging.getLogger("chorus.http")
#: The largest request body accepted, in bytes.
MAX_BODY_BYTES = 16 * 1024
#: The largest body of ``POST /import``, in bytes: an export of a few thousand gates.
MAX_IMPORT_BYTES = 4 * 1024 * 1024
#: How long a whole request body may take to arrive, in seconds. A legitimate body
#: (under 16 KiB) takes milliseconds; this stops a client trickling one byte at a time
#: from holding a connection, which Hypercorn's per-read timeout alone would allow.
BODY_TIMEOUT_S = 10.0


class _Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _ErrorResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: an error may quote what the
    client sent, a lone surrogate included, which UTF-8 cannot encode."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _error(status: int, message: str, **more: Any) -> JSONResponse:
    return _ErrorResponse({"error": message, **more}, status_code=status)


#: How long ``?ack=replicated`` waits for another node, in seconds.
REPLICATED_TIMEOUT_S = 2.0


def check_tokens(token: str, viewer_token: str | None) -> None:
    """Check the admin token and the optional viewer token (`create_app` and
    `flags.ui.create_ui` take both).

    Raises:
        ValueError: ``token`` is empty, or ``viewer_token`` is empty or equal to it.
    """
    if not token:
        raise ValueError("the admin token must not be empty")
    if viewer_token is not None and (
        not viewer_token or hmac.compare_digest(viewer_token.encode(), token.encode())
    ):
        raise ValueError("the viewer token must be non-empty and differ from the admin token")


def create_app(
    store: FlagStore,
    *,
    token: str,
    node_id: str,
    synced: Callable[[], bool],
    cluster: Callable[[], dict[str, Any]],
    accepting_writes: Callable[[], bool] = lambda: True,
    not_ready: Callable[[], str | None] = lambda: None,
    replicated: Callable[[float], Awaitable[bool]] | None = None,
    metrics: CollectorRegistry | None = None,
    reads_need_token: bool = False,
    viewer_token: str | None = None,
    events: FlagEvents | None = None,
) -> Starlette:
    """Build the admin app over ``store``.

    Args:
        store: the flags.
        token: the bearer token writes must carry (non-empty).
        node_id: this node's id, echoed in responses.
        synced: tells whether the node has synced (for ``/ready``).
        cluster: returns the ``/cluster`` document.
        accepting_writes: False while shutting down: writes then get 503.
        not_ready: why the node takes no writes now (None when it does): writes and
            ``/ready`` then get 503 with that reason.
        replicated: ``await replicated(timeout_s)`` is True once another node holds
            every write made here (for ``?ack=replicated``); None: not offered.
        metrics: served at ``GET /metrics`` (collected at each scrape, in the
            thread that runs the app); None: no such route.
        reads_need_token: reads (``/flags``, ``/audit``, ``/cluster``, ``/metrics``)
            need the token too. Off by default: they change nothing, and a load
            balancer, dashboard or scraper on a trusted network reads without a
            secret; on where the port is reachable by anyone who must not see flag
            names and actor ids. ``/health`` and ``/ready`` stay open either way, for
            probes.
        viewer_token: a second token that reads (where reads need one, and
            ``/events``) but never writes; None: none.
        events: served at ``GET /events`` (see `flags._events`), to a request with
            the admin or the viewer token; None: no such route.

    Raises:
        ValueError: ``token`` is empty, or ``viewer_token`` is empty or the same.
    """
    check_tokens(token, viewer_token)
    expected = token.encode()
    readers = [expected, *([viewer_token.encode()] if viewer_token else [])]

    def bearer(request: Request) -> bytes | None:
        # RFC 7235 §2.1: the scheme is case-insensitive; one or more spaces follow it.
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return given.strip(" ").encode() if scheme.lower() == "bearer" else None

    def authorised(request: Request) -> bool:
        given = bearer(request)
        return given is not None and hmac.compare_digest(given, expected)

    def may_read(request: Request) -> bool:
        given = bearer(request)
        # Every token compared, so the time taken does not tell which one matched.
        return given is not None and sum(hmac.compare_digest(given, t) for t in readers) > 0

    def read_guard(request: Request, *, always: bool = False) -> JSONResponse | None:
        if (reads_need_token or always) and not may_read(request):
            log.warning("http: rejected a read of %s without a valid token", request.url.path)
            return _error(401, "a valid 'Authorization: Bearer <token>' header is required")
        return None

    def flag_name(request: Request) -> str:
        # Not checked here: a read of a name outside the grammar finds nothing (or an
        # entry from an older version); a write of one is refused by the store (422).
        return str(request.path_params["name"])

    async def body_of(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
        raw = await read_body(request, limit)
        try:
            body = loads(raw)
        except UnicodeDecodeError:
            raise _Rejected(400, "the body is not valid JSON: not UTF-8") from None
        except ValueError as exc:
            raise _Rejected(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _Rejected(422, "the body must be a JSON object")
        return body

    def write_guard(request: Request) -> JSONResponse | None:
        if not authorised(request):
            log.warning("http: rejected a write to %s without a valid token", request.url.path)
            return _error(401, "a valid 'Authorization: Bearer <token>' header is required")
        if not accepting_writes():
            return _error(503, "this node is shutting down")
        reason = not_ready()
        if reason is not None:
            return _error(503, f"this node takes no writes now: {reason}")
        if request.query_params.get("ack", "local") not in ("local", "replicated"):
            return _error(422, "ack must be 'local' or 'replicated'")
        return None

    async def answer_write(
        request: Request, name: str, document: dict[str, Any] | None = None
    ) -> JSONResponse:
        """The answer to a write: ``document`` (default: the flag's), once another
        node holds the change if ``?ack=replicated`` asks for it."""
        if document is None:
            document = flag_json(store.flag(name))
        wanted = request.query_params.get("ack") == "replicated"
        if wanted and (replicated is None or not await replicated(REPLICATED_TIMEOUT_S)):
            return JSONResponse(
                {
                    "error": "written on this node, but no other node confirmed it "
                    f"within {REPLICATED_TIMEOUT_S} s (it keeps replicating)",
                    "written": True,
                    "flag" if name else "result": document,
                },
                status_code=503,
            )
        return JSONResponse(document)

    def known(name: str) -> bool:
        # Gates or a default (the store's snapshot), or metadata: a few lookups.
        return store.known(name) or bool(store.metadata(name))

    def no_flag(name: str) -> JSONResponse:
        return _error(404, f"no flag named {name!r}: no gate, metadata or default")

    async def list_flags(request: Request) -> JSONResponse:
        denied = read_guard(request)
        if denied is not None:
            return denied
        actor = request.query_params.get("actor") or None
        groups = request.query_params.getlist("group")
        flags = [flag_json(f) for f in store.all()]
        if actor is not None or groups:  # evaluated for them, as GET /flags/{name} does
            for flag in flags:
                flag["enabled"], flag["reason"] = store.explain(flag["name"], actor, groups)
        return JSONResponse({"node": node_id, "flags": flags})

    async def get_flag(request: Request) -> JSONResponse:
        denied = read_guard(request)
        if denied is not None:
            return denied
        name = flag_name(request)
        if not known(name):
            return no_flag(name)
        actor = request.query_params.get("actor") or None
        groups = request.query_params.getlist("group")
        enabled, reason = store.explain(name, actor, groups)
        document = flag_json(store.flag(name))
        document.update(enabled=enabled, reason=reason, node=node_id, synced=synced())
        return JSONResponse(document)

    async def put(
        request: Request, apply: Callable[[FlagStore, str, dict[str, Any]], None], what: str
    ) -> JSONResponse:
        """A PUT: the guard, the body, ``apply(store, name, body)``, the answer."""
        denied = write_guard(request)
        if denied is not None:
            return denied
        name = flag_name(request)
        try:
            body = await body_of(request)
            apply(store, name, body)
        except _Rejected as exc:
            log.warning("http: rejected PUT %s%s: %s", name, what, exc)
            return _error(exc.status, str(exc))
        except WriteRefused as exc:
            return _error(503, str(exc))
        log.info("http: %s%s changed by %s", name, what, body.get("author") or "http")
        return await answer_write(request, name)

    async def put_flag(request: Request) -> JSONResponse:
        return await put(request, apply_change, "")

    async def put_meta(request: Request) -> JSONResponse:
        return await put(request, apply_metadata, "/meta")

    async def delete_flag(request: Request) -> JSONResponse:
        denied = write_guard(request)
        if denied is not None:
            return denied
        name = flag_name(request)
        actor = request.query_params.get("actor")
        group = request.query_params.get("group")
        author = request.query_params.get("author")
        try:
            if request.query_params.get("gates") == "all":  # every gate; metadata stays
                store.clear(name, author=author)
            elif actor is None and group is None:
                if not store.delete(name, author=author):
                    if not store.known(name):
                        return no_flag(name)
                    return _error(
                        404,
                        f"the cluster holds no gate or metadata for {name!r}: nothing to "
                        "delete (its default on this node stays)",
                    )
                log.info("http: %s deleted by %s", name, author or "http")
            else:
                store.clear(name, actor=actor, group=group, author=author)
        except ValueError as exc:
            return _error(422, str(exc))
        except WriteRefused as exc:
            return _error(503, str(exc))
        return await answer_write(request, name)

    async def one_flag(request: Request) -> JSONResponse:
        # One route for the three methods, so that a 405 lists all of them in Allow.
        if request.method == "PUT":
            return await put_flag(request)
        if request.method == "DELETE":
            return await delete_flag(request)
        return await get_flag(request)

    def audit_limit(request: Request) -> int:
        text = request.query_params.get("limit", str(DEFAULT_AUDIT_LIMIT))
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_AUDIT_LIMIT):
            raise _Rejected(422, f"limit must be a whole number from 1 to {MAX_AUDIT_LIMIT}")
        return int(text)

    def audit_json(name: str | None, limit: int) -> JSONResponse:
        entries = [attrs.asdict(e) for e in store.audit(name, limit=limit)]
        return JSONResponse({"node": node_id, "audit": entries})

    async def flag_audit(request: Request) -> JSONResponse:
        denied = read_guard(request)
        if denied is not None:
            return denied
        name = flag_name(request)
        limit = audit_limit(request)
        return audit_json(name, limit)

    async def all_audit(request: Request) -> JSONResponse:
        denied = read_guard(request)
        if denied is not None:
            return denied
        return audit_json(None, audit_limit(request))

    async def export_flags(request: Request) -> JSONResponse:
        denied = read_guard(request)
        if denied is not None:
            return denied
        now = datetime.datetime.now(datetime.UTC)
        skipped = store.unexportable()
        if skipped:
            log.warning("http: export leaves out %d entries: %s", len(skipped), skipped[:10])
        document = export_document(store.export(), node=node_id, exported_at=now, skipped=skipped)
        return JSONResponse(document)

    async def import_flags(request: Request) -> JSONResponse:
        denied = write_guard(request)
        if denied is not None:
            return denied
        dry_run = request.query_params.get("dry_run", "false")
        author = request.query_params.get("author")
        if dry_run not in ("true", "false"):
            return _error(422, "dry_run must be 'true' or 'false'")
        try:
            flags = parse_export(await body_of(request, MAX_IMPORT_BYTES))
            plans = store.import_flags(flags, author=author, dry_run=dry_run == "true")
        except _Rejected as exc:
            return _error(exc.status, str(exc))
        except FlagFormatError as exc:
            log.warning("http: rejected an import: %s", exc)
            return _error(422, exc.message, pointer=exc.pointer)
        except ValueError as exc:
            return _error(422, str(exc))
        except WriteRefused as exc:
            return _error(503, str(exc))
        changed = [p.name for p in plans if p.changes]
        if changed and dry_run == "false":
            log.info("http: import by %s changed %d flags", author or "http", len(changed))
        result = {
            "node": node_id,
            "dry_run": dry_run == "true",
            "changed": changed,
            "unchanged": [p.name for p in plans if not p.changes],
            "flags": [{"name": p.name, "changes": p.changes} for p in plans],
        }
        if dry_run == "true" or not changed:
            return JSONResponse(result)
        return await answer_write(request, "", result)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "node": node_id})

    async def ready(request: Request) -> JSONResponse:
        reason = (
            "shutting down"
            if not accepting_writes()
            else not_ready() or (None if synced() else "not synced with the cluster yet")
        )
        if reason is None:
            return JSONResponse({"ready": True, "node": node_id})
        return JSONResponse({"ready": False, "node": node_id, "reason": reason}, status_code=503)

    async def cluster_view(request: Request) -> JSONResponse:
        denied = read_guard(request)
        if denied is not None:
            return denied
        return JSONResponse(cluster())

    async def event_stream(request: Request) -> Response:
        assert events is not None
        denied = read_guard(request, always=True)
        return denied if denied is not None else events.response(request)

    async def metrics_view(request: Request) -> Response:
        assert metrics is not None
        denied = read_guard(request)
        if denied is not None:
            return denied
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            message = f"no such resource: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        else:
            message = exc.detail
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    async def rejected(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Rejected)
        return _error(exc.status, str(exc))

    return Starlette(
        routes=[
            Route("/flags", list_flags, methods=["GET"]),
            Route("/flags/{name}", one_flag, methods=["GET", "PUT", "DELETE"]),
            Route("/flags/{name}/meta", put_meta, methods=["PUT"]),
            Route("/flags/{name}/audit", flag_audit, methods=["GET"]),
            Route("/audit", all_audit, methods=["GET"]),
            Route("/export", export_flags, methods=["GET"]),
            Route("/import", import_flags, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/cluster", cluster_view, methods=["GET"]),
            *([Route("/metrics", metrics_view, methods=["GET"])] if metrics is not None else []),
            *([Route("/events", event_stream, methods=["GET"])] if events is not None else []),
        ],
        exception_handlers={HTTPException: http_error, _Rejected: rejected},
    )


#: How many audit entries ``GET .../audit`` answers without ``?limit=``, and at most.
DEFAULT_AUDIT_LIMIT = 100
MAX_AUDIT_LIMIT = 1000
_META_FIELDS = frozenset({"description", "owner", "expires"})


def apply_metadata(store: FlagStore, name: str, body: dict[str, Any]) -> None:
    """Apply one ``PUT /flags/{name}/meta`` body to ``store``.

    Raises:
        _Rejected: (422) unknown fields, none of the metadata fields, or invalid
            values (a text that is not a str or is too long, an expiry that is not
            ``YYYY-MM-DD``). Nothing is written.
    """
    fields = frozenset(body) - {"author"}
    if not fields or not fields <= _META_FIELDS:
        raise _Rejected(
            422,
            f"expected some of {{description, owner, expires}} (plus author); got {sorted(body)}",
        )
    for field in ("description", "owner", "expires"):
        if field in body and type(body[field]) is not str:
            raise _Rejected(422, f"{field!r} must be a string")
    try:
        store.set_metadata(
            name,
            description=body.get("description"),
            owner=body.get("owner"),
            expires=body.get("expires"),
            author=body.get("author"),
        )
    except ValueError as exc:
        raise _Rejected(422, str(exc)) from None


_SHAPES = {
    frozenset({"enabled"}),
    frozenset({"actor", "enabled"}),
    frozenset({"group", "enabled"}),
    frozenset({"percentage_of_actors"}),
    frozenset({"percentage_of_time"}),
}


def check_content_length(value: str | None, limit: int = MAX_BODY_BYTES) -> None:
    """Refuse a request from its Content-Length header alone (None: no such header).

    Raises:
        _Rejected: (400) the header is not a decimal number of bytes; (413) it
            declares more than ``limit`` bytes.
    """
    if value is None:
        return
    digits = value.strip()
    if not (digits.isascii() and digits.isdigit()):
        raise _Rejected(400, "the Content-Length header is not a number of bytes")
    significant = digits.lstrip("0")
    # Compare lengths first: int() of a 5,000-digit string raises in Python 3.11+.
    if len(significant) > len(str(limit)) or int(significant or "0") > limit:
        raise _Rejected(413, f"body over {limit} bytes")


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body, read as it streams in and never past ``limit`` bytes.

    Chunked bodies (no Content-Length) are counted the same way.

    Raises:
        _Rejected: (400) a malformed Content-Length, or the client left mid-body;
            (408) the body took over `BODY_TIMEOUT_S` seconds; (413) Content-Length
            declares, or the bytes received pass, ``limit``.
    """
    check_content_length(request.headers.get("content-length"), limit)
    chunks: list[bytes] = []
    received = 0
    try:
        with anyio.fail_after(BODY_TIMEOUT_S):
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise _Rejected(413, f"body over {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise _Rejected(408, f"the body took over {BODY_TIMEOUT_S:g} s to arrive") from None
    except ClientDisconnect:
        raise _Rejected(400, "the client went away before the body ended") from None
    return b"".join(chunks)


def apply_change(store: FlagStore, name: str, body: dict[str, Any]) -> None:
    """Apply one PUT body to ``store``.

    Raises:
        _Rejected: (422) the body has unknown fields, is not one of the accepted
            shapes, or holds invalid values. Nothing is written.
    """
    author = body.get("author")
    fields = frozenset(body) - {"author"}
    if fields not in _SHAPES:
        raise _Rejected(
            422,
            "expected one of {enabled}, {actor, enabled}, {group, enabled}, "
            f"{{percentage_of_actors}}, {{percentage_of_time}} (plus author); got {sorted(body)}",
        )
    enabled = body.get("enabled")
    if "enabled" in fields and type(enabled) is not bool:
        raise _Rejected(422, "'enabled' must be true or false")
    try:
        if fields == {"enabled"}:
            (store.enable if enabled else store.disable)(name, author=author)
        elif "actor" in fields:
            for_actor = store.enable_for_actor if enabled else store.disable_for_actor
            for_actor(name, body["actor"], author=author)
        elif "group" in fields:
            for_group = store.enable_for_group if enabled else store.disable_for_group
            for_group(name, body["group"], author=author)
        elif "percentage_of_actors" in fields:
            store.enable_percentage_of_actors(name, body["percentage_of_actors"], author=author)
        else:
            store.enable_percentage_of_time(name, body["percentage_of_time"], author=author)
    except ValueError as exc:
        raise _Rejected(422, str(exc)) from None

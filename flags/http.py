"""The HTTP admin of a node: flags as JSON, for people, scripts and load balancers.

Endpoints (Starlette; served by Hypercorn's trio worker in the node's own trio run):

- ``GET /flags?actor=A&group=G``: every flag (gates, metadata, default); with an
  actor or groups, each evaluated for them (``enabled`` and ``reason``).
- ``GET /flags/{name}?actor=A&group=G&group=H``: one flag's gates and metadata, with
  ``enabled`` and ``reason`` evaluated for that actor and those groups; a typed flag
  also has its parts and ``serves`` (``{"value", "variant", "reason", "detail"}`` of
  ``FlagStore.evaluate`` for them, default None); 404 for a flag with no gate,
  metadata or default.
- ``PUT /flags/{name}``: one change, as JSON: ``{"enabled": bool}``,
  ``{"actor": id, "enabled": bool}``, ``{"group": g, "enabled": bool}``,
  ``{"percentage_of_actors": p}`` or ``{"percentage_of_time": p}``, with an optional
  ``"author"``.
- ``PUT /flags/{name}/meta``: ``{"description"?, "owner"?, "expires"?, "author"?}``.
- ``DELETE /flags/{name}``: delete the flag (gates and metadata; the audit log stays
  and records it); ``?actor=`` or ``?group=``: remove that one gate.
- ``GET /flags/{name}/audit?limit=N`` and ``GET /audit?limit=N``: recorded changes,
  newest first.
- Typed flags (`flags.FlagStore.evaluate` says how they evaluate). Each PUT body
  may add ``"author"``; each DELETE takes ``?author=``; each answers the flag (see
  `flags._events.flag_json`: the typed fields appear once set), and a DELETE of a
  part the flag does not have is 404:

  - ``PUT /flags/{name}/variants``: ``{"type"?: t, "variants": {variant: value}}``,
    exactly these variants;
  - ``PUT|DELETE /flags/{name}/variants/{variant}``: PUT ``{"value": v}``;
  - ``PUT|DELETE /flags/{name}/off_variant``: PUT ``{"variant": v}``;
  - ``PUT|DELETE /flags/{name}/fallthrough``: PUT ``{"variant": v}`` or
    ``{"split": {v: weight}}``;
  - ``PUT|DELETE /flags/{name}/rules/{rule_id}``: PUT ``{"conditions"?: [...],
    "segments"?: [...], "serve": {...}, "before"?: id, "after"?: id}``;
  - ``PUT|DELETE /flags/{name}/prerequisites/{other}``: PUT ``{"variants": [v]}``;
  - ``PUT|DELETE /flags/{name}/schedules/{id}``: PUT ``{"at": RFC 3339 date-time
    or int ms, "set"?: [[kind, *key, value]], "delete"?: [[kind, *key]]}``;
  - ``GET /segments``; ``GET|PUT|DELETE /segments/{name}``: PUT ``{"conditions":
    [...]}``; writes answer every segment;
  - ``POST /flags/{name}/evaluate``: ``{"default": any, "actor"?: str, "groups"?:
    [str], "attributes"?: {...}}`` answers ``{"value", "variant", "reason",
    "detail"}`` (a read: guarded like ``GET /flags``; an unknown flag answers the
    default with reason ``ERROR``);
  - ``GET /schema/{rule,condition,serve,segment,schedule}.json``: the JSON Schemas
    (draft 2020-12) of those bodies, with no token.

  A body the store refuses is 422 ``{"error": ..., "pointer": ...}``, the pointer
  into the request's body (``/conditions/0/op``); so is an unknown field.
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

import contextlib
import datetime
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from importlib import resources
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
from ._export import (
    conditions_in_order,
    export_document,
    loads,
    parse_export,
    parse_segments,
    segment_plan,
)
from ._schema import FlagFormatError, _short, pointer_part, valid_name
from ._store import MAX_IMPORT_ENTRIES, FlagStore
from ._targeting import instant

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
    """A request refused: its status, message and, for a bad field of a JSON body,
    the field's RFC 6901 pointer into the body (None: no pointer)."""

    def __init__(self, status: int, message: str, pointer: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.pointer = pointer

    def response(self) -> JSONResponse:
        more = {} if self.pointer is None else {"pointer": self.pointer}
        return _error(self.status, str(self), **more)


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
        # Gates, typed parts or a default (the store's snapshot), or metadata: a few
        # lookups; a flag with nothing but schedules pending is read whole.
        return store.known(name) or bool(store.metadata(name)) or bool(store.flag(name).schedules)

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
        if store.is_typed(name):  # what it serves: for a typed flag, more than enabled
            got = store.evaluate(name, None, actor=actor, groups=groups)
            document["serves"] = {
                "value": got.value,
                "variant": got.variant,
                "reason": got.reason,
                "detail": got.detail,
            }
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
        document = export_document(
            store.export(),
            node=node_id,
            exported_at=now,
            skipped=skipped,
            segments=store.segments(),
        )
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
            document = await body_of(request, MAX_IMPORT_BYTES)
            flags = parse_export(document)
            segments = segment_plan(store.segments(), parse_segments(document))
            if dry_run == "true" or not segments:
                plans = store.import_flags(flags, author=author, dry_run=dry_run == "true")
            else:
                # Segments go first, so that rules find them; the flags are checked
                # whole (the store's dry run and its bound) before either is written.
                plans = store.import_flags(flags, author=author, dry_run=True)
                entries = sum(len(p.sets) + len(p.deletes) for p in plans)
                if entries > MAX_IMPORT_ENTRIES:
                    raise _Rejected(
                        422,
                        f"this import would write {entries} entries, over "
                        f"{MAX_IMPORT_ENTRIES} at once (the node does nothing else while it "
                        "writes): split the file by flags",
                    )
                for name, (conditions, _) in segments.items():
                    store.set_segment(name, conditions, author=author)
                plans = store.import_flags(flags, author=author)
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
        if (changed or segments) and dry_run == "false":
            log.info(
                "http: import by %s changed %d flags and %d segments",
                author or "http",
                len(changed),
                len(segments),
            )
        result: dict[str, Any] = {
            "node": node_id,
            "dry_run": dry_run == "true",
            "changed": changed,
            "unchanged": [p.name for p in plans if not p.changes],
            "flags": [{"name": p.name, "changes": p.changes} for p in plans],
        }
        if segments:
            result["segments"] = [
                {"name": name, "changes": [line]} for name, (_, line) in segments.items()
            ]
        if dry_run == "true" or not (changed or segments):
            return JSONResponse(result)
        return await answer_write(request, "", result)

    # -- typed flags: variants, rules, prerequisites, schedules, segments --------------

    def part(request: Request, param: str) -> str:
        return str(request.path_params[param])

    async def typed_put(
        request: Request,
        what: str,
        fields: tuple[str, ...],
        required: tuple[str, ...],
        apply: Callable[[str, dict[str, Any], str | None], None],
    ) -> JSONResponse:
        """A PUT of a typed part: the guard, the body (``fields`` plus ``author``;
        ``required`` present), ``apply(name, body, author)``, the flag as answer."""
        denied = write_guard(request)
        if denied is not None:
            return denied
        name = flag_name(request)
        try:
            body = await body_of(request)
            check_fields(body, (*fields, "author"), required)
            author = body.get("author")
            if author is not None and type(author) is not str:
                raise _Rejected(422, "author must be a string", "/author")
            apply(name, body, author)
        except _Rejected as exc:
            log.warning("http: rejected PUT %s/%s: %s", name, what, exc)
            return exc.response()
        except ValueError as exc:  # a bad name or author (FlagFormatError: see apply)
            return _error(422, str(exc))
        except WriteRefused as exc:
            return _error(503, str(exc))
        log.info("http: %s/%s changed by %s", name, what, author or "http")
        return await answer_write(request, name)

    async def typed_delete(
        request: Request, what: str, remove: Callable[[str, str | None], bool]
    ) -> JSONResponse:
        """A DELETE of a typed part: ``remove(name, author)`` is False when there was
        no such part (404, nothing written)."""
        denied = write_guard(request)
        if denied is not None:
            return denied
        name = flag_name(request)
        author = request.query_params.get("author")
        try:
            removed = remove(name, author)
        except ValueError as exc:
            return _error(422, str(exc))
        except WriteRefused as exc:
            return _error(503, str(exc))
        if not removed:
            if not known(name):
                return no_flag(name)
            return _error(404, f"flag {name!r} has no {what}: nothing to delete")
        log.info("http: %s/%s deleted by %s", name, what, author or "http")
        return await answer_write(request, name)

    async def put_variants(request: Request) -> JSONResponse:
        def apply(name: str, body: dict[str, Any], author: str | None) -> None:
            with body_pointers(("/type", "/type"), ("/variants", "/variants")):
                store.set_variants(name, body["variants"], type=body.get("type"), author=author)

        return await typed_put(request, "variants", ("type", "variants"), ("variants",), apply)

    async def one_variant(request: Request) -> JSONResponse:
        variant = part(request, "variant")
        if request.method == "DELETE":

            def remove(name: str, author: str | None) -> bool:
                return store.delete_variant(name, variant, author=author)

            return await typed_delete(request, f"variant {variant!r}", remove)

        def apply(name: str, body: dict[str, Any], author: str | None) -> None:
            with body_pointers(("/variants" + pointer_part(variant), "/value")):
                store.set_variant(name, variant, body["value"], author=author)

        return await typed_put(request, f"variants/{variant}", ("value",), ("value",), apply)

    async def off_variant(request: Request) -> JSONResponse:
        if request.method == "DELETE":

            def remove(name: str, author: str | None) -> bool:
                if store.flag(name).off_variant is None:
                    return False
                store.set_off_variant(name, None, author=author)
                return True

            return await typed_delete(request, "off variant", remove)

        def apply(name: str, body: dict[str, Any], author: str | None) -> None:
            if not valid_name(body["variant"]):
                raise _Rejected(
                    422,
                    f"variant must be a variant name, not {_short(body['variant'])}",
                    "/variant",
                )
            with body_pointers(("/off_variant", "/variant")):
                store.set_off_variant(name, body["variant"], author=author)

        return await typed_put(request, "off_variant", ("variant",), ("variant",), apply)

    async def fallthrough(request: Request) -> JSONResponse:
        if request.method == "DELETE":

            def remove(name: str, author: str | None) -> bool:
                if store.flag(name).fallthrough is None:
                    return False
                store.set_fallthrough(name, None, author=author)
                return True

            return await typed_delete(request, "fallthrough", remove)

        def apply(name: str, body: dict[str, Any], author: str | None) -> None:
            serve = {k: v for k, v in body.items() if k != "author"}
            if len(serve) != 1:
                raise _Rejected(
                    422, 'the body is {"variant": name} or {"split": {name: weight}}', ""
                )
            with body_pointers(("/fallthrough", "")):
                store.set_fallthrough(name, serve, author=author)

        return await typed_put(request, "fallthrough", ("variant", "split"), (), apply)

    async def one_rule(request: Request) -> JSONResponse:
        rule_id = part(request, "rule_id")
        if request.method == "DELETE":

            def remove(name: str, author: str | None) -> bool:
                return store.delete_rule(name, rule_id, author=author)

            return await typed_delete(request, f"rule {rule_id!r}", remove)

        def apply(name: str, body: dict[str, Any], author: str | None) -> None:
            for field in ("conditions", "segments"):
                if not isinstance(body.get(field, []), list):
                    raise _Rejected(422, f"{field} must be a list", "/" + field)
            if not isinstance(body["serve"], dict):
                raise _Rejected(422, "serve must be an object", "/serve")
            for field in ("before", "after"):
                if field in body and not isinstance(body[field], str):
                    raise _Rejected(422, f"{field} must be a string (a rule id)", "/" + field)
            if "before" in body and "after" in body:
                raise _Rejected(422, "give before or after, not both", "/after")
            at = "/rules" + pointer_part(rule_id)
            beside = "/before" if "before" in body else "/after"
            with body_pointers((at + "/position", beside), (at, "")):
                store.set_rule(
                    name,
                    rule_id,
                    serve=body["serve"],
                    conditions=body.get("conditions", []),
                    segments=body.get("segments", []),
                    before=body.get("before"),
                    after=body.get("after"),
                    author=author,
                )

        fields = ("conditions", "segments", "serve", "before", "after")
        return await typed_put(request, f"rules/{rule_id}", fields, ("serve",), apply)

    async def one_prerequisite(request: Request) -> JSONResponse:
        other = part(request, "other")
        if request.method == "DELETE":

            def remove(name: str, author: str | None) -> bool:
                return store.delete_prerequisite(name, other, author=author)

            return await typed_delete(request, f"prerequisite on {other!r}", remove)

        def apply(name: str, body: dict[str, Any], author: str | None) -> None:
            if not isinstance(body["variants"], list):
                raise _Rejected(422, "variants must be a list of variant names", "/variants")
            at = "/prerequisites" + pointer_part(other)
            # The store's errors at the prerequisite (unknown flag or variant, a
            # cycle) are about the body as a whole.
            with body_pointers((at + "/", "/variants/"), (at, "")):
                store.set_prerequisite(name, other, body["variants"], author=author)

        path = f"prerequisites/{other}"
        return await typed_put(request, path, ("variants",), ("variants",), apply)

    async def one_schedule(request: Request) -> JSONResponse:
        schedule_id = part(request, "schedule_id")
        if request.method == "DELETE":

            def remove(name: str, author: str | None) -> bool:
                return store.delete_schedule(name, schedule_id, author=author)

            return await typed_delete(request, f"schedule {schedule_id!r}", remove)

        def apply(name: str, body: dict[str, Any], author: str | None) -> None:
            at_ms = schedule_time(body["at"])
            for field in ("set", "delete"):
                writes = body.get(field, [])
                if not isinstance(writes, list):
                    raise _Rejected(422, f"{field} must be a list of lists", "/" + field)
                for index, write in enumerate(writes):
                    if not isinstance(write, list):
                        raise _Rejected(422, f"each {field} is a list", f"/{field}/{index}")
            at = "/schedules" + pointer_part(schedule_id)
            with body_pointers((at + "/at_ms", "/at"), (at, "")):
                store.schedule(
                    name,
                    schedule_id,
                    at_ms,
                    set=body.get("set", []),
                    delete=body.get("delete", []),
                    author=author,
                )

        path = f"schedules/{schedule_id}"
        return await typed_put(request, path, ("at", "set", "delete"), ("at",), apply)

    async def evaluate_flag(request: Request) -> JSONResponse:
        denied = read_guard(request)
        if denied is not None:
            return denied
        name = flag_name(request)
        try:
            body = await body_of(request)
            check_fields(body, ("default", "actor", "groups", "attributes"), ("default",))
            actor = body.get("actor")
            if actor is not None and type(actor) is not str:
                raise _Rejected(422, "actor must be a string or null", "/actor")
            groups = body.get("groups", [])
            if not isinstance(groups, list):
                raise _Rejected(422, "groups must be a list of strings", "/groups")
            for index, group in enumerate(groups):
                if type(group) is not str:
                    raise _Rejected(422, "a group is a string", f"/groups/{index}")
            attributes = body.get("attributes", {})
            if not isinstance(attributes, dict):
                raise _Rejected(422, "attributes must be an object", "/attributes")
        except _Rejected as exc:
            return exc.response()
        got = store.evaluate(
            name, body["default"], actor=actor, groups=groups, attributes=attributes
        )
        return JSONResponse(
            {
                "name": name,
                "value": got.value,
                "variant": got.variant,
                "reason": got.reason,
                "detail": got.detail,
                "node": node_id,
            }
        )

    def segments_json() -> dict[str, Any]:
        segments = store.segments()
        return {
            "node": node_id,
            "segments": {k: conditions_in_order(v) for k, v in segments.items()},
        }

    async def list_segments(request: Request) -> JSONResponse:
        denied = read_guard(request)
        return denied if denied is not None else JSONResponse(segments_json())

    async def one_segment(request: Request) -> JSONResponse:
        segment = part(request, "segment")
        if request.method == "GET":
            denied = read_guard(request)
            if denied is not None:
                return denied
            conditions = store.segments().get(segment)
            if conditions is None:
                return _error(404, f"no segment named {segment!r}")
            return JSONResponse(
                {"name": segment, "conditions": conditions_in_order(conditions), "node": node_id}
            )
        denied = write_guard(request)
        if denied is not None:
            return denied
        try:
            if request.method == "DELETE":
                author = request.query_params.get("author")
                if not store.delete_segment(segment, author=author):
                    return _error(404, f"no segment named {segment!r}: nothing to delete")
            else:
                body = await body_of(request)
                check_fields(body, ("conditions", "author"), ("conditions",))
                author = body.get("author")
                if author is not None and type(author) is not str:
                    raise _Rejected(422, "author must be a string", "/author")
                if not isinstance(body["conditions"], list):
                    raise _Rejected(422, "conditions must be a list", "/conditions")
                with body_pointers(("/conditions", "/conditions")):
                    store.set_segment(segment, body["conditions"], author=author)
        except _Rejected as exc:
            log.warning("http: rejected %s /segments/%s: %s", request.method, segment, exc)
            return exc.response()
        except ValueError as exc:
            return _error(422, str(exc))
        except WriteRefused as exc:
            return _error(503, str(exc))
        log.info("http: segment %s changed by %s", segment, author or "http")
        return await answer_write(request, "", segments_json())

    async def schema_file(request: Request) -> Response:
        text = schema_text(str(request.path_params["schema"]))
        if text is None:
            return _error(404, f"no schema named {request.path_params['schema']!r}")
        return Response(text, media_type="application/schema+json")

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
        return exc.response()

    return Starlette(
        routes=[
            Route("/flags", list_flags, methods=["GET"]),
            Route("/flags/{name}", one_flag, methods=["GET", "PUT", "DELETE"]),
            Route("/flags/{name}/meta", put_meta, methods=["PUT"]),
            Route("/flags/{name}/audit", flag_audit, methods=["GET"]),
            Route("/flags/{name}/evaluate", evaluate_flag, methods=["POST"]),
            Route("/flags/{name}/variants", put_variants, methods=["PUT"]),
            Route("/flags/{name}/variants/{variant}", one_variant, methods=["PUT", "DELETE"]),
            Route("/flags/{name}/off_variant", off_variant, methods=["PUT", "DELETE"]),
            Route("/flags/{name}/fallthrough", fallthrough, methods=["PUT", "DELETE"]),
            Route("/flags/{name}/rules/{rule_id}", one_rule, methods=["PUT", "DELETE"]),
            Route(
                "/flags/{name}/prerequisites/{other}", one_prerequisite, methods=["PUT", "DELETE"]
            ),
            Route("/flags/{name}/schedules/{schedule_id}", one_schedule, methods=["PUT", "DELETE"]),
            Route("/segments", list_segments, methods=["GET"]),
            Route("/segments/{segment}", one_segment, methods=["GET", "PUT", "DELETE"]),
            Route("/schema/{schema}.json", schema_file, methods=["GET"]),
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


# -- typed flags: bodies, pointers, schedule times, schemas ---------------------------


def check_fields(body: dict[str, Any], allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
    """Refuse a body with a field not in ``allowed`` or without one of ``required``.

    Raises:
        _Rejected: (422) with the pointer of the first unknown field (``/colour``)
            or of the missing one (``/serve``).
    """
    for field in body:
        if field not in allowed:
            raise _Rejected(
                422,
                f"unknown field {field!r} (this body takes {', '.join(allowed)})",
                pointer_part(field),
            )
    for field in required:
        if field not in body:
            raise _Rejected(422, f"{field!r} is required", "/" + field)


@contextlib.contextmanager
def body_pointers(*prefixes: tuple[str, str]) -> Iterator[None]:
    """Turn a `FlagFormatError` raised inside into a 422 `_Rejected` whose pointer is
    into the request's body, not the flag.

    Args:
        prefixes: ``(flag_pointer, body_pointer)`` pairs, tried in order: the first
            whose flag pointer is the error's, or a prefix of it at a ``/`` (any
            prefix, for one that ends in ``/``), is replaced by its body pointer
            (``("/rules/r1", "")`` makes ``/rules/r1/conditions/0/op`` into
            ``/conditions/0/op``). An error at
            none of them (another part of the flag) gets the pointer ``""`` and its
            flag pointer in the message.
    """
    try:
        yield
    except FlagFormatError as exc:
        for flag_at, body_at in prefixes:
            if (
                exc.pointer.startswith(flag_at)
                if flag_at.endswith("/")
                else exc.pointer == flag_at or exc.pointer.startswith(flag_at + "/")
            ):
                pointer = body_at + exc.pointer[len(flag_at) :]
                raise _Rejected(422, exc.message, pointer) from None
        raise _Rejected(422, f"the flag's {exc.pointer or '/'}: {exc.message}", "") from None


#: The date-times a schedule's ``"at"`` takes: RFC 3339's date-time, with an offset
#: (or Z) and at most nine digits of fraction; the schema's pattern says the same.
SCHEDULE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def schedule_time(value: object) -> int:
    """A schedule body's ``"at"`` as HLC wall ms: an int is taken as ms since the
    Unix epoch (the store checks its range), a str as an RFC 3339 date-time.

    Raises:
        _Rejected: (422, pointer ``/at``) anything else, or a date-time that names
            no instant (month 13, say).
    """
    if type(value) is int:
        return value
    if isinstance(value, str) and SCHEDULE_TIME.fullmatch(value):
        seconds = instant(value)
        if seconds is not None:
            return round(seconds * 1000)
    raise _Rejected(
        422,
        "at is an RFC 3339 date-time with an offset (2026-12-01T09:00:00Z) or an int of "
        f"ms since the Unix epoch, not {_short(value)}",
        "/at",
    )


#: The JSON Schemas served at ``GET /schema/<name>.json`` (package data in
#: flags/schema/): the bodies of ``PUT .../rules/{id}``, ``PUT /segments/{name}`` and
#: ``PUT .../schedules/{id}``, and the condition and serve they hold.
SCHEMAS = ("rule", "condition", "serve", "segment", "schedule")


def schema_text(name: str) -> str | None:
    """The text of schema ``name`` (one of `SCHEMAS`), or None for another name."""
    if name not in SCHEMAS:
        return None
    return (resources.files("flags") / "schema" / f"{name}.json").read_text("utf-8")

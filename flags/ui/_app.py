"""The web UI's app: pages, forms and the rules of who may do what.

Every page is server-rendered (Jinja2, autoescaped); every action is a plain form
POST answered with a 303 redirect to a page (post/redirect/get), so the UI works
with JavaScript off. ``static/chorus.js`` adds live updates over the ``events``
stream. Routes, relative to where the app is mounted (``root``):

- ``GET login``, ``POST login``, ``POST logout``: the session.
- ``GET /`` (flags page; ``?q=`` filters by name), ``POST create``.
- ``GET flags/{name}`` (flag page; ``?actor=&groups=&attrs=`` evaluates; ``attrs``
  since a field named ``attributes`` would shadow the form's DOM property of that
  name, which scripts walking the page read), ``POST gates/{name}``,
  ``remove/{name}``, ``metadata/{name}``, ``restore/{name}``, ``delete/{name}``;
  ``GET`` and ``POST disable/{name}`` (the confirmation). The
  verb comes first and the name, percent-encoded, last: a name an older version
  wrote may hold a ``/``.
- Typed flags, on the flag page: ``POST type/{name}``, ``variant/{name}``,
  ``delete-variant/{name}``, ``off-variant/{name}``, ``fallthrough/{name}``,
  ``rule/{name}``, ``delete-rule/{name}``, ``prerequisite/{name}``,
  ``delete-prerequisite/{name}``, ``delete-schedule/{name}``; a refused one shows
  the store's message (and the field's pointer) next to its form, the input kept.
  ``GET flags/{name}?edit=<rule id>`` fills the rule form with that rule.
- ``GET audit``: the newest changes of every flag and segment.
- ``GET cluster`` (when ``cluster`` is given), ``GET events`` (when ``events`` is).
- ``GET static/...``: the stylesheet and the script.

Statuses: 303 after every write that took; 401 for a wrong token or a request that
needs a session and has none (pages redirect to ``login`` instead); 403 for a POST
without the session's CSRF token or from another origin, and for a write the mode
or role forbids; 404 for an unknown flag or route; 422 for bad input and 503 when
the node refuses writes (not ready, shutting down), both re-rendering the page with
the reason. A refused request changes nothing.
"""

from __future__ import annotations

import functools
import hmac
import logging
import pathlib
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import anyio.to_thread
import attrs
import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from transport import WriteRefused

from .._client import FlagClient
from .._events import FlagEvents
from .._schema import MAX_NAME_CHARS, FlagFormatError, pointer_part, valid_name
from .._store import FlagStore
from .._variants import TYPES
from ..http import check_tokens
from . import _charts, _forms, _views
from ._security import (
    Refused,
    SecurityHeaders,
    Sessions,
    csrf_token,
    read_form,
    session_expiry,
    session_key,
)

log = logging.getLogger("chorus.ui")
_HERE = pathlib.Path(__file__).parent
#: The banner colours `create_ui` takes (each a CSS class ``banner-<colour>``).
BANNER_COLOURS = ("red", "orange", "green", "blue", "grey")
MODES = ("on", "read-only")
#: How many audit entries the flag page lists.
AUDIT_ROWS = 100
#: The longest name the login form's "Your name" keeps, in characters.
MAX_AUTHOR_CHARS = 100
T = TypeVar("T")
Flags = FlagStore | FlagClient


class _Failed(Exception):
    """A write the store turned down: the page is shown again with ``message`` (and,
    for a `FlagFormatError`, the ``pointer`` of the bad field and ``detail``, the
    message without it)."""

    def __init__(
        self, status: int, message: str, pointer: str | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.pointer = pointer
        self.detail = detail if detail is not None else message


@attrs.frozen
class FormError:
    """A refused write of one of the flag page's forms, shown next to that form.

    Attributes:
        form: which form (``"rule"``, ``"variant"``...).
        message: what was wrong, without the pointer.
        pointer: the JSON pointer of the bad field, relative to the flag, or None.
    """

    form: str
    message: str
    pointer: str | None


def create_ui(
    flags: Flags,
    *,
    token: str,
    viewer_token: str | None = None,
    mode: str = "on",
    banner: str | None = None,
    banner_colour: str = "red",
    allow_create: bool = True,
    allow_delete: bool = True,
    events: FlagEvents | None = None,
    cluster: Callable[[], dict[str, Any]] | None = None,
    session_max_age_s: int = 8 * 3600,
) -> Starlette:
    """Build the web UI over ``flags``, an ASGI app to mount anywhere
    (``Mount("/ui", app=create_ui(...))``; every URL it renders starts with the
    path it is mounted on).

    Args:
        flags: a `FlagStore`, called directly (run the UI in the node's own trio
            thread, as ``chorus serve`` does), or a `FlagClient`, called through
            ``anyio.to_thread`` (a host app on asyncio, FastAPI say).
        token: the admin token: logging in with it gives write rights.
        viewer_token: logging in with it gives a read-only session; None: none.
        mode: ``"on"``, or ``"read-only"``: no write control is rendered and every
            write is refused with 403, whatever the role.
        banner: text shown atop every page (``"PRODUCTION"``); None: no banner.
        banner_colour: the banner's colour, one of `BANNER_COLOURS`.
        allow_create, allow_delete: False hides the create form (the delete form)
            and refuses the action with 403; without create, so is any write on a
            name the cluster holds no gate or metadata for (it would create it).
        events: the change feed (`flags.FlagEvents`) served at ``events``
            to logged-in sessions; None: no live updates.
        cluster: returns the ``/cluster`` document (with ``propagation`` and
            ``member_events`` if known); None: no cluster page. Called like the
            store: directly for a `FlagStore`, in a worker thread otherwise.
        session_max_age_s: how long a session lasts after its cookie was last
            written (at log in, and after each change made through the UI, which
            leaves a notice in it), in seconds.

    Raises:
        ValueError: an empty token, a viewer token equal to it, an unknown mode or
            banner colour, or a session age under one second.
    """
    check_tokens(token, viewer_token)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r:.60}")
    if banner_colour not in BANNER_COLOURS:
        raise ValueError(
            f"banner_colour must be one of {BANNER_COLOURS}, got {banner_colour!r:.60}"
        )
    if session_max_age_s < 1:
        raise ValueError(f"session_max_age_s must be at least 1, got {session_max_age_s!r}")
    tokens = [(token.encode(), "admin")]
    viewer_mark = None
    if viewer_token is not None:
        tokens.append((viewer_token.encode(), "viewer"))
        viewer_mark = hmac.new(token.encode(), viewer_token.encode(), "sha256").hexdigest()
    ui = _UI(
        flags,
        tokens,
        viewer_mark,
        read_only=mode == "read-only",
        banner=banner,
        banner_colour=banner_colour,
        allow_create=allow_create,
        allow_delete=allow_delete,
        feed=events,
        cluster_document=cluster,
        session_expiry=functools.partial(
            session_expiry, key=session_key(token), max_age_s=session_max_age_s
        ),
    )
    return Starlette(
        routes=ui.routes(),
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(Sessions, secret_key=session_key(token), max_age_s=session_max_age_s),
        ],
    )


def _flag_path(name: str, verb: str = "flags") -> str:
    """The path below the UI's root of a flag's page (or of the action ``verb`` on
    it): the name percent-encoded, ``/`` too, and last."""
    return f"/{verb}/{quote(name, safe='')}"


def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@attrs.define(eq=False)
class _UI:
    """The handlers of one `create_ui` app and the settings they share.

    Attributes:
        tokens: ``(token, role)`` pairs a log in is compared with.
        viewer_mark: a viewer session keeps it, and holds only while it matches:
            ``HMAC-SHA256(admin token, viewer token)``, so that a new viewer token
            voids the sessions of the old one (a new admin token voids them all:
            it signs them). None: no viewer token.
    """

    flags: Flags
    tokens: list[tuple[bytes, str]]
    viewer_mark: str | None
    read_only: bool
    banner: str | None
    banner_colour: str
    allow_create: bool
    allow_delete: bool
    feed: FlagEvents | None
    cluster_document: Callable[[], dict[str, Any]] | None
    session_expiry: Callable[[Request], float | None]
    templates: jinja2.Environment = attrs.field(factory=_templates)

    def routes(self) -> list[Route | Mount]:
        """Every route of the app (see the module notes)."""
        # The verb comes first and the name last, as {name:path}: a name an older
        # version wrote may hold a "/" (%2F in our URLs, decoded before routing), and
        # "a/disable" must be the page of that flag, not the disable page of "a".
        routes: list[Route | Mount] = [
            Route("/", self.flags_page, methods=["GET"]),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/create", self.create, methods=["POST"]),
            Route("/gates/{name:path}", self.set_gate, methods=["POST"]),
            Route("/remove/{name:path}", self.remove_gate, methods=["POST"]),
            Route("/disable/{name:path}", self.disable_page, methods=["GET"]),
            Route("/disable/{name:path}", self.disable, methods=["POST"]),
            Route("/metadata/{name:path}", self.set_metadata, methods=["POST"]),
            Route("/restore/{name:path}", self.restore, methods=["POST"]),
            Route("/delete/{name:path}", self.delete, methods=["POST"]),
            Route("/flags/{name:path}", self.flag_page, methods=["GET"]),
            Route("/audit", self.audit_page, methods=["GET"]),
            *(
                Route(f"/{verb}/{{name:path}}", self._typed_handler(verb), methods=["POST"])
                for verb in _TYPED_WRITES
            ),
            Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        ]
        if self.cluster_document is not None:
            routes.append(Route("/cluster", self.cluster_page, methods=["GET"]))
        if self.feed is not None:
            routes.append(Route("/events", self.events, methods=["GET"]))
        return routes

    # -- helpers -----------------------------------------------------------------------

    async def _call(self, fn: Callable[[Any], T]) -> T:
        """``fn(flags)``: here for a `FlagStore` (we run in its node's thread), in a
        worker thread for a `FlagClient` (whose calls block on its node's thread)."""
        if isinstance(self.flags, FlagStore):
            return fn(self.flags)
        return await anyio.to_thread.run_sync(fn, self.flags)

    def _role(self, request: Request) -> str | None:
        """The session's role: ``"admin"``, ``"viewer"``, or None (not logged in)."""
        role = request.session.get("role")
        if role == "admin":
            return "admin"
        mark = request.session.get("viewer")
        if role == "viewer" and self.viewer_mark is not None and isinstance(mark, str):
            return "viewer" if hmac.compare_digest(mark, self.viewer_mark) else None
        return None

    def _can_write(self, request: Request) -> bool:
        return not self.read_only and self._role(request) == "admin"

    def _render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        role = self._role(request)
        page = {
            "root": root,
            "flag_url": lambda name: root + _flag_path(name),
            "action_url": lambda verb, name: root + _flag_path(name, verb),
            "csrf": csrf_token(request),
            "role": role,
            "can_write": role is not None and self._can_write(request),
            "allow_create": self.allow_create,
            "allow_delete": self.allow_delete,
            "banner": self.banner,
            "banner_colour": self.banner_colour,
            "has_cluster": self.cluster_document is not None,
            "events_url": f"{root}/events" if self.feed is not None and role else None,
            "notice": request.session.pop("notice", None) if role else None,
            "error": None,
        }
        page.update(context)
        html = self.templates.get_template(template).render(page)
        return HTMLResponse(html, status_code=status)

    def _redirect(self, request: Request, path: str, notice: str | None = None) -> Response:
        if notice is not None:
            request.session["notice"] = notice
        return RedirectResponse(request.scope.get("root_path", "") + path, status_code=303)

    def _author(self, request: Request) -> str:
        name = request.session.get("name")
        return f"ui:{name}" if isinstance(name, str) and name else "ui"

    async def _write_form(
        self, request: Request, *, forbidden: bool = False
    ) -> dict[str, str] | Response:
        """The checked form of a write, or the response refusing it: 401 without a
        session, 403 (CSRF, origin, mode, role, or ``forbidden``)."""
        if self._role(request) is None:
            return self._refusal(request, 401, "log in first")
        try:
            form = await read_form(request)
        except Refused as exc:
            log.warning("ui: refused POST %s: %s", request.url.path, exc)
            return self._refusal(request, exc.status, str(exc))
        if forbidden or not self._can_write(request):
            return self._refusal(request, 403, "this session may not change flags here")
        return form

    def _refusal(self, request: Request, status: int, message: str) -> Response:
        return self._render(request, "error.html", status, title="Refused", error=message)

    async def _apply(self, write: Callable[[Any], object]) -> object:
        """Run a store write; its refusal becomes `_Failed` (503 or 422)."""
        try:
            return await self._call(write)
        except WriteRefused as exc:
            raise _Failed(503, f"this node takes no writes now: {exc}") from None
        except FlagFormatError as exc:
            raise _Failed(422, str(exc), exc.pointer, exc.message) from None
        except ValueError as exc:  # FlagFormatError and RestoreError too
            raise _Failed(422, str(exc)) from None

    # -- the session -------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        if self._role(request) is not None:
            return self._redirect(request, "/")
        return self._render(request, "login.html", title="Log in")

    async def login(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except Refused as exc:
            return self._refusal(request, exc.status, str(exc))
        given = form.get("token", "").encode()
        role = None
        for expected, which in self.tokens:  # every one compared: no timing tell
            if hmac.compare_digest(given, expected):
                role = which
        if role is None:
            log.warning("ui: a log in with a wrong token")
            return self._render(
                request, "login.html", 401, title="Log in", error="That token is not valid."
            )
        request.session.clear()  # the pre-login CSRF token goes: the next page makes one
        request.session["role"] = role
        if role == "viewer":
            request.session["viewer"] = self.viewer_mark
        # Printable characters only: a newline or a control character in an author
        # would forge lines wherever the audit log is printed (`chorus flags audit`).
        name = "".join(c for c in form.get("name", "") if c.isprintable())
        request.session["name"] = name.strip()[:MAX_AUTHOR_CHARS]
        log.info("ui: logged in as %s", role)
        return self._redirect(request, "/")

    async def logout(self, request: Request) -> Response:
        try:
            await read_form(request)
        except Refused as exc:
            return self._refusal(request, exc.status, str(exc))
        request.session.clear()
        return self._redirect(request, "/login")

    def _guard_page(self, request: Request) -> Response | None:
        if self._role(request) is None:
            return self._redirect(request, "/login")
        return None

    # -- the flags page ----------------------------------------------------------------

    async def flags_page(
        self, request: Request, *, status: int = 200, error: str | None = None
    ) -> Response:
        denied = self._guard_page(request)
        if denied is not None:
            return denied
        query = request.query_params.get("q", "")[:MAX_NAME_CHARS]
        now_ms = int(time.time() * 1000)
        rows = await self._call(lambda f: _views.flag_rows(f, query, now_ms))
        return self._render(
            request,
            "flags.html",
            status,
            title="Flags",
            rows=rows,
            query=query,
            error=error,
            when=_views.when,
        )

    async def create(self, request: Request) -> Response:
        form = await self._write_form(request, forbidden=not self.allow_create)
        if isinstance(form, Response):
            return form
        name = form.get("name", "").strip()
        if not valid_name(name):
            return await self.flags_page(
                request,
                status=422,
                error=f"A flag name is 1 to {MAX_NAME_CHARS} ASCII letters, digits or . _ - : @ +",
            )
        author = self._author(request)
        try:
            created = await self._apply(lambda f: _create(f, name, author))
        except _Failed as exc:
            return await self.flags_page(request, status=exc.status, error=exc.message)
        notice = f"Created {name}." if created else f"{name} already exists."
        return self._redirect(request, _flag_path(name), notice)

    # -- the flag page -----------------------------------------------------------------

    async def flag_page(
        self,
        request: Request,
        *,
        status: int = 200,
        error: str | None = None,
        form_error: FormError | None = None,
        kept: dict[str, str] | None = None,
    ) -> Response:
        denied = self._guard_page(request)
        if denied is not None:
            return denied
        name = str(request.path_params["name"])
        query = request.query_params
        actor = query.get("actor", "").strip()[:MAX_NAME_CHARS]
        groups_text = query.get("groups", "")[: 20 * MAX_NAME_CHARS]
        attributes_text = query.get("attrs", "")[: _forms.MAX_FIELD_CHARS]
        attributes, attributes_error = _forms.attributes(attributes_text)
        evaluate = any(field in query for field in ("actor", "groups", "attrs"))
        now_ms = int(time.time() * 1000)

        def read(flags: Any) -> dict[str, Any]:
            flag = flags.flag(name)
            known = flags.known(name) or flag.has_gates or bool(flags.metadata(name))
            groups = _views.split_groups(groups_text)
            verdict = flags.explain(name, actor or None, groups) if evaluate else None
            evaluation = (
                flags.evaluate(
                    name, None, actor=actor or None, groups=groups, attributes=attributes
                )
                if evaluate and attributes_error is None
                else None
            )
            return {
                "flag": flag,
                "known": known,
                "audit": flags.audit(name, limit=AUDIT_ROWS),
                "verdict": verdict,
                "evaluation": evaluation,
                "typed": _views.typed_view(flag, flags.segments(), now_ms),
            }

        found = await self._call(read)
        typed: _views.TypedView = found["typed"]
        edit = next((r for r in typed.rules if r.id == query.get("edit")), None)
        rule_form: dict[str, str] = {"rule_id": edit.id, **edit.form} if edit is not None else {}

        def field(form: str, key: str, default: str = "") -> str:
            """A field's value: what the user sent when their post of ``form`` was
            refused, else ``default``."""
            if form_error is not None and form_error.form == form and kept is not None:
                return kept.get(key, "")
            if form == "rule" and not default:
                return rule_form.get(key, "")
            return default

        if not found["known"] and not found["audit"] and error is None and form_error is None:
            return self._render(
                request, "error.html", 404, title="No such flag", error=f"No flag named {name}."
            )
        return self._render(
            request,
            "flag.html",
            status,
            title=name,
            name=name,
            gates=_views.gates(found["flag"]),
            state=_views.state_text(found["flag"]),
            actor=actor,
            groups=groups_text,
            attributes=attributes_text,
            attributes_error=attributes_error,
            when=_views.when,
            what=_views.what,
            json_text=_views.json_text,
            types=TYPES,
            form_error=form_error,
            field=field,
            editing=edit.id if edit is not None else None,
            error=error,
            **found,
        )

    async def _flag_write(
        self,
        request: Request,
        write: Callable[[str, dict[str, str], str], Callable[[Any], object] | str],
        *,
        forbidden: bool = False,
        done: Callable[[str], tuple[str, str]] | None = None,
        form_id: str | None = None,
    ) -> Response:
        """A write on the flag page: the checks, ``write(name, form, author)`` (a
        function of the store to run, or an error text for bad input, 422; it may
        raise `FlagFormatError` too), then a redirect to the flag page (or
        ``done(name)``'s path and notice). With ``form_id``, a refusal is shown next
        to that form, with what the user typed."""
        form = await self._write_form(request, forbidden=forbidden)
        if isinstance(form, Response):
            return form
        name = str(request.path_params["name"])
        if not self.allow_create and not await self._call(lambda f: _exists(f, name)):
            # A write on a name with no gate and no metadata would create the flag.
            return self._refusal(request, 403, "creating flags is off in this UI")
        try:
            try:
                action = write(name, form, self._author(request))
            except FlagFormatError as exc:
                raise _Failed(422, str(exc), exc.pointer, exc.message) from None
            if isinstance(action, str):
                raise _Failed(422, action)
            result = await self._apply(action)
        except _Failed as exc:
            if form_id is not None and exc.status == 422:
                shown = FormError(form_id, exc.detail, exc.pointer)
                return await self.flag_page(request, status=exc.status, form_error=shown, kept=form)
            return await self.flag_page(request, status=exc.status, error=exc.message)
        if result is False:  # restore and delete: nothing differed, nothing written
            return self._redirect(request, _flag_path(name), "Nothing to change: no write.")
        path, notice = done(name) if done is not None else (_flag_path(name), "Saved.")
        return self._redirect(request, path, notice)

    async def set_gate(self, request: Request) -> Response:
        return await self._flag_write(request, _gate_write)

    async def remove_gate(self, request: Request) -> Response:
        return await self._flag_write(request, _remove_write)

    async def disable_page(self, request: Request) -> Response:
        denied = self._guard_page(request)
        if denied is not None:
            return denied
        if not self._can_write(request):
            return self._refusal(request, 403, "this session may not change flags here")
        name = str(request.path_params["name"])
        return self._render(request, "disable.html", title=f"Disable {name}?", name=name)

    async def disable(self, request: Request) -> Response:
        return await self._flag_write(
            request, lambda name, form, author: lambda f: f.disable(name, author=author)
        )

    async def set_metadata(self, request: Request) -> Response:
        return await self._flag_write(
            request, lambda name, form, author: lambda f: _save_metadata(f, name, form, author)
        )

    async def restore(self, request: Request) -> Response:
        return await self._flag_write(
            request,
            lambda name, form, author: (
                lambda f: f.restore(name, form.get("timestamp", ""), author=author)
            ),
        )

    async def delete(self, request: Request) -> Response:
        return await self._flag_write(
            request,
            _delete_write,
            forbidden=not self.allow_delete,
            done=lambda name: ("/", f"Deleted {name}."),
        )

    def _typed_handler(self, verb: str) -> Callable[[Request], Any]:
        """The handler of the typed-flag write ``verb`` (see `_TYPED_WRITES`)."""
        write, form_id = _TYPED_WRITES[verb]

        async def handle(request: Request) -> Response:
            return await self._flag_write(request, write, form_id=form_id)

        return handle

    # -- the history of every flag ------------------------------------------------------

    async def audit_page(self, request: Request) -> Response:
        denied = self._guard_page(request)
        if denied is not None:
            return denied
        entries = await self._call(lambda f: f.audit(limit=AUDIT_ROWS))
        return self._render(
            request,
            "audit.html",
            title="History",
            audit=entries,
            when=_views.when,
            what=_views.what,
        )

    # -- the cluster page and the events -----------------------------------------------

    async def cluster_page(self, request: Request) -> Response:
        denied = self._guard_page(request)
        if denied is not None:
            return denied
        assert self.cluster_document is not None
        cluster = self.cluster_document
        document = await self._call(lambda _: cluster())
        events = [e for e in document.get("member_events") or () if isinstance(e, dict)]
        return self._render(
            request,
            "cluster.html",
            title="Cluster",
            doc=_fields(document, _NODE_FIELDS),
            peers=[
                _fields(p, _PEER_FIELDS) for p in document.get("peers") or () if isinstance(p, dict)
            ],
            propagation=_charts.propagation_chart(document.get("propagation") or ()),
            member_events=[_fields(e, ("at", "event", "member")) for e in events],
            timeline=_charts.events_chart(events),
        )

    async def events(self, request: Request) -> Response:
        if self._role(request) is None:
            return PlainTextResponse("log in first", status_code=401)
        assert self.feed is not None
        # The session is checked here only: the stream ends when the session expires.
        return self.feed.response(request, until=self.session_expiry(request))


_NODE_FIELDS = (
    "node",
    "incarnation",
    "ready",
    "not_ready_reason",
    "synced",
    "held",
    "clock_offset_ms",
)
_PEER_FIELDS = (
    "id",
    "address",
    "incarnation",
    "member",
    "state",
    "connected",
    "last_heard",
    "clock_offset_ms",
    "dial_error",
    "refused",
)


def _fields(document: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """``names`` of ``document``, each None when missing: the template reads them all."""
    return {name: document.get(name) for name in names}


# -- the writes, as functions of the store -------------------------------------------


def _exists(flags: Any, name: str) -> bool:
    """Whether the cluster (or the store's defaults) holds the flag: a gate, metadata
    or a default."""
    return bool(flags.known(name) or flags.metadata(name) or flags.flag(name).has_gates)


def _create(flags: Any, name: str, author: str) -> bool:
    """Create ``name`` with an empty description (so that it is listed with no
    gate yet); False when it exists already (nothing written)."""
    if _exists(flags, name):
        return False
    flags.set_metadata(name, description="", author=author)
    return True


def _percentage(text: str, what: str) -> float | str:
    """A percentage field (0 to 100) as a ratio, or the error text."""
    try:
        value = float(text.strip().rstrip("%").strip())
    except ValueError:
        return f"{what} must be a number from 0 to 100"
    if not 0 <= value <= 100:  # NaN fails too
        return f"{what} must be a number from 0 to 100"
    return value / 100


def _gate_write(name: str, form: dict[str, str], author: str) -> Callable[[Any], object] | str:
    """The write of a gates form: its ``action`` button and its field."""
    action = form.get("action", "")
    if action == "enable":
        return lambda f: f.enable(name, author=author)
    for kind in ("actor", "group"):
        if action in (f"{kind}-enable", f"{kind}-deny"):
            target = form.get(kind, "").strip()
            if not target:
                return f"Type the {kind} first."
            verb = "enable" if action.endswith("enable") else "disable"
            method = f"{verb}_for_{kind}"
            return lambda f: getattr(f, method)(name, target, author=author)
    for kind, what in (("percentage_of_actors", "actors"), ("percentage_of_time", "time")):
        if action == kind:
            ratio = _percentage(form.get(kind, ""), f"The percentage of {what}")
            if isinstance(ratio, str):
                return ratio
            return lambda f: getattr(f, f"enable_{kind}")(name, ratio, author=author)
    return f"Unknown action {action[:40]!r}."


def _remove_write(name: str, form: dict[str, str], author: str) -> Callable[[Any], object] | str:
    """The write of a gate's Remove button: ``kind`` and, for actors and groups,
    ``target``."""
    kind, target = form.get("kind", ""), form.get("target", "")
    if kind == "actor":
        return lambda f: f.clear(name, actor=target, author=author)
    if kind == "group":
        return lambda f: f.clear(name, group=target, author=author)
    return lambda f: f.clear(name, gate=kind, author=author)


def _save_metadata(flags: Any, name: str, form: dict[str, str], author: str) -> None:
    """Write the metadata fields of the form that differ from the flag's, if any."""
    fields = _views.changed_metadata(flags.flag(name), form)
    if fields:
        flags.set_metadata(name, author=author, **fields)


def _delete_write(name: str, form: dict[str, str], author: str) -> Callable[[Any], object] | str:
    if form.get("confirm", "") != name:
        return f"The name typed does not match: type {name} to delete it."
    return lambda f: f.delete(name, author=author)


# -- the writes of typed flags ---------------------------------------------------------

Write = Callable[[str, dict[str, str], str], Callable[[Any], object] | str]


def _type_write(name: str, form: dict[str, str], author: str) -> Callable[[Any], object] | str:
    """Set the value type, keeping the variants (each must be of the new type)."""
    kind = form.get("type", "")
    if kind not in TYPES:
        raise FlagFormatError("/type", f"one of {', '.join(TYPES)}")
    return lambda f: f.set_variants(name, dict(f.flag(name).variants), type=kind, author=author)


def _variant_write(name: str, form: dict[str, str], author: str) -> Callable[[Any], object] | str:
    """Add or replace one variant; its value is JSON."""
    variant = form.get("variant", "").strip()
    value = _forms.json_value(form.get("value", ""), "/variants" + pointer_part(variant))
    return lambda f: f.set_variant(name, variant, value, author=author)


def _delete_variant_write(
    name: str, form: dict[str, str], author: str
) -> Callable[[Any], object] | str:
    variant = form.get("variant", "")
    return lambda f: f.delete_variant(name, variant, author=author)


def _off_variant_write(
    name: str, form: dict[str, str], author: str
) -> Callable[[Any], object] | str:
    """Set the off variant; an empty field removes it."""
    variant = form.get("variant", "").strip() or None
    return lambda f: f.set_off_variant(name, variant, author=author)


def _fallthrough_write(
    name: str, form: dict[str, str], author: str
) -> Callable[[Any], object] | str:
    """Set the fallthrough (``green``, or ``green=50, blue=50``); empty removes it."""
    serve = _forms.serve(form.get("serve", ""), "/fallthrough")
    return lambda f: f.set_fallthrough(name, serve, author=author)


def _rule_write(name: str, form: dict[str, str], author: str) -> Callable[[Any], object] | str:
    """Add or replace a rule: conditions one a line, segments, what it serves, and
    where it goes (before or after another rule; else where it was, or last)."""
    rule_id = form.get("rule_id", "").strip()
    at = "/rules" + pointer_part(rule_id)
    conditions = _forms.conditions(form.get("conditions", ""), at + "/conditions")
    segments = _forms.names(form.get("segments", ""))
    serve = _forms.serve(form.get("serve", ""), at + "/serve")
    if serve is None:
        raise FlagFormatError(
            at + "/serve", "say what the rule serves: green, or green=50, blue=50"
        )
    place, other = form.get("place", ""), form.get("other", "").strip()
    if place not in ("", "before", "after"):
        raise FlagFormatError(at + "/position", "before, after, or where it is")
    if place and not other:
        raise FlagFormatError(at + "/position", f"which rule should it go {place}?")
    where = {place: other} if place else {}
    return lambda f: f.set_rule(
        name,
        rule_id,
        serve=serve,
        conditions=conditions,
        segments=segments,
        author=author,
        **where,
    )


def _delete_rule_write(
    name: str, form: dict[str, str], author: str
) -> Callable[[Any], object] | str:
    rule_id = form.get("rule_id", "")
    return lambda f: f.delete_rule(name, rule_id, author=author)


def _prerequisite_write(
    name: str, form: dict[str, str], author: str
) -> Callable[[Any], object] | str:
    """Require another flag to serve one of some variants (``on`` and ``off`` stand
    for ``true`` and ``false`` unless the other flag has variants of those names)."""
    other = form.get("other", "").strip()
    wanted = _forms.names(form.get("variants", ""))
    if not wanted:
        raise FlagFormatError("/prerequisites" + pointer_part(other), "name a variant")

    def write(flags: Any) -> None:
        variants = flags.flag(other).variants if valid_name(other) else {}
        words = {"on": "true", "off": "false"}
        chosen = [v if v in variants else words.get(v, v) for v in wanted]
        flags.set_prerequisite(name, other, chosen, author=author)

    return write


def _delete_prerequisite_write(
    name: str, form: dict[str, str], author: str
) -> Callable[[Any], object] | str:
    other = form.get("other", "")
    return lambda f: f.delete_prerequisite(name, other, author=author)


def _delete_schedule_write(
    name: str, form: dict[str, str], author: str
) -> Callable[[Any], object] | str:
    schedule_id = form.get("schedule_id", "")
    return lambda f: f.delete_schedule(name, schedule_id, author=author)


#: The typed-flag writes: ``{verb: (write, the form its refusals show next to)}``.
_TYPED_WRITES: dict[str, tuple[Write, str | None]] = {
    "type": (_type_write, "type"),
    "variant": (_variant_write, "variant"),
    "delete-variant": (_delete_variant_write, None),
    "off-variant": (_off_variant_write, "off_variant"),
    "fallthrough": (_fallthrough_write, "fallthrough"),
    "rule": (_rule_write, "rule"),
    "delete-rule": (_delete_rule_write, None),
    "prerequisite": (_prerequisite_write, "prerequisite"),
    "delete-prerequisite": (_delete_prerequisite_write, None),
    "delete-schedule": (_delete_schedule_write, None),
}

"""What keeps the UI's forms and cookies safe: the session cookie, CSRF tokens, the
origin check, the form body limit and the headers on every response.

The session is Starlette's signed-cookie session (`SessionMiddleware`, itsdangerous
under it): the cookie holds the role and the CSRF token, signed, not encrypted. It
names no secret, so reading it gives nothing; forging it needs the signing key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

import itsdangerous
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..http import _Rejected, read_body

#: The session cookie's name.
COOKIE = "chorus_ui"
#: The largest form body accepted, in bytes: a description of 2,000 characters
#: percent-encoded takes at most 18 KB; the rest is room for the other fields.
MAX_FORM_BYTES = 64 * 1024
#: The most fields a form may have (ours have at most five).
MAX_FORM_FIELDS = 16
#: The Content-Security-Policy of every response: our own script and stylesheet,
#: no inline script or style, forms only to us, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def session_key(token: str) -> str:
    """The key sessions are signed with: ``HMAC-SHA256(token, b"chorus-ui-session")``
    in hex. Derived from the admin token, so sessions outlive a restart of the node
    and are void once the token changes."""
    return hmac.new(token.encode(), b"chorus-ui-session", hashlib.sha256).hexdigest()


class Sessions:
    """ASGI middleware: `SessionMiddleware` with the cookie's ``Path`` set to the
    path the UI is mounted on (the request's ASGI ``root_path``, ``/`` at the top)
    and ``Secure`` set when the request came over TLS (its ASGI ``scheme`` is
    ``https``; behind a proxy that ends TLS, have the server trust the proxy's
    forwarded headers so that the scheme says so). Decided per request, so one app
    mounted at two paths keeps two cookies. ``HttpOnly``, ``SameSite=Strict``,
    ``Max-Age`` of ``max_age_s`` seconds, which the signature's age enforces too.

    Args:
        app: the app to wrap.
        secret_key: the signing key (`session_key`).
        max_age_s: how long a session lasts after it was last written (at log in),
            in seconds.
    """

    _MAX_VARIANTS = 16  # (path, TLS) pairs kept: one or two per mount in practice

    def __init__(self, app: ASGIApp, *, secret_key: str, max_age_s: int) -> None:
        self._app = app
        self._secret_key = secret_key
        self._max_age_s = max_age_s
        self._variants: dict[tuple[str, bool], SessionMiddleware] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        variant = (scope.get("root_path") or "/", scope.get("scheme") == "https")
        middleware = self._variants.get(variant)
        if middleware is None:
            if len(self._variants) >= self._MAX_VARIANTS:
                self._variants.clear()
            middleware = self._variants[variant] = SessionMiddleware(
                self._app,
                secret_key=self._secret_key,
                session_cookie=COOKIE,
                max_age=self._max_age_s,
                path=variant[0],
                same_site="strict",
                https_only=variant[1],
            )
        await middleware(scope, receive, send)


class SecurityHeaders:
    """ASGI middleware: the CSP, ``nosniff`` and ``Referrer-Policy`` on every
    response, and ``Cache-Control: no-store`` on every one but static files."""

    def __init__(self, app: ASGIApp, *, static_prefix: str = "/static/") -> None:
        self._app = app
        self._static_prefix = static_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):  # Starlette keeps the mount path in path
            path = path[len(root) :]
        static = path.startswith(self._static_prefix)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                ours = (b"content-security-policy", b"cache-control")
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in ours]
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                ]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, with_headers)


def session_expiry(request: Request, *, key: str, max_age_s: int) -> float | None:
    """When the session cookie of ``request`` expires, in seconds since the epoch
    (the time it was signed plus ``max_age_s``); None without a valid cookie."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    try:
        _, signed_at = itsdangerous.TimestampSigner(key).unsign(
            cookie.encode("ascii", "replace"), max_age=max_age_s, return_timestamp=True
        )
    except itsdangerous.BadSignature:
        return None
    return signed_at.timestamp() + max_age_s


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made (and so the session cookie set) on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


class Refused(Exception):
    """A request the UI turns down before doing anything: ``status`` and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_form(request: Request) -> dict[str, str]:
    """The POSTed form of ``request``, checked: same origin, the session's CSRF token.

    Returns:
        ``{field: value}`` of the urlencoded body (the last value of a field given
        twice).

    Raises:
        Refused: (403) an ``Origin`` header whose host differs from ``Host``, or a
            missing or wrong ``csrf`` field; (415) not a urlencoded form; (400) a
            body that is not UTF-8, or has over `MAX_FORM_FIELDS` fields; (413,
            408) as `flags.http.read_body`, with `MAX_FORM_BYTES`.
    """
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc.lower() != (
        request.headers.get("host", "").lower()
    ):
        raise Refused(403, "this form was posted from another site: refused")
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise Refused(415, "forms are posted as application/x-www-form-urlencoded")
    try:
        raw = await read_body(request, MAX_FORM_BYTES)
        form = dict(
            parse_qsl(
                raw.decode("utf-8"),
                keep_blank_values=True,
                max_num_fields=MAX_FORM_FIELDS,
                errors="strict",
            )
        )
    except _Rejected as exc:
        raise Refused(exc.status, str(exc)) from None
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "the form is not UTF-8 text, or has too many fields") from None
    check_csrf(request.session, form.get("csrf", ""))
    return form


def check_csrf(session: Mapping[str, object], given: str) -> None:
    """Raise `Refused` (403) unless ``given`` is the session's CSRF token (compared
    in constant time)."""
    expected = session.get("csrf")
    if not (
        isinstance(expected, str)
        and expected
        and hmac.compare_digest(given.encode(), expected.encode())
    ):
        raise Refused(403, "the form's CSRF token is missing or wrong: reload the page")

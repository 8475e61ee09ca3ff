"""The ``chorus`` command: ``serve`` a node, manage ``flags``, run the ``demo``.

    chorus serve --node-id a --listen 127.0.0.1:7400 --http 127.0.0.1:8400
    chorus serve --node-id b --listen 127.0.0.1:7401 --http 127.0.0.1:8401 --join 127.0.0.1:7400
    chorus serve --node-id c --listen 0.0.0.0:7400 --advertise 10.0.0.3:7400 --join seeds:7400
    chorus flags enable new-checkout --url http://127.0.0.1:8400
    chorus flags get new-checkout --actor user-42
    chorus demo
    chorus secret > cluster.secret

Secrets never go on the command line of ``serve``: the cluster secret comes from
``--secret-file`` or ``CHORUS_SECRET``, the admin token from ``--token-file`` or
``CHORUS_TOKEN``. Exit codes: 0 success, 1 failure, 2 usage errors.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import os
import socket
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from . import _text
from ._schema import FlagFormatError

DEFAULT_URL = "http://127.0.0.1:8400"


class _Parser(argparse.ArgumentParser):
    """No abbreviated options: ``--token`` must not be taken for ``--token-file``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


DISTRIBUTION = "chorus-replicated"  # the name on the package index (pyproject.toml)


def _version() -> str:
    """The installed distribution's version, found from the ``flags`` package. Of the
    distributions that provide a top-level ``flags``, ours also provides
    ``transport``: an unrelated ``flags`` from the package index installed alongside
    is passed over. Where two of ours are (a virtualenv that still holds the install
    from before the rename), the one named `DISTRIBUTION` is the one reported."""
    providers = metadata.packages_distributions()
    ours = set(providers.get("transport", []))
    names = [n for n in providers.get(__package__ or "flags", []) if n in ours]
    names.sort(key=lambda name: name != DISTRIBUTION)
    for name in dict.fromkeys([*names, DISTRIBUTION]):
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return f"{DISTRIBUTION} (version unknown: not installed)"


class _Version(argparse.Action):
    """``--version``, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(_version())
        parser.exit()


def _read_secret(
    path: str | None,
    variable: str,
    what: str,
    parser: argparse.ArgumentParser,
    option: str | None = None,
) -> str:
    if path:
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            parser.error(f"cannot read the {what} file {path}: {exc.strerror}")
    else:
        value = os.environ.get(variable, "").strip()
    if not value:
        option = option or f"--{what.split()[-1]}-file"
        parser.error(f"the {what} is required: {option} FILE or {variable}")
    return value


def _serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import trio

    from transport import WeakSecretError, check_secret
    from transport._tcp import parse_address

    from ._logging import configure
    from .serve import ServeConfig, serve
    from .ui import BANNER_COLOURS

    secret = _read_secret(args.secret_file, "CHORUS_SECRET", "cluster secret", parser)
    try:
        check_secret(secret)
    except WeakSecretError as exc:
        parser.error(str(exc))
    token = _read_secret(args.token_file, "CHORUS_TOKEN", "admin token", parser)
    viewer_token = None
    if args.viewer_token_file or os.environ.get("CHORUS_VIEWER_TOKEN", "").strip():
        viewer_token = _read_secret(
            args.viewer_token_file,
            "CHORUS_VIEWER_TOKEN",
            "viewer token",
            parser,
            "--viewer-token-file",
        )
        if viewer_token == token:
            parser.error("the viewer token must differ from the admin token")
    if args.bootstrap_expect is not None:
        if args.bootstrap_expect < 1:
            parser.error("--bootstrap-expect takes a number of nodes, at least 1")
        if args.bootstrap:
            parser.error("give --bootstrap or --bootstrap-expect, not both")
    addresses = [("--listen", args.listen), ("--http", args.http)]
    if args.advertise is not None:
        addresses.append(("--advertise", args.advertise))
    for option, value in addresses:
        try:
            parse_address(value)
        except ValueError as exc:
            _fail(parser, f"{option}: {exc} (e.g. 127.0.0.1:7400, or [::1]:7400)")
    join = tuple(s.strip() for s in args.join.split(",") if s.strip())
    for seed in join:
        try:
            parse_address(seed)
        except ValueError as exc:
            _fail(parser, f"--join: {exc}")
    defaults = {}
    if args.defaults:
        # A flag with metadata only has no gate to answer with: it is no default.
        flags = read_export(args.defaults, "--defaults", parser)
        defaults = {f.name: f for f in flags if f.has_gates}
    if args.ui_banner_colour not in BANNER_COLOURS:
        parser.error(f"--ui-banner-colour: choose from {', '.join(BANNER_COLOURS)}")
    configure(args.log_level, args.log_format)
    config = ServeConfig(
        node_id=args.node_id,
        listen=args.listen,
        advertise=args.advertise,
        join=join,
        http=args.http,
        secret=secret,
        token=token,
        viewer_token=viewer_token,
        ui=args.ui,
        ui_banner=args.ui_banner,
        ui_banner_colour=args.ui_banner_colour,
        ui_create=not args.ui_no_create,
        ui_delete=not args.ui_no_delete,
        reads_need_token=args.reads_need_token,
        defaults=defaults,
        node_options={
            "join_timeout_s": args.join_timeout,
            "bootstrap": args.bootstrap,
            "bootstrap_expect": args.bootstrap_expect,
        },
    )
    try:
        trio.run(serve, config)
    except (OSError, BaseExceptionGroup) as exc:
        failure = _bind_failure(exc)
        if failure is None:
            raise
        which = (
            "--http " + args.http
            if _raised_in(failure, "hypercorn")
            else ("--listen " + args.listen)
        )
        reason = failure.strerror or str(failure)
        _fail(parser, f"cannot listen on {which}: {reason}")
    return 0


def _fail(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    """One line, ``chorus serve: error: ...``, and exit 2 (no usage: the line was valid)."""
    parser.exit(2, f"{parser.prog}: error: {message}\n")


def _bind_failure(exc: BaseException) -> OSError | None:
    """The OSError that stopped ``serve`` from starting (within exception groups)."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _bind_failure(inner)
            if found is not None:
                return found
    return None


def _raised_in(exc: BaseException, package: str) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if f"{os.sep}{package}{os.sep}" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _secret(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from transport import new_secret

    print(new_secret())
    return 0


# -- chorus flags --------------------------------------------------------------------


class _Once(argparse.Action):
    """Store a single value; refuse the option given twice (never keep one silently)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"{option_string} given twice (it takes one value)")
        setattr(namespace, self.dest, values)


def _default_author() -> str:
    user = os.environ.get("USER") or os.environ.get("USERNAME")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (containers)
            user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _check_name(name: str, parser: argparse.ArgumentParser) -> str:
    if not name:
        parser.error("the flag name is empty")
    bad = next((c for c in name if not c.isprintable() or c.isspace()), None)
    if bad is not None:
        parser.error(f"flag names have no whitespace or control characters; {name!r} has {bad!r}")
    return name


def _flag_path(name: str) -> str:
    """``/flags/<name>``, the name percent-encoded whole (``?``, ``#``, ``/`` included)."""
    return "/flags/" + urllib.parse.quote(name, safe="")


def _token(args: argparse.Namespace, parser: argparse.ArgumentParser, *, required: bool) -> str:
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            parser.error(f"cannot read the token file {args.token_file}: {exc.strerror}")
        if not token:
            parser.error(f"the token file {args.token_file} is empty")
        return token
    token = os.environ.get("CHORUS_TOKEN", "").strip()
    if required and not token:
        parser.error("CHORUS_TOKEN is not set (or pass --token-file)")
    return token


def _gates(gates: dict[str, bool]) -> str:
    return ", ".join(f"{k}{'' if on else ' (deny)'}" for k, on in sorted(gates.items())) or "-"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _table(flags: list[dict[str, Any]], *, evaluated: bool = False) -> str:
    """Flags as a table; ``evaluated`` adds their ``enabled`` and ``reason`` first."""
    rows: list[tuple[str, ...]] = [("FLAG", "BOOLEAN", "ACTORS", "GROUPS", "% ACTORS", "% TIME")]
    if evaluated:
        rows = [("FLAG", "ENABLED", "BY", *rows[0][1:])]
    for f in flags:
        boolean = {True: "on", False: "off", None: "-"}[f["boolean"]]
        answer = ("yes" if f["enabled"] else "no", f["reason"]) if evaluated else ()
        rows.append(
            (
                f["name"],
                *answer,
                boolean,
                _gates(f["actors"]),
                _gates(f["groups"]),
                _percent(f["percentage_of_actors"]),
                _percent(f["percentage_of_time"]),
            )
        )
    return _columns(rows)


def _columns(rows: list[tuple[str, ...]]) -> str:
    """Rows as left-aligned columns two spaces apart, the first row the heading."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


#: One request of a write: (method, path, description, JSON body or query parameters).
_Request = tuple[str, str, str, dict[str, Any]]
#: The actions that write, and so need the token and carry an author.
_WRITES = ("enable", "disable", "clear", "meta", "delete")


def _changes(args: argparse.Namespace) -> list[_Request]:
    """The requests a write makes: one per change, in the order given on the line."""
    path = _flag_path(args.name)
    author = {"author": args.author}
    if args.action == "delete":
        return [("DELETE", path, "deleted (gates and metadata)", author)]
    if args.action == "meta":
        fields = {
            field: value
            for field in ("description", "owner", "expires")
            if (value := getattr(args, field)) is not None
        }
        described = ", ".join(f"{k} {v!r}" for k, v in fields.items())
        return [("PUT", path + "/meta", f"set {described}", {**fields, **author})]
    verb = {"enable": "enabled", "disable": "disabled", "clear": "cleared"}[args.action]
    if args.action == "clear":
        clears: list[_Request] = [
            ("DELETE", path, f"{verb} the gate of actor {a}", {"actor": a, **author})
            for a in args.actor or []
        ]
        clears += [
            ("DELETE", path, f"{verb} the gate of group {g}", {"group": g, **author})
            for g in args.group or []
        ]
        return clears or [("DELETE", path, f"{verb} every gate", {"gates": "all", **author})]
    on = args.action == "enable"
    puts: list[_Request] = [
        ("PUT", path, f"{verb} for actor {a}", {"actor": a, "enabled": on, **author})
        for a in args.actor or []
    ]
    puts += [
        ("PUT", path, f"{verb} for group {g}", {"group": g, "enabled": on, **author})
        for g in args.group or []
    ]
    for field, what in (("percentage_of_actors", "actors"), ("percentage_of_time", "checks")):
        value = getattr(args, field, None)
        if value is not None:
            puts.append(
                ("PUT", path, f"{verb} for {value:.0%} of {what}", {field: value, **author})
            )
    return puts or [("PUT", path, f"{verb} for everyone", {"enabled": on, **author})]


def _audit_table(entries: list[dict[str, Any]]) -> str:
    """Audit records as a table, the HLC timestamp shown as its UTC wall time."""
    from hlc import Timestamp

    rows: list[tuple[str, ...]] = [
        ("WHEN (UTC)", "FLAG", "AUTHOR", "ACTION", "TARGET", "VALUE", "NODE")
    ]
    for e in entries:
        try:
            wall_ms = Timestamp.parse(e["timestamp"]).wall_ms
            when = datetime.datetime.fromtimestamp(wall_ms / 1000, datetime.UTC)
            shown = when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        except (ValueError, OverflowError, OSError):
            shown = e["timestamp"]
        value = "-" if e["value"] is None else json.dumps(e["value"])
        rows.append(
            (
                shown,
                e["flag"],
                e["author"] or "-",
                e["action"],
                e["target"] or "-",
                value,
                e["node"],
            )
        )
    return _columns(rows)


def _failed(response: Any) -> str:
    try:
        document = response.json()
    except ValueError:
        document = {"error": response.text.strip()}
    message = document.get("error", document) if isinstance(document, dict) else document
    return f"{response.status_code}: {message}"


def _request(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    where: str,
    send: Callable[[Any], Any],
    *,
    writing: bool,
) -> Any:
    """``send(client)`` with an httpx client for ``args.url`` carrying the token (which
    a write must have). Returns its response, or the exit code when the node could
    not be reached, answered 4xx/5xx (said on stderr), or ``send`` returned one."""
    import httpx

    token = _token(args, parser, required=writing)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = args.url.rstrip("/")
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=args.timeout) as client:
            response = send(client)
    except httpx.HTTPError as exc:
        print(f"{where}: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    except httpx.InvalidURL as exc:
        print(f"{where}: bad URL {url}: {exc}", file=sys.stderr)
        return 1
    if isinstance(response, int) or response.status_code < 400:
        return response
    hint = " (set CHORUS_TOKEN or pass --token-file)" if response.status_code == 401 else ""
    print(f"{where}: {_failed(response)}{_pointer_text(response)}{hint}", file=sys.stderr)
    return 1


def _pointer_text(response: Any) -> str:
    """`` (at /conditions/0/op)`` for an error answer with a JSON pointer, else ``""``."""
    try:
        pointer = response.json().get("pointer")
    except (ValueError, AttributeError):
        pointer = None
    return f" (at {pointer or '/'})" if pointer is not None else ""


# -- typed flags: variants, rules, prerequisites, schedules, segments ----------------

#: The actions of typed flags that write.
_TYPED_WRITES = (
    "variants",
    "rule",
    "fallthrough",
    "off-variant",
    "prerequisite",
    "segment",
    "schedule",
)


def _json_value(text: str) -> Any:
    """A value given on the command line: JSON when it parses (``18``, ``true``,
    ``"18"``, ``{"a": 1}``), else the text itself (``fr``, ``1.2.3``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _condition(text: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """``--when 'ATTRIBUTE OP V1, V2'`` as a condition, in the web UI's syntax
    (`flags._text.conditions`)."""
    try:
        found = _text.conditions(text, "/conditions")
    except FlagFormatError as exc:
        parser.error(f"--when {text!r}: {exc.message}; e.g. --when 'country in fr, de'")
    if len(found) != 1:
        parser.error(f"--when takes one condition, e.g. 'country in fr, de'; got {text!r}")
    return found[0]


def _split(text: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """``--split green=50,blue=50`` as ``{"green": 50, "blue": 50}``, in the web UI's
    syntax (`flags._text.serve`)."""
    try:
        found = _text.serve(text, "/serve") if "=" in text else None
    except FlagFormatError as exc:
        parser.error(f"--split {text!r}: {exc.message}")
    if found is None or "split" not in found:
        parser.error(f"--split takes VARIANT=WEIGHT[,...], weights whole numbers; got {text!r}")
    return dict(found["split"])


def _serve_of(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    if (args.serve is None) == (args.split is None):
        parser.error("give --serve VARIANT or --split VARIANT=WEIGHT,...")
    if args.serve is not None:
        return {"variant": args.serve}
    return {"split": _split(args.split, parser)}


def _key_and_value(text: str, parser: argparse.ArgumentParser, option: str) -> list[Any]:
    """``KIND[:KEY...][=JSON]`` of ``schedule --set`` (with a value) and ``--unset``
    (without) as ``[kind, *key, value]``."""
    key, equals, value = text.partition("=")
    write: list[Any] = key.split(":")
    if option == "--set":
        if not equals:
            parser.error(
                f"--set takes KIND[:KEY]=JSON, e.g. boolean=true or actor:u1=false; got {text!r}"
            )
        write.append(_json_value(value))
    elif equals:
        parser.error(
            f"--unset takes KIND[:KEY], e.g. percentage_of_actors or actor:u1; got {text!r}"
        )
    return write


def _typed_changes(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[_Request]:
    """The request of a typed write: (method, path, description, body or query)."""
    path = _flag_path(args.name)
    author = {"author": args.author}
    action = args.action
    if action == "variants":
        variants = {}
        for item in args.variants:
            variant, equals, value = item.partition("=")
            if not equals:
                parser.error(f"variants are VARIANT=JSON, e.g. blue='\"#00f\"'; got {item!r}")
            try:
                variants[variant] = json.loads(value)
            except ValueError:
                parser.error(
                    f"the value of {variant} is not JSON: {value!r} (a string is '\"text\"')"
                )
        body: dict[str, Any] = {"variants": variants, **author}
        if args.type is not None:
            body["type"] = args.type
        shown = ", ".join(variants) or "none"
        return [("PUT", path + "/variants", f"variants set to {shown}", body)]
    if action == "rule":
        at = f"{path}/rules/{urllib.parse.quote(args.rule_id, safe='')}"
        if args.delete:
            return [("DELETE", at, f"rule {args.rule_id} deleted", author)]
        if args.before is not None and args.after is not None:
            parser.error("give --before or --after, not both")
        body = {
            "conditions": [_condition(c, parser) for c in args.when or []],
            "segments": args.segment or [],
            "serve": _serve_of(args, parser),
            **author,
        }
        for field in ("before", "after"):
            if getattr(args, field) is not None:
                body[field] = getattr(args, field)
        return [("PUT", at, f"rule {args.rule_id} set", body)]
    if action == "fallthrough":
        if args.delete:
            return [("DELETE", path + "/fallthrough", "fallthrough removed", author)]
        serve = _serve_of(args, parser)
        return [("PUT", path + "/fallthrough", "fallthrough set", {**serve, **author})]
    if action == "off-variant":
        if args.delete == (args.variant is not None):
            parser.error("give VARIANT or --delete")
        if args.delete:
            return [("DELETE", path + "/off_variant", "off variant removed", author)]
        body = {"variant": args.variant, **author}
        return [("PUT", path + "/off_variant", f"off variant set to {args.variant}", body)]
    if action == "prerequisite":
        at = f"{path}/prerequisites/{urllib.parse.quote(args.other, safe='')}"
        if args.delete == bool(args.variants):
            parser.error("give the variants OTHER must serve, or --delete")
        if args.delete:
            return [("DELETE", at, f"prerequisite {args.other} removed", author)]
        body = {"variants": args.variants, **author}
        shown = f"requires {args.other} to serve {', '.join(args.variants)}"
        return [("PUT", at, shown, body)]
    if action == "segment":
        at = "/segments/" + urllib.parse.quote(args.name, safe="")
        if args.delete == bool(args.when):
            parser.error("give --when conditions, or --delete")
        if args.delete:
            return [("DELETE", at, f"segment {args.name} deleted", author)]
        body = {"conditions": [_condition(c, parser) for c in args.when], **author}
        return [("PUT", at, f"segment {args.name} set", body)]
    at = f"{path}/schedules/{urllib.parse.quote(args.schedule_id, safe='')}"
    if args.cancel:
        if args.at or args.set or args.unset:
            parser.error("--cancel takes no --at, --set or --unset")
        return [("DELETE", at, f"schedule {args.schedule_id} removed", author)]
    if args.at is None or not (args.set or args.unset):
        parser.error("give --at and at least one --set or --unset (or --cancel)")
    at_value: Any = int(args.at) if args.at.isdigit() else args.at
    body = {
        "at": at_value,
        "set": [_key_and_value(w, parser, "--set") for w in args.set or []],
        "delete": [_key_and_value(w, parser, "--unset") for w in args.unset or []],
        **author,
    }
    return [("PUT", at, f"schedule {args.schedule_id} set for {args.at}", body)]


def _when(at_ms: int) -> str:
    try:
        moment = datetime.datetime.fromtimestamp(at_ms / 1000, datetime.UTC)
    except (ValueError, OverflowError, OSError):
        return f"{at_ms} ms"
    return moment.isoformat().replace("+00:00", "Z")


def _typed_lines(flag: dict[str, Any]) -> list[str]:
    """A flag's typed parts, one line each, for people (none for a boolean flag)."""
    if "type" not in flag:
        return []
    lines = [f"type: {flag['type']}"]
    variants = flag.get("variants", {})
    if variants:
        lines.append("variants: " + ", ".join(f"{v}={json.dumps(x)}" for v, x in variants.items()))
    if "off_variant" in flag:
        lines.append(f"off variant: {flag['off_variant']}")
    if "fallthrough" in flag:
        lines.append(f"fallthrough: {_text.serve_text(flag['fallthrough'])}")
    if flag.get("rules"):
        lines.append("rules, in evaluation order:")
        for rule in flag["rules"]:
            when = [_text.condition_text(c) for c in rule.get("conditions", [])]
            when += [f"segment {s}" for s in rule.get("segments", [])]
            served = _text.serve_text(rule["serve"])
            lines.append(f"  {rule['id']}: {'; '.join(when) or 'always'} -> {served}")
    for other, wanted in flag.get("prerequisites", {}).items():
        lines.append(f"prerequisite: {other} serves {', '.join(wanted)}")
    for schedule_id, schedule in flag.get("schedules", {}).items():
        writes = [
            "set " + " ".join(str(p) for p in w[:-1]) + " " + json.dumps(w[-1])
            for w in schedule.get("set", [])
        ]
        writes += ["unset " + " ".join(str(p) for p in w) for w in schedule.get("delete", [])]
        lines.append(f"schedule {schedule_id} at {_when(schedule['at_ms'])}: {'; '.join(writes)}")
    return lines


def _segment_lines(segments: dict[str, list[dict[str, Any]]]) -> list[str]:
    return [
        f"{name}: {'; '.join(_text.condition_text(c) for c in conditions) or 'everyone'}"
        for name, conditions in segments.items()
    ] or ["no segments"]


def _add_typed_actions(
    actions: Any,
    name: argparse.ArgumentParser,
    common: argparse.ArgumentParser,
    writer: argparse.ArgumentParser,
) -> None:
    """The ``chorus flags`` actions of typed flags."""
    from ._variants import TYPES

    variants = actions.add_parser(
        "variants",
        parents=[name, common, writer],
        help="set a flag's variants (exactly these) and its type",
        description="Make NAME's variants exactly those given, each VARIANT=JSON "
        "(blue='\"#00f\"', limit=10, on=true); --type sets the flag's value type.",
    )
    variants.add_argument("variants", nargs="+", metavar="VARIANT=JSON")
    variants.add_argument("--type", choices=TYPES, action=_Once, help="the flag's value type")

    def serves(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--serve", metavar="VARIANT", action=_Once, help="serve this variant")
        parser.add_argument(
            "--split", metavar="V=W,...", action=_Once, help="split by weight: green=50,blue=50"
        )

    when = (
        "a condition 'ATTRIBUTE OP VALUE[,VALUE...]' (repeatable; all must hold): "
        "'country in fr,de', 'age gte 18', 'version semver_gte 2.0.0'; each value is "
        "JSON if it parses, else text"
    )
    rule = actions.add_parser(
        "rule",
        parents=[name, common, writer],
        help="add, change or delete one rule of a flag",
        description="Set rule RULE_ID of NAME: it serves --serve or --split when every "
        "--when holds and the actor is in every --segment. A new rule goes last, an "
        "existing one keeps its place, unless --before or --after names another rule.",
    )
    rule.add_argument("rule_id", metavar="RULE_ID")
    rule.add_argument("--when", action="append", metavar="CONDITION", help=when)
    rule.add_argument("--segment", action="append", help="require this segment (repeatable)")
    serves(rule)
    rule.add_argument("--before", metavar="ID", action=_Once, help="place it before rule ID")
    rule.add_argument("--after", metavar="ID", action=_Once, help="place it after rule ID")
    rule.add_argument("--delete", action="store_true", help="delete the rule")

    fallthrough = actions.add_parser(
        "fallthrough",
        parents=[name, common, writer],
        help="set what a flag serves when it is on and no rule matches",
        description="Set NAME's fallthrough: --serve VARIANT or --split V=W,...; "
        "--delete removes it.",
    )
    serves(fallthrough)
    fallthrough.add_argument("--delete", action="store_true", help="remove the fallthrough")

    off = actions.add_parser(
        "off-variant",
        parents=[name, common, writer],
        help="set the variant a flag serves when it is off",
        description="Set NAME's off variant, served when its gates say off or a "
        "prerequisite is unmet; --delete removes it (the caller's default is served).",
    )
    off.add_argument("variant", nargs="?", metavar="VARIANT")
    off.add_argument("--delete", action="store_true", help="remove the off variant")

    prerequisite = actions.add_parser(
        "prerequisite",
        parents=[name, common, writer],
        help="make a flag require another flag's variants",
        description="NAME serves its off variant unless flag OTHER, evaluated for the "
        "same context, serves one of VARIANT... ('true' for a boolean flag that must be "
        "on). Refused if it would close a cycle.",
    )
    prerequisite.add_argument("other", metavar="OTHER")
    prerequisite.add_argument("variants", nargs="*", metavar="VARIANT")
    prerequisite.add_argument("--delete", action="store_true", help="remove the prerequisite")

    segment = actions.add_parser(
        "segment",
        parents=[name, common, writer],
        help="define or delete a segment that rules can require",
        description="Define segment NAME by its conditions; rules of any flag require it "
        "with --segment NAME.",
    )
    segment.add_argument("--when", action="append", metavar="CONDITION", help=when)
    segment.add_argument("--delete", action="store_true", help="delete the segment")

    actions.add_parser(
        "segments",
        parents=[common],
        help="list the segments",
        description="Every segment and its conditions.",
    )

    schedule = actions.add_parser(
        "schedule",
        parents=[name, common, writer],
        help="schedule changes of a flag at a time",
        description="At --at, every node applies the --set and --unset writes to NAME "
        "(a change made by hand after that time wins over them). --set KIND[:KEY]=JSON: "
        "boolean=true, actor:u1=false, percentage_of_actors=0.5, "
        'fallthrough=\'{"variant": "blue"}\', variant:red=\'"#f00"\'. --unset '
        "KIND[:KEY]: percentage_of_actors, group:beta. --cancel removes the schedule "
        "(one that has applied keeps its effect).",
    )
    schedule.add_argument("schedule_id", metavar="SCHEDULE_ID")
    schedule.add_argument(
        "--at",
        action=_Once,
        metavar="TIME",
        help="an RFC 3339 date-time with an offset (2026-12-01T09:00:00Z) or ms since the epoch",
    )
    schedule.add_argument("--set", action="append", metavar="KIND[:KEY]=JSON")
    schedule.add_argument("--unset", action="append", metavar="KIND[:KEY]")
    schedule.add_argument("--cancel", action="store_true", help="remove the schedule")

    evaluate = actions.add_parser(
        "evaluate",
        parents=[name, common],
        help="evaluate a flag of any type for an actor, groups and attributes",
        description="What NAME serves for this context: value, variant and reason.",
    )
    _add_evaluated(evaluate)
    evaluate.add_argument(
        "--attr",
        action="append",
        metavar="NAME=VALUE",
        help="an attribute of the context (repeatable); VALUE is JSON if it parses, else text",
    )
    evaluate.add_argument(
        "--default", default="null", metavar="JSON", help="served on an error (default null)"
    )


def _flags(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    writing = args.action in _WRITES or args.action in _TYPED_WRITES
    if args.action == "meta" and (args.description, args.owner, args.expires) == (None,) * 3:
        parser.error("give at least one of --description, --owner, --expires")
    name = _check_name(args.name, parser) if getattr(args, "name", None) is not None else ""
    if writing and not args.author:
        args.author = _default_author()
    where = f"chorus flags {args.action}"
    requests: list[_Request] = []
    if args.action in _WRITES:
        requests = _changes(args)
    elif args.action in _TYPED_WRITES:
        requests = _typed_changes(args, parser)
    elif args.action == "evaluate":
        context: dict[str, Any] = {
            "default": _json_value(args.default),
            "groups": args.group or [],
            "attributes": {},
        }
        if args.actor:
            context["actor"] = args.actor
        for item in args.attr or []:
            attribute, equals, value = item.partition("=")
            if not equals:
                parser.error(f"--attr takes NAME=VALUE, e.g. country=fr or age=30; got {item!r}")
            context["attributes"][attribute] = _json_value(value)

    def send(client: Any) -> Any:
        if args.action in ("list", "get"):
            params: dict[str, Any] = {"group": args.group or []}
            if args.actor:
                params["actor"] = args.actor
            return client.get(
                "/flags" if args.action == "list" else _flag_path(name), params=params
            )
        if args.action == "audit":
            path = _flag_path(name) + "/audit" if name else "/audit"
            return client.get(path, params={"limit": args.limit})
        if args.action == "segments":
            return client.get("/segments")
        if args.action == "evaluate":
            return client.post(_flag_path(name) + "/evaluate", json=context)
        done: list[str] = []
        for method, path, description, data in requests:
            if method == "PUT":
                response = client.put(path, json=data)
            else:
                response = client.delete(path, params=data)
            if response.status_code >= 400:
                applied = f"; applied before it: {', '.join(done)}" if done else ""
                print(
                    f"{where}: {name} not {description}: {_failed(response)}"
                    f"{_pointer_text(response)}{applied}",
                    file=sys.stderr,
                )
                return 1
            done.append(description)
            if not args.json:
                print(f"{name}: {description} (author {args.author})")
        return response

    response = _request(args, parser, where, send, writing=writing)
    if isinstance(response, int):
        return response
    document = response.json()
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
    elif args.action == "list":
        print(_table(document["flags"], evaluated=bool(args.actor or args.group)))
    elif args.action == "audit":
        print(_audit_table(document["audit"]))
    elif args.action in ("segments", "segment"):
        print("\n".join(_segment_lines(document["segments"])))
    elif args.action == "evaluate":
        print(f"value: {json.dumps(document['value'])}")
        print(f"variant: {document['variant'] if document['variant'] is not None else '-'}")
        detail = f" ({document['detail']})" if document["detail"] else ""
        print(f"reason: {document['reason']}{detail}")
    else:
        if writing:
            print()
        print(_table([document]))
        about = [(f, document.get(f)) for f in ("description", "owner", "expires")]
        for field, text in about:
            if text is not None:
                print(f"{field}: {text}")
        for line in _typed_lines(document):
            print(line)
        # A flag of another type than boolean is never "enabled": see evaluate.
        if "enabled" in document and document.get("type", "boolean") == "boolean":
            who = " and ".join(
                [f"actor {args.actor}"] * bool(args.actor)
                + [f"groups {', '.join(args.group or ())}"] * bool(args.group)
            )
            print(
                f"\nenabled{' for ' + who if who else ''}: "
                f"{'yes' if document['enabled'] else 'no'} ({document['reason']})"
            )
    return 0


def read_export(path: str, what: str, parser: argparse.ArgumentParser) -> list[Any]:
    """The flags of an export file (``-``: stdin); any error exits 2 naming the file
    and, for a bad value, its JSON pointer."""
    return read_export_with_segments(path, what, parser)[0]


def read_export_with_segments(
    path: str, what: str, parser: argparse.ArgumentParser
) -> tuple[list[Any], dict[str, list[dict[str, Any]]]]:
    """The flags and the segments (``{name: [condition, ...]}``) of an export file,
    as `read_export` reads it."""
    from ._export import loads, parse_export, parse_segments

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(parser, f"{what} {path}: cannot read it: {getattr(exc, 'strerror', None) or exc}")
    try:
        document = loads(text)
        return parse_export(document), parse_segments(document)
    except FlagFormatError as exc:
        _fail(parser, f"{what} {path}: at {exc.pointer or '/'}: {exc.message}")
    except ValueError as exc:
        _fail(parser, f"{what} {path}: not JSON: {exc}")


def _transfer(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``chorus flags export`` and ``chorus flags import``."""
    importing = args.action == "import"
    if importing:
        flags, segments = read_export_with_segments(args.file, "import", parser)
        from ._export import EXPORT_FORMAT, EXPORT_VERSION, flag_to_json

        body = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "flags": [flag_to_json(f) for f in flags],
        }
        if segments:
            body["segments"] = segments
        args.author = args.author or _default_author()
    where = f"chorus flags {args.action}"

    def send(client: Any) -> Any:
        if not importing:
            return client.get("/export")
        params = {"dry_run": "true" if args.dry_run else "false", "author": args.author}
        return client.post("/import", json=body, params=params)

    response = _request(args, parser, where, send, writing=importing)
    if isinstance(response, int):
        return response
    document = response.json()
    if not importing:
        text = json.dumps(document, indent=2) + "\n"
        if args.output in (None, "-"):
            sys.stdout.write(text)
        else:
            target = Path(args.output)
            partial = target.with_name(target.name + ".partial")
            try:  # a crash mid-write must not leave half an export where a good one was
                partial.write_text(text, encoding="utf-8")
                partial.replace(target)
            except OSError as exc:
                partial.unlink(missing_ok=True)
                print(f"{where}: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
                return 1
        for entry in document.get("skipped", []):
            print(
                f"{where}: left out {entry}: its name is outside the grammar, so no "
                "import would take it back (rename it, then export again)",
                file=sys.stderr,
            )
        print(
            f"exported {len(document['flags'])} flags from node {document['node']}"
            f" to {args.output or 'stdout'}",
            file=sys.stderr,
        )
        return 0
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
        return 0
    would = "would change" if document["dry_run"] else "changed"
    for segment in document.get("segments", []):
        print("; ".join(segment["changes"]))
    for flag in document["flags"]:
        if flag["changes"]:
            print(f"{flag['name']}: {'; '.join(flag['changes'])}")
    print(
        f"{'dry run: ' if document['dry_run'] else ''}{len(document['changed'])} flags "
        f"{would}, {len(document['unchanged'])} unchanged (node {document['node']}"
        f"{'' if document['dry_run'] else ', author ' + args.author})"
    )
    return 0


def _demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .demo import run_demo

    return run_demo(nodes=args.nodes, toggles=args.toggles, keep=args.keep)


def _add_targets(parser: argparse.ArgumentParser, what: str) -> None:
    """``--actor`` and ``--group`` of a write: each repeatable, each one a change."""
    parser.add_argument("--actor", action="append", help=f"{what} this actor (repeatable)")
    parser.add_argument("--group", action="append", help=f"{what} this group (repeatable)")


def _add_evaluated(parser: argparse.ArgumentParser) -> None:
    """``--actor`` (once) and ``--group`` (repeatable) of a read that evaluates."""
    parser.add_argument("--actor", action=_Once, help="evaluate for this actor (once)")
    parser.add_argument(
        "--group", action="append", help="evaluate for this group (repeatable: all apply)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="chorus", description="Feature flags replicated in the memory of every node."
    )
    parser.add_argument("--version", action=_Version, help="print the installed version and exit")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    serve = commands.add_parser("serve", help="run a node with its HTTP admin")
    serve.add_argument("--node-id", required=True, help="this node's name in the cluster")
    serve.add_argument(
        "--listen", default="127.0.0.1:7400", help="cluster HOST:PORT (default %(default)s)"
    )
    serve.add_argument(
        "--advertise",
        metavar="HOST:PORT",
        help="the address peers dial this node at (default: the --listen address; set it "
        "when listening on 0.0.0.0, e.g. to the pod IP; port 0 stands for the port bound)",
    )
    serve.add_argument(
        "--join", default="", help="comma-separated HOST:PORT of other nodes (IPs or DNS names)"
    )
    serve.add_argument(
        "--http", default="127.0.0.1:8400", help="HTTP admin HOST:PORT (default %(default)s)"
    )
    serve.add_argument("--secret-file", help="file holding the cluster secret (else CHORUS_SECRET)")
    serve.add_argument("--token-file", help="file holding the admin token (else CHORUS_TOKEN)")
    serve.add_argument(
        "--viewer-token-file",
        help="file holding a read-only token (else CHORUS_VIEWER_TOKEN; default: none): "
        "it reads /events, the web UI, and reads that need a token, and never writes",
    )
    serve.add_argument(
        "--join-timeout",
        type=float,
        default=3.0,
        help="with --bootstrap: seconds to wait for a cluster before founding one",
    )
    serve.add_argument(
        "--bootstrap",
        action="store_true",
        help="found a new cluster if none answers within --join-timeout (for starting "
        "a whole cluster at once; without it a node with --join waits for its cluster)",
    )
    serve.add_argument(
        "--bootstrap-expect",
        type=int,
        metavar="N",
        help="the number of nodes that start a new cluster together, this one included "
        "(as Consul's bootstrap_expect): with --join, found a cluster only once N-1 peers "
        "are heard waiting for one and none belongs to a cluster, the smallest --node-id "
        "founding it; never with fewer, however long it takes. Give every node the same "
        "flags on every start (--join the others --bootstrap-expect N): the first start of "
        "all founds the cluster, a restart joins it, and a restart while cut off waits "
        "(/ready says so). Not with --bootstrap",
    )
    serve.add_argument(
        "--defaults",
        metavar="FILE",
        help="an export (chorus flags export) whose flags this node answers with while "
        "the cluster holds no gate for them; never written to the cluster",
    )
    serve.add_argument(
        "--reads-need-token",
        action="store_true",
        help="the HTTP admin's reads (/flags, /audit, /cluster, /metrics) need the admin "
        "token too; /health and /ready stay open for probes",
    )
    serve.add_argument(
        "--log-level",
        type=str.upper,
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="in any case (default %(default)s)",
    )
    serve.add_argument(
        "--log-format",
        default="keyvalue",
        choices=["keyvalue", "json"],
        help="one key=value (logfmt) line or one JSON object per event (default %(default)s)",
    )
    serve.add_argument(
        "--ui",
        choices=["on", "read-only", "off"],
        default="on",
        help="the web UI at /ui/ (default %(default)s): read-only shows no write control "
        "and refuses writes; log in with the admin or the viewer token",
    )
    serve.add_argument(
        "--ui-banner",
        metavar="TEXT",
        help="a banner atop every UI page naming the environment, e.g. PRODUCTION",
    )
    serve.add_argument(
        "--ui-banner-colour",
        default="red",
        metavar="COLOUR",
        help="the banner's colour: red (default), orange, green, blue or grey",
    )
    serve.add_argument(
        "--ui-no-create", action="store_true", help="the UI neither offers nor takes new flags"
    )
    serve.add_argument(
        "--ui-no-delete", action="store_true", help="the UI neither offers nor takes deleting flags"
    )
    serve.set_defaults(run=_serve)

    flags = commands.add_parser(
        "flags",
        help="list, read and change flags through a node's HTTP admin",
        description="A client of a node's HTTP admin. Writes (enable, disable, clear, "
        "meta, delete, import, and those of typed flags: variants, rule, fallthrough, "
        "off-variant, prerequisite, segment, schedule) need "
        "the admin token, from CHORUS_TOKEN or --token-file (never from the command line). "
        "Each change on a write's line is its own request, made in order and printed as it "
        "applies; the first refused stops the rest.",
    )
    actions = flags.add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=_Parser
    )
    common = _Parser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get("CHORUS_URL", DEFAULT_URL),
        help="a node's HTTP admin (default %(default)s, or CHORUS_URL)",
    )
    common.add_argument(
        "--token-file", metavar="FILE", help="file holding the admin token (else CHORUS_TOKEN)"
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    common.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per request (default %(default)s)"
    )
    name = _Parser(add_help=False)
    name.add_argument("name", help="the flag (sent percent-encoded: any of ? # / is fine)")
    writer = _Parser(add_help=False)
    writer.add_argument(
        "--author",
        default=None,
        help="who makes the change, recorded in the flag's audit log (default $USER@hostname)",
    )

    listing = actions.add_parser(
        "list",
        parents=[common],
        help="every flag's gates, evaluated for an actor and groups if given",
        description="Every flag's gates; with --actor or --group, whether each flag is "
        "enabled for them and which gate decided.",
    )
    _add_evaluated(listing)

    get = actions.add_parser(
        "get",
        parents=[name, common],
        help="one flag's gates, evaluated for an actor and groups",
        description="One flag's gates, and whether it is enabled for the actor and groups.",
    )
    _add_evaluated(get)

    for action, verb in (("enable", "enable"), ("disable", "disable")):
        change = actions.add_parser(
            action,
            parents=[name, common, writer],
            help=f"{verb} a flag, for actors, groups or a percentage",
            description=f"{verb.capitalize()} NAME: with no option, for everyone (its "
            f"boolean gate); else only the gates given. --actor and --group repeat and "
            "combine; every one given applies, one request each, printed as it does.",
        )
        _add_targets(change, f"{verb} for")
        if action == "enable":
            change.add_argument(
                "--percentage-of-actors",
                type=float,
                metavar="P",
                action=_Once,
                help="enable for a fraction in [0, 1] of actors (once; combines with the rest)",
            )
            change.add_argument(
                "--percentage-of-time",
                type=float,
                metavar="P",
                action=_Once,
                help="enable for a fraction in [0, 1] of checks (once; combines with the rest)",
            )

    clear = actions.add_parser(
        "clear",
        parents=[name, common, writer],
        help="clear a flag's gates",
        description="Clear NAME's gates: with no option, every gate; else only the gate of "
        "each --actor and --group given (repeatable, one request each).",
    )
    _add_targets(clear, "clear the gate of")
    meta = actions.add_parser(
        "meta",
        parents=[name, common, writer],
        help="set a flag's description, owner or expiry date",
        description="Set NAME's metadata: any of --description, --owner, --expires, in "
        "one change (shown by 'get' and recorded in the audit log).",
    )
    meta.add_argument("--description", metavar="TEXT", help="what the flag is for")
    meta.add_argument("--owner", metavar="WHO", help="who answers for it (a team, a person)")
    meta.add_argument(
        "--expires", metavar="YYYY-MM-DD", help="when it should be removed from the code"
    )
    actions.add_parser(
        "delete",
        parents=[name, common, writer],
        help="delete a flag: every gate and its metadata",
        description="Delete NAME from the cluster: every gate and its metadata. Its audit "
        "log stays and records the deletion. Fails (404) if there is nothing to delete.",
    )
    audit = actions.add_parser(
        "audit",
        parents=[common],
        help="recorded changes, newest first: of one flag, or of all",
        description="The audit log: who changed what, when (the change's HLC time, "
        "shown in UTC) and on which node; of NAME, or of every flag.",
    )
    audit.add_argument("name", nargs="?", help="the flag (default: every flag)")
    audit.add_argument(
        "--limit", type=int, default=20, help="how many records, 1 to 1000 (default %(default)s)"
    )
    _add_typed_actions(actions, name, common, writer)
    for sub in actions.choices.values():
        sub.set_defaults(run=_flags)

    export = actions.add_parser(
        "export",
        parents=[common],
        help="write every flag's gates and metadata as JSON (for chorus flags import)",
        description="Write every flag the cluster holds (gates and metadata, not a "
        "node's defaults) as one JSON document: to keep the flags across a restart of "
        "the whole cluster, which holds them in memory only. Import it with 'chorus "
        "flags import', or start nodes with 'chorus serve --defaults FILE'.",
    )
    export.add_argument(
        "--output", "-o", metavar="FILE", help="write to FILE (replaced whole) instead of stdout"
    )
    export.set_defaults(run=_transfer)
    importing = actions.add_parser(
        "import",
        parents=[common, writer],
        help="make the cluster's flags equal those of an export file",
        description="Make each flag in FILE equal in the cluster: its gates and metadata "
        "set, its other gates and metadata removed. Flags not in FILE are not touched. "
        "Only what differs is written (one audited change per flag), so importing the "
        "same file again changes nothing. The file is checked whole first: a bad value "
        "anywhere writes nothing.",
    )
    importing.add_argument("file", metavar="FILE", help="an export, or - for stdin")
    importing.add_argument(
        "--dry-run", action="store_true", help="print what would change; write nothing"
    )
    importing.set_defaults(run=_transfer)

    secret = commands.add_parser(
        "secret", help="print a new cluster secret (256 random bits, as 64 hex characters)"
    )
    secret.set_defaults(run=_secret)

    demo = commands.add_parser(
        "demo", help="a local cluster of real processes: toggles and a rolling restart"
    )
    demo.add_argument("--nodes", type=int, default=3)
    demo.add_argument("--toggles", type=int, default=20, help="toggles timed for propagation")
    demo.add_argument(
        "--keep",
        action="store_true",
        help="then leave the cluster running, print each node's web UI address and the "
        "admin token, and stop it on Ctrl-C",
    )
    demo.set_defaults(run=_demo)
    for sub in (serve, secret, demo, *actions.choices.values()):
        sub.set_defaults(parser=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Errors name the subcommand that was given, with its usage, not the top level's.
    command: argparse.ArgumentParser = getattr(args, "parser", parser)
    if extra:
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        result: int = args.run(args, command)
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    raise SystemExit(main())

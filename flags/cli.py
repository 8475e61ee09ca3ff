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
import getpass
import json
import os
import socket
import sys
import urllib.parse
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

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
    path: str | None, variable: str, what: str, parser: argparse.ArgumentParser
) -> str:
    if path:
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            parser.error(f"cannot read the {what} file {path}: {exc.strerror}")
    else:
        value = os.environ.get(variable, "").strip()
    if not value:
        parser.error(f"the {what} is required: --{what.split()[-1]}-file FILE or {variable}")
    return value


def _serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import trio

    from transport import WeakSecretError, check_secret
    from transport._tcp import parse_address

    from ._logging import configure
    from .serve import ServeConfig, serve

    secret = _read_secret(args.secret_file, "CHORUS_SECRET", "cluster secret", parser)
    try:
        check_secret(secret)
    except WeakSecretError as exc:
        parser.error(str(exc))
    token = _read_secret(args.token_file, "CHORUS_TOKEN", "admin token", parser)
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
    configure(args.log_level, args.log_format)
    config = ServeConfig(
        node_id=args.node_id,
        listen=args.listen,
        advertise=args.advertise,
        join=join,
        http=args.http,
        secret=secret,
        token=token,
        reads_need_token=args.reads_need_token,
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


def _table(flags: list[dict[str, Any]]) -> str:
    rows = [("FLAG", "BOOLEAN", "ACTORS", "GROUPS", "% ACTORS", "% TIME")]
    for f in flags:
        boolean = {True: "on", False: "off", None: "-"}[f["boolean"]]
        rows.append(
            (
                f["name"],
                boolean,
                _gates(f["actors"]),
                _gates(f["groups"]),
                _percent(f["percentage_of_actors"]),
                _percent(f["percentage_of_time"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


#: One request of a write: (method, description, JSON body or query parameters).
_Request = tuple[str, str, dict[str, Any]]


def _changes(args: argparse.Namespace) -> list[_Request]:
    """The requests a write makes: one per change, in the order given on the line."""
    verb = {"enable": "enabled", "disable": "disabled", "clear": "cleared"}[args.action]
    author = {"author": args.author}
    if args.action == "clear":
        clears: list[_Request] = [
            ("DELETE", f"{verb} the gate of actor {a}", {"actor": a, **author})
            for a in args.actor or []
        ]
        clears += [
            ("DELETE", f"{verb} the gate of group {g}", {"group": g, **author})
            for g in args.group or []
        ]
        return clears or [("DELETE", f"{verb} every gate", {"gates": "all", **author})]
    on = args.action == "enable"
    puts: list[_Request] = [
        ("PUT", f"{verb} for actor {a}", {"actor": a, "enabled": on, **author})
        for a in args.actor or []
    ]
    puts += [
        ("PUT", f"{verb} for group {g}", {"group": g, "enabled": on, **author})
        for g in args.group or []
    ]
    for field, what in (("percentage_of_actors", "actors"), ("percentage_of_time", "checks")):
        value = getattr(args, field, None)
        if value is not None:
            puts.append(("PUT", f"{verb} for {value:.0%} of {what}", {field: value, **author}))
    return puts or [("PUT", f"{verb} for everyone", {"enabled": on, **author})]


def _failed(response: Any) -> str:
    try:
        document = response.json()
    except ValueError:
        document = {"error": response.text.strip()}
    message = document.get("error", document) if isinstance(document, dict) else document
    return f"{response.status_code}: {message}"


def _flags(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import httpx

    writing = args.action in ("enable", "disable", "clear")
    if args.action == "list" and (args.actor or args.group):
        parser.error(
            "list shows every flag's gates and evaluates none: "
            "use 'chorus flags get NAME --actor A --group G' to evaluate one flag"
        )
    name = _check_name(args.name, parser) if args.action != "list" else ""
    if writing and not args.author:
        args.author = _default_author()
    token = _token(args, parser, required=writing)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = args.url.rstrip("/")
    where = f"chorus flags {args.action}"
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=args.timeout) as client:
            if args.action == "list":
                response = client.get("/flags")
            elif args.action == "get":
                params: dict[str, Any] = {"group": args.group or []}
                if args.actor:
                    params["actor"] = args.actor
                response = client.get(_flag_path(name), params=params)
            else:
                done: list[str] = []
                for method, description, data in _changes(args):
                    if method == "PUT":
                        response = client.put(_flag_path(name), json=data)
                    else:
                        response = client.delete(_flag_path(name), params=data)
                    if response.status_code >= 400:
                        applied = f"; applied before it: {', '.join(done)}" if done else ""
                        print(
                            f"{where}: {name} not {description}: {_failed(response)}{applied}",
                            file=sys.stderr,
                        )
                        return 1
                    done.append(description)
                    if not args.json:
                        print(f"{name}: {description} (author {args.author})")
    except httpx.HTTPError as exc:
        print(f"{where}: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    except httpx.InvalidURL as exc:
        print(f"{where}: bad URL {url}: {exc}", file=sys.stderr)
        return 1
    if response.status_code >= 400:
        hint = " (set CHORUS_TOKEN or pass --token-file)" if response.status_code == 401 else ""
        print(f"{where}: {_failed(response)}{hint}", file=sys.stderr)
        return 1
    document = response.json()
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
    elif args.action == "list":
        print(_table(document["flags"]))
    else:
        if writing:
            print()
        print(_table([document]))
        if "enabled" in document:
            who = " and ".join(
                [f"actor {args.actor}"] * bool(args.actor)
                + [f"groups {', '.join(args.group)}"] * bool(args.group)
            )
            print(
                f"\nenabled{' for ' + who if who else ''}: "
                f"{'yes' if document['enabled'] else 'no'} ({document['reason']})"
            )
    return 0


def _demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .demo import run_demo

    return run_demo(nodes=args.nodes, toggles=args.toggles)


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
    serve.set_defaults(run=_serve)

    flags = commands.add_parser(
        "flags",
        help="list, read and change flags through a node's HTTP admin",
        description="A client of a node's HTTP admin. Writes (enable, disable, clear) need "
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
        help="every flag's gates",
        description="Every flag's gates. Evaluates nothing: --actor and --group are "
        "refused here (use 'get NAME --actor A').",
    )
    listing.add_argument("--actor", help=argparse.SUPPRESS)
    listing.add_argument("--group", action="append", help=argparse.SUPPRESS)

    get = actions.add_parser(
        "get",
        parents=[name, common],
        help="one flag's gates, evaluated for an actor and groups",
        description="One flag's gates, and whether it is enabled for the actor and groups.",
    )
    get.add_argument("--actor", action=_Once, help="evaluate for this actor (once)")
    get.add_argument(
        "--group", action="append", help="evaluate for this group (repeatable: all apply)"
    )

    for action, verb in (("enable", "enable"), ("disable", "disable")):
        change = actions.add_parser(
            action,
            parents=[name, common, writer],
            help=f"{verb} a flag, for actors, groups or a percentage",
            description=f"{verb.capitalize()} NAME: with no option, for everyone (its "
            f"boolean gate); else only the gates given. --actor and --group repeat and "
            "combine; every one given applies, one request each, printed as it does.",
        )
        change.add_argument("--actor", action="append", help=f"{verb} for this actor (repeatable)")
        change.add_argument("--group", action="append", help=f"{verb} for this group (repeatable)")
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
    clear.add_argument("--actor", action="append", help="clear this actor's gate (repeatable)")
    clear.add_argument("--group", action="append", help="clear this group's gate (repeatable)")
    for sub in actions.choices.values():
        sub.set_defaults(run=_flags)

    secret = commands.add_parser(
        "secret", help="print a new cluster secret (256 random bits, as 64 hex characters)"
    )
    secret.set_defaults(run=_secret)

    demo = commands.add_parser(
        "demo", help="a local cluster of real processes: toggles and a rolling restart"
    )
    demo.add_argument("--nodes", type=int, default=3)
    demo.add_argument("--toggles", type=int, default=20, help="toggles timed for propagation")
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

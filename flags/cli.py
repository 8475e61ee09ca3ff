"""The ``chorus`` command: ``serve`` a node, manage ``flags``, run the ``demo``.

    chorus serve --node-id a --listen 127.0.0.1:7400 --http 127.0.0.1:8400
    chorus serve --node-id b --listen 127.0.0.1:7401 --http 127.0.0.1:8401 --join 127.0.0.1:7400
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
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8400"


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
    configure(args.log_level, args.log_format)
    config = ServeConfig(
        node_id=args.node_id,
        listen=args.listen,
        join=tuple(s for s in args.join.split(",") if s),
        http=args.http,
        secret=secret,
        token=token,
        node_options={
            "join_timeout_s": args.join_timeout,
            "bootstrap": args.bootstrap,
            "bootstrap_expect": args.bootstrap_expect,
        },
    )
    trio.run(serve, config)
    return 0


def _secret(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from transport import new_secret

    print(new_secret())
    return 0


# -- chorus flags --------------------------------------------------------------------


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


def _flags(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import httpx

    token = args.token or os.environ.get("CHORUS_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = args.url.rstrip("/")
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=args.timeout) as client:
            if args.action == "list":
                response = client.get("/flags")
            elif args.action == "get":
                params: dict[str, Any] = {"group": args.group or []}
                if args.actor:
                    params["actor"] = args.actor
                response = client.get(f"/flags/{args.name}", params=params)
            elif args.action == "clear":
                params = {
                    k: v
                    for k, v in (("actor", args.actor), ("group", args.group and args.group[0]))
                    if v
                }
                response = client.delete(f"/flags/{args.name}", params=params)
            else:
                response = client.put(f"/flags/{args.name}", json=_change(args, parser))
    except httpx.HTTPError as exc:
        print(f"chorus flags: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    try:
        document = response.json()
    except ValueError:
        document = {"error": response.text}
    if response.status_code >= 400:
        print(
            f"chorus flags: {response.status_code}: {document.get('error', document)}",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
    elif args.action == "list":
        print(_table(document["flags"]))
    else:
        print(_table([document]))
        if "enabled" in document:
            who = f" for {args.actor}" if args.actor else ""
            print(
                f"\nenabled{who}: {'yes' if document['enabled'] else 'no'} ({document['reason']})"
            )
    return 0


def _change(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    on = args.action == "enable"
    if args.percentage_of_actors is not None or args.percentage_of_time is not None:
        if not on:
            parser.error("percentages go with 'enable' (use 'disable' or 'clear' to turn them off)")
        if args.percentage_of_actors is not None:
            return {"percentage_of_actors": args.percentage_of_actors}
        return {"percentage_of_time": args.percentage_of_time}
    if args.actor:
        return {"actor": args.actor, "enabled": on}
    if args.group:
        return {"group": args.group[0], "enabled": on}
    return {"enabled": on}


def _demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .demo import run_demo

    return run_demo(nodes=args.nodes, toggles=args.toggles)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chorus", description="Feature flags replicated in the memory of every node."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run a node with its HTTP admin")
    serve.add_argument("--node-id", required=True, help="this node's name in the cluster")
    serve.add_argument(
        "--listen", default="127.0.0.1:7400", help="cluster HOST:PORT (default %(default)s)"
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
        "flags", help="list, read and change flags through a node's HTTP admin"
    )
    flags.add_argument("action", choices=["list", "get", "enable", "disable", "clear"])
    flags.add_argument("name", nargs="?", help="the flag (all actions but list)")
    flags.add_argument("--actor", help="an actor id: evaluate for it, or change its gate")
    flags.add_argument(
        "--group", action="append", help="a group: evaluate for it (repeatable), or change its gate"
    )
    flags.add_argument(
        "--percentage-of-actors",
        type=float,
        metavar="P",
        help="enable for a fraction in [0, 1] of actors",
    )
    flags.add_argument(
        "--percentage-of-time",
        type=float,
        metavar="P",
        help="enable for a fraction in [0, 1] of checks",
    )
    flags.add_argument(
        "--url",
        default=os.environ.get("CHORUS_URL", DEFAULT_URL),
        help="a node's HTTP admin (default %(default)s, or CHORUS_URL)",
    )
    flags.add_argument("--token", help="the admin token (default: CHORUS_TOKEN)")
    flags.add_argument("--json", action="store_true", help="print JSON instead of a table")
    flags.add_argument("--timeout", type=float, default=10.0, help="seconds (default %(default)s)")
    flags.set_defaults(run=_flags)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "flags" and args.action != "list" and not args.name:
        parser.error(f"'chorus flags {args.action}' needs a flag name")
    try:
        result: int = args.run(args, parser)
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    raise SystemExit(main())

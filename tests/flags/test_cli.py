"""`chorus flags` run in-process (``main([...])``) against a real `chorus serve`, and
`chorus serve`'s startup errors as real processes."""

import datetime
import json
import os
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import httpx
import pytest

from flags import cli
from flags.cli import main
from tests.flags.test_e2e import SECRET, TOKEN, Serve
from tests.helpers import eventually, free_port, serve_argv

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    serve = Serve("a", [], tmp_path_factory.mktemp("cli"))
    try:
        assert serve.wait(), serve.log.read_text()[-2000:]
        yield serve
    finally:
        serve.process.kill()
        serve.process.wait(10)


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_TOKEN", TOKEN)


def chorus(
    capsys: pytest.CaptureFixture[str], *argv: str, url: str | None = None
) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    target = ["--url", url, "--timeout", "5"] if url else []
    try:
        code = main([*argv, *target])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def read(node: Serve, name: str) -> dict[str, object]:
    document: dict[str, object] = node.get("/flags/" + urllib.parse.quote(name, safe="")).json()
    return document


def test_names_are_sent_percent_encoded() -> None:
    assert cli._flag_path("a?b#c/d%e f") == "/flags/a%3Fb%23c%2Fd%25e%20f"


@pytest.mark.parametrize("name", ["a?b", "a#b", "team/checkout", "team:checkout@v2.1"])
def test_a_name_is_the_flag_changed_or_one_clear_error(
    node: Serve, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """The whole name reaches the server (not cut at ?, # or /): the flag itself is
    enabled, or the server's name grammar refuses it and the CLI says so in one line."""
    code, out, err = chorus(capsys, "flags", "enable", name, url=node.url)
    if code == 0:
        assert read(node, name)["boolean"] is True
        assert read(node, name)["name"] == name
        code, out, err = chorus(capsys, "flags", "get", name, "--json", url=node.url)
        assert code == 0, err
        assert json.loads(out)["name"] == name
    else:
        assert code == 1
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"chorus flags enable: {name} not enabled for everyone: ")
    names = {f["name"] for f in node.get("/flags").json()["flags"]}
    assert not names & {"a", "team"}  # never a flag named after a prefix of the name
    if name == "team:checkout@v2.1":
        assert code == 0  # within every grammar considered


def test_a_control_character_in_a_name_is_one_line_not_a_traceback(
    node: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a\tb", "a\nb", "a\x00b"):
        code, _out, err = chorus(capsys, "flags", "enable", name, url=node.url)
        assert code == 2
        assert "Traceback" not in err
        assert err.splitlines()[-1].startswith("chorus flags enable: error: flag names have no")


def test_every_option_given_applies_one_request_each(
    node: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = chorus(
        capsys,
        *("flags", "enable", "many"),
        *("--actor", "u1", "--actor", "u2", "--group", "g1", "--group", "g2"),
        *("--percentage-of-actors", "0.5", "--percentage-of-time", "0.25"),
        url=node.url,
    )
    assert code == 0, err
    flag = read(node, "many")
    assert flag["actors"] == {"u1": True, "u2": True}
    assert flag["groups"] == {"g1": True, "g2": True}
    assert flag["percentage_of_actors"] == 0.5
    assert flag["percentage_of_time"] == 0.25
    assert flag["boolean"] is None  # gates given: the flag is not turned on for everyone
    changes = [line for line in out.splitlines() if line.startswith("many: enabled for ")]
    assert len(changes) == 6, out

    code, out, err = chorus(
        capsys, "flags", "disable", "many", "--actor", "u2", "--group", "g2", url=node.url
    )
    assert code == 0, err
    assert read(node, "many")["actors"] == {"u1": True, "u2": False}
    assert read(node, "many")["groups"] == {"g1": True, "g2": False}

    code, out, err = chorus(
        capsys, "flags", "clear", "many", "--actor", "u1", "--group", "g1", url=node.url
    )
    assert code == 0, err
    assert read(node, "many")["actors"] == {"u2": False}
    assert read(node, "many")["groups"] == {"g2": False}

    code, out, err = chorus(
        capsys,
        "flags",
        "get",
        "many",
        "--actor",
        "u2",
        "--group",
        "g1",
        "--group",
        "g2",
        url=node.url,
    )
    assert code == 0, err
    assert "enabled for actor u2 and groups g1, g2: no" in out


def test_list_evaluates_every_flag_for_an_actor_and_groups(
    node: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (("enable", "lx.a", "--actor", "ann"), ("disable", "lx.b", "--group", "banned")):
        assert chorus(capsys, "flags", *argv, url=node.url)[0] == 0
    code, out, err = chorus(
        capsys, "flags", "list", "--actor", "ann", "--group", "banned", url=node.url
    )
    assert code == 0, err
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[1:]}
    assert out.split()[:3] == ["FLAG", "ENABLED", "BY"]
    assert rows["lx.a"] == ["yes", "actor"]
    assert rows["lx.b"] == ["no", "group"]
    code, out, _ = chorus(capsys, "flags", "list", "--json", "--actor", "bob", url=node.url)
    by_name = {f["name"]: f for f in json.loads(out)["flags"]}
    assert (by_name["lx.a"]["enabled"], by_name["lx.a"]["reason"]) == (False, "no_gate")
    code, out, _ = chorus(capsys, "flags", "list", "--json", url=node.url)
    assert "enabled" not in json.loads(out)["flags"][0]  # nothing to evaluate for


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("get", "x", "--actor", "u1", "--actor", "u2"), "--actor given twice"),
        (
            ("enable", "x", "--percentage-of-time", "0.1", "--percentage-of-time", "0.2"),
            "--percentage-of-time given twice",
        ),
        (("list", "--actor", "u1", "--actor", "u2"), "--actor given twice"),
        (("disable", "x", "--percentage-of-actors", "0.5"), "unrecognized arguments"),
    ],
)
def test_options_it_cannot_apply_are_refused(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    code, _out, err = chorus(capsys, "flags", *argv, url=f"http://127.0.0.1:{free_port()}")
    assert code == 2
    assert message in err
    assert f"usage: chorus flags {argv[0]} " in err  # the subcommand's usage


def test_the_token_never_comes_from_argv(
    node: Serve,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("CHORUS_TOKEN")
    nobody = f"http://127.0.0.1:{free_port()}"  # a request would fail with code 1
    code, _, err = chorus(capsys, "flags", "enable", "t", url=nobody)
    assert code == 2
    assert err.splitlines()[-1] == (
        "chorus flags enable: error: CHORUS_TOKEN is not set (or pass --token-file)"
    )
    for option in ("--token", "--tok"):  # nor abbreviated into --token-file
        code, _, err = chorus(capsys, "flags", "enable", "t", option, TOKEN, url=nobody)
        assert code == 2
        assert f"unrecognized arguments: {option} {TOKEN}" in err
    assert chorus(capsys, "flags", "list", url=node.url)[0] == 0  # reads need no token

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    code, _, err = chorus(
        capsys, "flags", "enable", "t", "--token-file", str(token_file), url=node.url
    )
    assert code == 0, err
    assert read(node, "t")["boolean"] is True
    token_file.write_text("wrong")
    code, _out, err = chorus(
        capsys, "flags", "enable", "t", "--token-file", str(token_file), url=node.url
    )
    assert code == 1
    assert "401" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = chorus(capsys, "--version")
    assert code == 0
    distribution = metadata.packages_distributions()["flags"][0]
    assert out.strip() == f"{distribution} {metadata.version(distribution)}"


def test_parse_errors_show_the_subcommands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = chorus(capsys, "flags", "enable")
    assert code == 2
    assert err.startswith("usage: chorus flags enable ")
    code, _, err = chorus(capsys, "flags", "get", "x", "--bogus")
    assert code == 2
    assert err.startswith("usage: chorus flags get ")
    assert err.splitlines()[-1] == "chorus flags get: error: unrecognized arguments: --bogus"
    code, _out, err = chorus(capsys, "serve", "--node-id", "a", "--bogus")
    assert err.startswith("usage: chorus serve ")


def test_writes_carry_an_author(
    node: Serve, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = chorus(capsys, "flags", "enable", "authored", "--author", "ann", url=node.url)
    assert code == 0, err
    assert "(author ann)" in out
    assert eventually(lambda: "authored changed by ann" in node.log.read_text())
    monkeypatch.setenv("USER", "zoe")
    code, out, err = chorus(capsys, "flags", "disable", "authored", url=node.url)
    assert code == 0, err
    expected = f"zoe@{socket.gethostname()}"
    assert eventually(lambda: f"authored changed by {expected}" in node.log.read_text())


def test_metadata_delete_and_the_audit_log_from_the_command_line(
    node: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*argv: str) -> str:
        code, out, err = chorus(capsys, "flags", *argv, url=node.url)
        assert code == 0, err
        return out

    run("enable", "described", "--author", "ann")
    out = run("meta", "described", "--owner", "payments", "--expires", "2027-01-31")
    assert "described: set owner 'payments', expires '2027-01-31'" in out
    out = run("get", "described")
    assert "owner: payments" in out
    assert "expires: 2027-01-31" in out
    out = run("audit", "described")
    lines = out.splitlines()
    assert lines[0].split() == [
        "WHEN",
        "(UTC)",
        "FLAG",
        "AUTHOR",
        "ACTION",
        "TARGET",
        "VALUE",
        "NODE",
    ]
    assert [line.split()[4] for line in lines[1:]] == ["set_metadata", "enable"]
    assert lines[2].split()[3] == "ann"
    when = datetime.datetime.strptime(" ".join(lines[1].split()[:2]), "%Y-%m-%d %H:%M:%S.%f")
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert abs((now - when).total_seconds()) < 60  # the HLC time, read as wall time
    out = run("delete", "described", "--author", "ann")
    assert "described: deleted (gates and metadata) (author ann)" in out
    assert node.get("/flags/described").status_code == 404
    assert run("audit", "--limit", "1").splitlines()[1].split()[4] == "delete"
    code, _, err = chorus(capsys, "flags", "delete", "described", url=node.url)
    assert code == 1
    assert "404: no flag named 'described'" in err
    code, _, err = chorus(capsys, "flags", "meta", "described", url=node.url)
    assert code == 2
    assert "give at least one of --description, --owner, --expires" in err


def serve_fails(*argv: str) -> str:
    """Run `chorus serve` expecting a startup error; return its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "flags.cli", "serve", "--node-id", "x", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "CHORUS_SECRET": SECRET, "CHORUS_TOKEN": TOKEN},
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("chorus serve: error: ")
    return errors[0]


def test_serve_startup_errors_are_one_line() -> None:
    free = f"127.0.0.1:{free_port()}"
    assert "--listen" in serve_fails("--listen", "7410", "--http", free)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        line = serve_fails("--listen", busy, "--http", f"127.0.0.1:{free_port()}")
        assert (
            line == f"chorus serve: error: cannot listen on --listen {busy}: Address already in use"
        )
        line = serve_fails("--listen", "127.0.0.1:0", "--http", busy)
        assert (
            line == f"chorus serve: error: cannot listen on --http {busy}: Address already in use"
        )
    # An address no interface has (TEST-NET-1, RFC 5737).
    line = serve_fails("--listen", "192.0.2.1:7400", "--http", free)
    assert line.startswith("chorus serve: error: cannot listen on --listen 192.0.2.1:7400: ")


@pytest.mark.timeout(60)
def test_serve_reads_need_token_guards_reads_but_not_probes(tmp_path: Path) -> None:
    gossip, http = free_port(), free_port()
    process = subprocess.Popen(
        serve_argv("guarded", gossip, http, (), "--reads-need-token"),
        env={**os.environ, "CHORUS_SECRET": SECRET, "CHORUS_TOKEN": TOKEN},
        stderr=(tmp_path / "serve.log").open("wb"),
    )
    url = f"http://127.0.0.1:{http}"
    try:
        assert eventually(lambda: _status(url + "/ready") == 200, timeout=20)
        assert _status(url + "/health") == 200
        for path in ("/flags", "/cluster", "/metrics", "/audit"):
            assert _status(url + path) == 401, path
            assert _status(url + path, TOKEN) == 200, path
    finally:
        process.terminate()
        process.wait(10)


def _status(url: str, token: str | None = None) -> int | None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        return httpx.get(url, headers=headers, timeout=2).status_code
    except httpx.HTTPError:
        return None


@pytest.mark.timeout(60)
def test_serve_advertise_is_the_address_the_transport_gives_peers(tmp_path: Path) -> None:
    """``--advertise`` reaches `TcpTransport(advertise=...)`: port 0 there stands for the
    port bound, and a malformed one is refused at start like ``--listen``."""
    assert "--advertise" in serve_fails("--advertise", "no-port", "--http", "127.0.0.1:0")
    gossip, http = free_port(), free_port()
    log = tmp_path / "serve.log"
    process = subprocess.Popen(
        serve_argv("adv", gossip, http, (), "--advertise", "localhost:0"),
        env={**os.environ, "CHORUS_SECRET": SECRET, "CHORUS_TOKEN": TOKEN},
        stderr=log.open("wb"),
    )
    try:
        assert eventually(lambda: _status(f"http://127.0.0.1:{http}/ready") == 200, timeout=20)
        assert f"tcp adv: listening on localhost:{gossip}" in log.read_text()
        assert f"cluster 127.0.0.1:{gossip} (peers dial localhost:{gossip})" in log.read_text()
    finally:
        process.terminate()
        process.wait(10)

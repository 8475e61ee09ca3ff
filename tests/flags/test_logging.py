"""chorus' log lines: escaped, truncated, key=value or JSON (flags/_logging.py)."""

import io
import json
import logging
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import structlog

from flags import _logging
from flags.cli import build_parser
from tests.helpers import eventually, free_port, serve_argv

FORGED = 'peer up" level=ERROR logger=chorus.node msg="forged'
BREAKS = [
    "\n",
    "\r",
    "\r\n",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x85",
    "\u2028",
    "\u2029",
    "\x00",
    "\x1b[2K",  # an ANSI escape that erases the terminal line
    "\u202e",  # right-to-left override
    "\ud800",  # a lone surrogate
    "\\",
    '"',
    "\t",
]

# -- a strict logfmt reader: quoted values with backslash escapes, bare values ------

_PAIR = re.compile(r'([a-z]+)=("(?:[^"\\]|\\.)*"|[^ "\\]+)(?: |$)')
_ESCAPE = re.compile(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|[nrt\\\"])")
_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"'}


def _unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        return _SIMPLE[code] if code in _SIMPLE else chr(int(code[1:], 16))

    assert "\\" not in _ESCAPE.sub("", text), f"a stray backslash in {text!r}"
    return _ESCAPE.sub(one, text)


def parse_logfmt(line: str) -> dict[str, str]:
    """Every field of *line*, or an assertion error if any byte of it is not a field."""
    assert line.isprintable(), repr(line)
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(line):
        match = _PAIR.match(line, pos)
        assert match, f"not a field at {pos}: {line[pos:]!r}"
        key, raw = match.groups()
        assert key not in fields, f"{key} twice in {line!r}"
        fields[key] = _unescape(raw[1:-1]) if raw.startswith('"') else raw
        pos = match.end()
    return fields


def emit(
    log_format: str,
    msg: str,
    *args: object,
    name: str = "chorus.test",
    exc_info: bool = False,
) -> str:
    """What one ``logger.info`` call writes with chorus' formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_logging.formatter(log_format))
    logger = logging.Logger(name)  # not registered: no propagation to the root logger
    logger.addHandler(handler)
    if exc_info:
        logger.exception(msg, *args)
    else:
        logger.info(msg, *args)
    return stream.getvalue()


def one_line(output: str) -> str:
    assert output.endswith("\n"), repr(output)
    line = output[:-1]
    assert len(line.splitlines()) == 1, repr(output)
    assert "\n" not in line, repr(output)
    assert "\r" not in line, repr(output)
    return line


# -- key=value ----------------------------------------------------------------------


def test_a_plain_event_keeps_the_key_value_format() -> None:
    line = one_line(emit("keyvalue", "peer %s is up", "b", name="chorus.node"))
    assert re.fullmatch(
        r"ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=INFO logger=chorus\.node "
        r'msg="peer b is up"',
        line,
    ), line


@pytest.mark.parametrize("separator", BREAKS, ids=repr)
def test_no_message_breaks_the_line_or_forges_a_field(separator: str) -> None:
    message = f"rejected {separator}ts=2024-01-01T00:00:00.000Z {FORGED}{separator}end"
    fields = parse_logfmt(one_line(emit("keyvalue", "%s", message)))
    assert list(fields) == ["ts", "level", "logger", "msg"]
    assert fields["level"] == "INFO"
    assert fields["msg"] == message  # escaped, not lost: it reads back exactly


@pytest.mark.parametrize("separator", ["\n", "\r", "\u2028", " ", "="], ids=repr)
def test_the_logger_name_is_escaped_too(separator: str) -> None:
    name = f"chorus{separator}level=ERROR"
    fields = parse_logfmt(one_line(emit("keyvalue", "hello", name=name)))
    assert fields["logger"] == name
    assert fields["level"] == "INFO"


def test_printable_non_ascii_text_stays_readable() -> None:
    line = one_line(emit("keyvalue", "drapeau activé: 新しい ✓"))
    assert 'msg="drapeau activé: 新しい ✓"' in line


def test_an_exception_is_one_escaped_line_with_the_whole_traceback() -> None:
    try:
        raise ValueError(f"bad name\n{FORGED}")
    except ValueError:
        output = emit("keyvalue", "http: rejected PUT %s", "x\ny", exc_info=True)
    fields = parse_logfmt(one_line(output))
    assert list(fields) == ["ts", "level", "logger", "msg", "error"]
    assert fields["level"] == "ERROR"
    assert fields["msg"] == "http: rejected PUT x\ny"
    assert fields["error"].startswith("Traceback (most recent call last):\n")
    assert "test_an_exception_is_one_escaped_line" in fields["error"]
    assert fields["error"].endswith(f"ValueError: bad name\n{FORGED}")


def test_a_long_message_is_cut_with_a_marker() -> None:
    name = "n" * 10_000
    line = one_line(emit("keyvalue", "http: rejected PUT %s: too long", name))
    assert len(line) < _logging.MAX_VALUE_CHARS + 200
    msg = parse_logfmt(line)["msg"]
    assert msg == "http: rejected PUT " + "n" * 981 + "...[9029 chars cut]"


def test_truncation_counts_characters_before_escaping() -> None:
    """A cut never splits an escape (which would unbalance the quotes); a value of
    control characters is at most 6 characters per character kept."""
    line = one_line(emit("keyvalue", "%s", "\u2028" * 5000))
    fields = parse_logfmt(line)
    assert fields["msg"] == "\u2028" * 1000 + "...[4000 chars cut]"
    assert len(line) < 6 * _logging.MAX_VALUE_CHARS + 200


def test_a_long_traceback_keeps_its_end() -> None:
    try:
        raise RuntimeError("x" * 3000 + " the end")
    except RuntimeError:
        output = emit("keyvalue", "failed", exc_info=True)
    error = parse_logfmt(one_line(output))["error"]
    assert re.fullmatch(r"\[\d+ chars cut\]\.\.\.x+ the end", error), error[:80]
    assert len(error) < _logging.MAX_VALUE_CHARS + 30


def test_structlog_logfmt_alone_does_not_escape_enough() -> None:
    """Why chorus escapes values itself before structlog joins them: structlog's
    LogfmtRenderer escapes newlines but leaves a carriage return, other control
    characters and Unicode line separators raw, and escapes backslashes only in
    quoted values, so two different messages render alike. (If structlog fixes this,
    this test says so; chorus' own escaping stays correct either way.)"""
    render = structlog.processors.LogfmtRenderer()
    for raw in ("a\rlevel=ERROR", "a\x1b[2Kb", "a\u2028b"):
        assert any(c in render(None, "", {"msg": raw}) for c in "\r\x1b\u2028")
    assert render(None, "", {"msg": "a\nb"}) == render(None, "", {"msg": "a\\nb"})
    ours = [one_line(emit("keyvalue", m)).split(" msg=")[1] for m in ("a\nb", "a\\nb")]
    assert ours == ['"a\\nb"', '"a\\\\nb"']


# -- JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize("separator", BREAKS, ids=repr)
def test_json_is_one_object_per_line(separator: str) -> None:
    message = f"rejected {separator}{FORGED}"
    line = one_line(emit("json", "%s", message, name="chorus.node"))
    assert line.isascii()
    event = json.loads(line)
    assert list(event) == ["ts", "level", "logger", "msg"]
    assert event["level"] == "INFO"
    assert event["logger"] == "chorus.node"
    assert event["msg"] == message
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["ts"])


def test_json_carries_the_error_and_truncates() -> None:
    try:
        raise KeyError("k")
    except KeyError:
        output = emit("json", "%s", "y" * 5000, exc_info=True)
    event = json.loads(one_line(output))
    assert event["level"] == "ERROR"
    assert event["msg"] == "y" * 1000 + "...[4000 chars cut]"
    assert event["error"].startswith("Traceback (most recent call last):\n")
    assert event["error"].endswith("KeyError: 'k'")


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format"):
        _logging.formatter("xml")


# -- configure and the command line -------------------------------------------------


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_configure_takes_a_level_in_any_case_and_a_format(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    _logging.configure("debug", "json")
    assert root_logger.level == logging.DEBUG
    logging.getLogger("chorus.node").debug("tick\nlevel=ERROR")
    event = json.loads(one_line(capsys.readouterr().err))
    assert event["msg"] == "tick\nlevel=ERROR"
    assert event["level"] == "DEBUG"


@pytest.mark.parametrize("given", ["debug", "DEBUG", "Debug"])
def test_log_level_takes_any_case(given: str) -> None:
    args = build_parser().parse_args(["serve", "--node-id", "a", "--log-level", given])
    assert args.log_level == "DEBUG"


def test_log_format_is_keyvalue_or_json(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["serve", "--node-id", "a"]).log_format == "keyvalue"
    args = parser.parse_args(["serve", "--node-id", "a", "--log-format", "json"])
    assert args.log_format == "json"
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["serve", "--node-id", "a", "--log-format", "xml"])
    assert exit_info.value.code == 2
    assert "--log-format" in capsys.readouterr().err


# -- a real `chorus serve` ----------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("log_format", ["keyvalue", "json"])
def test_serve_logs_a_hostile_flag_name_on_one_line(tmp_path: Path, log_format: str) -> None:
    """A write whose author forges a line, and one without a token to a
    10,000-character name: each is logged as one line of the chosen format."""
    gossip, http = free_port(), free_port()
    log = tmp_path / "a.log"
    env = {**os.environ, "CHORUS_SECRET": "5ecae7a1b2c3d4e5f60718293a4b0e1f", "CHORUS_TOKEN": "t"}
    argv = serve_argv("a", gossip, http, (), "--log-format", log_format, "--log-level", "debug")
    with log.open("ab") as stderr:
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://127.0.0.1:{http}"
    try:

        def ready() -> bool:
            try:
                return httpx.get(url + "/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert eventually(ready, 20), log.read_text()
        forged = 'ops\nts=2024-01-01T00:00:00.000Z level=ERROR logger=chorus.node msg="forged"'
        auth = {"Authorization": "Bearer t"}
        body = {"enabled": True, "author": forged}
        answer = httpx.put(f"{url}/flags/f", json=body, headers=auth, timeout=2)
        assert answer.status_code == 200
        long_name = quote("n" * 10_000, safe="")
        answer = httpx.put(f"{url}/flags/{long_name}", json={"enabled": True}, timeout=2)
        assert answer.status_code == 401
        assert eventually(lambda: "rejected a write" in log.read_text(), 10)
    finally:
        process.kill()  # not SIGTERM: a lone node's shutdown says at ERROR its writes are lost
        process.wait(10)
    lines = log.read_text().splitlines()
    events: list[dict[str, Any]] = [
        json.loads(line) if log_format == "json" else parse_logfmt(line) for line in lines
    ]
    assert all(e["level"] in ("DEBUG", "INFO", "WARNING") for e in events), lines
    changed = [e["msg"] for e in events if e["msg"].startswith("http: f changed by")]
    assert changed == [f"http: f changed by {forged}"], lines  # escaped, read back whole
    rejected = [e["msg"] for e in events if e["msg"].startswith("http: rejected a write")]
    assert len(rejected) == 1, lines
    assert rejected[0].endswith("...[9055 chars cut]")
    assert max(len(line) for line in lines) < 1200

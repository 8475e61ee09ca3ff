"""`chorus flags` for typed flags, run in-process (``main([...])``) against one real
`chorus serve`: variants, rules, fallthrough, off variant, prerequisites, segments,
schedules and evaluate; each with a happy path and one error."""

import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flags import cli
from flags.cli import main
from tests.flags.test_e2e import TOKEN, Serve

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    serve = Serve("typed", [], tmp_path_factory.mktemp("cli-typed"))
    try:
        assert serve.wait(), serve.log.read_text()[-2000:]
        yield serve
    finally:
        serve.process.kill()
        serve.process.wait(10)


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_TOKEN", TOKEN)


def chorus(capsys: pytest.CaptureFixture[str], node: Serve, *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process against ``node``: (exit code, stdout, stderr)."""
    writes = (*cli._WRITES, *cli._TYPED_WRITES)
    author = ["--author", "ann"] if argv[1] in writes else []
    try:
        code = main([*argv, "--url", node.url, "--timeout", "5", *author])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def run(capsys: pytest.CaptureFixture[str], node: Serve, *argv: str) -> str:
    code, out, err = chorus(capsys, node, "flags", *argv)
    assert code == 0, err
    return out


def read(node: Serve, name: str) -> dict[str, Any]:
    document: dict[str, Any] = node.get("/flags/" + urllib.parse.quote(name, safe="")).json()
    return document


def test_a_typed_flag_built_from_the_command_line_evaluates_and_reads_back(
    node: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run(capsys, node, "variants", "colour", "--type", "string", 'blue="#00f"', 'green="#0f0"')
    assert "colour: variants set to blue, green (author ann)" in out
    run(capsys, node, "enable", "colour")
    run(capsys, node, "fallthrough", "colour", "--split", "green=50,blue=50")
    run(capsys, node, "off-variant", "colour", "blue")
    run(capsys, node, "segment", "adults", "--when", "age gte 18")
    out = run(
        capsys,
        node,
        *("rule", "colour", "eu", "--when", "country in fr,de", "--when", "age lt 120"),
        *("--segment", "adults", "--serve", "green"),
    )
    assert "colour: rule eu set (author ann)" in out
    run(
        capsys,
        node,
        "rule",
        "colour",
        "vip",
        "--when",
        "plan in vip",
        "--serve",
        "blue",
        "--before",
        "eu",
    )
    flag = read(node, "colour")
    assert [r["id"] for r in flag["rules"]] == ["vip", "eu"]
    assert flag["rules"][1]["conditions"] == [
        {"attribute": "country", "op": "in", "values": ["fr", "de"]},
        {"attribute": "age", "op": "lt", "values": [120]},
    ]
    assert flag["fallthrough"] == {"split": {"green": 50, "blue": 50}}
    assert flag["off_variant"] == "blue"

    out = run(
        capsys,
        node,
        *("evaluate", "colour", "--actor", "u1", "--group", "g"),
        *("--attr", "country=fr", "--attr", "age=30", "--default", '"none"'),
    )
    assert out.splitlines() == ['value: "#0f0"', "variant: green", "reason: TARGETING_MATCH (eu)"]
    out = run(
        capsys,
        node,
        "evaluate",
        "colour",
        "--attr",
        "country=fr",
        "--attr",
        "age=12",
        "--actor",
        "u1",
    )
    assert out.splitlines()[2].startswith("reason: SPLIT")
    out = run(capsys, node, "evaluate", "nowhere", "--default", "7")
    assert out.splitlines() == ["value: 7", "variant: -", "reason: ERROR (unknown flag)"]

    out = run(capsys, node, "get", "colour")
    assert "type: string" in out
    assert 'variants: blue="#00f", green="#0f0"' in out
    assert "off variant: blue" in out
    assert "fallthrough: blue 50% · green 50%" in out
    assert "  vip: plan in vip -> blue" in out
    assert "  eu: country in fr, de; age lt 120; segment adults -> green" in out
    assert "enabled:" not in out  # a string flag is never "enabled": evaluate says what it serves
    out = run(capsys, node, "segments")
    assert out.splitlines() == ["adults: age gte 18"]

    run(capsys, node, "rule", "colour", "vip", "--delete")
    run(capsys, node, "fallthrough", "colour", "--delete")
    run(capsys, node, "off-variant", "colour", "--delete")
    flag = read(node, "colour")
    assert [r["id"] for r in flag["rules"]] == ["eu"]
    assert "fallthrough" not in flag
    assert "off_variant" not in flag
    assert run(capsys, node, "segment", "adults", "--delete").strip().endswith("no segments")


def test_prerequisites_and_schedules_from_the_command_line(
    node: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, node, "enable", "base")
    run(capsys, node, "enable", "child")
    out = run(capsys, node, "prerequisite", "child", "base", "true")
    assert "child: requires base to serve true (author ann)" in out
    assert "prerequisite: base serves true" in out
    # The other way round closes a cycle: refused, the cycle shown, exit 1.
    code, _out, err = chorus(capsys, node, "flags", "prerequisite", "base", "child", "true")
    assert code == 1
    assert "a prerequisite cycle: base -> child -> base" in err
    assert "(at /)" in err
    run(capsys, node, "prerequisite", "child", "base", "--delete")
    assert "prerequisites" not in read(node, "child")

    out = run(
        capsys,
        node,
        *("schedule", "child", "launch", "--at", "2030-12-01T09:00:00Z"),
        *("--set", "boolean=false", "--set", "actor:u1=true", "--unset", "percentage_of_actors"),
    )
    assert "child: schedule launch set for 2030-12-01T09:00:00Z (author ann)" in out
    assert (
        "schedule launch at 2030-12-01T09:00:00Z: set boolean false; set actor u1 true; "
        "unset percentage_of_actors" in out
    )
    schedule = read(node, "child")["schedules"]["launch"]
    assert schedule["set"] == [["boolean", False], ["actor", "u1", True]]
    run(capsys, node, "schedule", "child", "launch", "--cancel")
    assert "schedules" not in read(node, "child")


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        # Refused by the node: exit 1, the pointer into the body shown.
        (("variants", "num", "--type", "integer", "one=1.5"), 1, "(at /variants/one)"),
        (("rule", "num", "r1", "--when", "age like 3", "--serve", "a"), 1, "(at /conditions/0/op)"),
        (("fallthrough", "num", "--split", "a=0"), 1, "(at /split)"),
        (("off-variant", "num", "a b"), 1, "(at /variant)"),
        (("segment", "s", "--when", "age gte x"), 1, "(at /conditions/0/values/0)"),
        (("schedule", "num", "s1", "--at", "tomorrow", "--set", "boolean=true"), 1, "(at /at)"),
        (("rule", "num", "r9", "--delete"), 1, "404"),
        # Refused by the command line: exit 2.
        (("variants", "num", "blue=#00f"), 2, "is not JSON"),
        (("rule", "num", "r1", "--when", "age"), 2, "--when 'age'"),
        (("rule", "num", "r1", "--serve", "a", "--split", "a=1"), 2, "--serve VARIANT or --split"),
        (("fallthrough", "num", "--split", "a=x"), 2, "--split 'a=x'"),
        (("off-variant", "num"), 2, "give VARIANT or --delete"),
        (("schedule", "num", "s1", "--set", "boolean"), 2, "give --at"),
        (("schedule", "num", "s1", "--at", "1", "--set", "boolean"), 2, "--set takes"),
        (("evaluate", "num", "--attr", "country"), 2, "--attr takes"),
    ],
)
def test_errors_exit_non_zero_with_one_line(
    node: Serve, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], code: int, words: str
) -> None:
    got, _out, err = chorus(capsys, node, "flags", *argv)
    assert got == code, err
    assert words in err
    assert "Traceback" not in err
    if code == 1:
        assert len(err.strip().splitlines()) == 1, err


def test_typed_writes_need_the_token(
    node: Serve, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wrong = tmp_path / "token"
    wrong.write_text("wrong")
    code, _out, err = chorus(
        capsys, node, "flags", "fallthrough", "tok", "--serve", "a", "--token-file", str(wrong)
    )
    assert code == 1
    assert "401" in err
    assert node.get("/flags/tok").status_code == 404


def test_values_on_the_command_line_are_json_when_they_parse() -> None:
    assert cli._json_value("18") == 18
    assert cli._json_value('"18"') == "18"
    assert cli._json_value("fr") == "fr"
    assert cli._json_value("1.2.3") == "1.2.3"
    parser = cli.build_parser()
    assert cli._condition("version semver_gte 2.0.0,3.1.0", parser) == {
        "attribute": "version",
        "op": "semver_gte",
        "values": ["2.0.0", "3.1.0"],
    }
    assert cli._split("a=1, b=2", parser) == {"a": 1, "b": 2}

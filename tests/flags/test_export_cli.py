"""A whole-cluster restart, as an operator lives it, with real processes: ``chorus
flags export`` before, ``chorus serve --defaults`` and ``chorus flags import`` after."""

import json
from pathlib import Path

import pytest

from flags.cli import main
from tests.flags.test_cli import serve_fails
from tests.flags.test_e2e import TOKEN, Serve
from tests.helpers import eventually, free_port

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_TOKEN", TOKEN)


def chorus(capsys: pytest.CaptureFixture[str], node: Serve, *argv: str) -> tuple[int, str, str]:
    """Run ``chorus flags ...`` in-process against ``node``: (exit code, stdout, stderr)."""
    try:
        code = main(["flags", *argv, "--url", node.url, "--timeout", "5"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def evaluate(node: Serve, name: str, actor: str) -> tuple[bool, str]:
    document = node.get(f"/flags/{name}", params={"actor": actor}).json()
    return document["enabled"], document["reason"]


def stop(*nodes: Serve) -> None:
    for node in nodes:
        node.process.kill()
        node.process.wait(10)


def test_export_then_a_new_cluster_answers_from_defaults_and_imports_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backup = tmp_path / "flags.json"
    old = Serve("a", [], tmp_path)
    try:
        assert old.wait(), old.log.read_text()[-2000:]
        for argv in (
            ("enable", "checkout", "--actor", "ann", "--group", "staff"),
            ("enable", "search", "--percentage-of-actors", "0.3"),
            ("disable", "legacy"),
        ):
            assert chorus(capsys, old, *argv)[0] == 0
        assert old.put("/flags/checkout/meta", {"owner": "payments"}).status_code == 200
        code, out, err = chorus(capsys, old, "export", "--output", str(backup))
        assert (code, out) == (0, "")
        assert f"exported 3 flags from node a to {backup}" in err
        exported = json.loads(backup.read_text())
        assert [f["name"] for f in exported["flags"]] == ["checkout", "legacy", "search"]
        assert exported["flags"][0]["owner"] == "payments"
    finally:
        stop(old)  # the whole cluster is gone, and its flags with it

    new = Serve("b", [], tmp_path, options=("--defaults", str(backup)))
    try:
        assert new.wait(), new.log.read_text()[-2000:]
        assert evaluate(new, "checkout", "ann") == (True, "default")
        assert evaluate(new, "checkout", "bob") == (False, "default")
        assert new.get("/export").json()["flags"] == []  # defaults are never written

        code, out, _ = chorus(capsys, new, "import", str(backup), "--dry-run")
        assert code == 0
        assert "checkout: actor ann: on; group staff: on; owner: 'payments'" in out
        assert out.strip().endswith("dry run: 3 flags would change, 0 unchanged (node b)")
        assert new.get("/export").json()["flags"] == []

        code, out, _ = chorus(capsys, new, "import", str(backup), "--author", "ops")
        assert code == 0
        assert "3 flags changed, 0 unchanged (node b, author ops)" in out
        assert evaluate(new, "checkout", "ann") == (True, "actor")
        assert new.get("/export").json()["flags"] == exported["flags"]
        code, out, _ = chorus(capsys, new, "import", str(backup))
        assert out.strip().startswith("0 flags changed, 3 unchanged")
        audit = new.get("/flags/checkout/audit").json()["audit"]
        assert [(e["action"], e["author"]) for e in audit] == [("import", "ops")]
    finally:
        stop(new)


def test_defaults_never_override_the_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "stale.json"
    stale.write_text(
        json.dumps(
            {
                "format": "chorus-flags",
                "version": 1,
                "flags": [{"name": "checkout", "boolean": True}, {"name": "only-here"}],
            }
        )
    )
    first = Serve("a", [], tmp_path)
    joiner: Serve | None = None
    try:
        assert first.wait(), first.log.read_text()[-2000:]
        assert chorus(capsys, first, "disable", "checkout")[0] == 0
        joiner = Serve("b", [first.gossip], tmp_path, options=("--defaults", str(stale)))
        assert joiner.wait(), joiner.log.read_text()[-2000:]
        assert evaluate(joiner, "checkout", "ann") == (False, "boolean")
        assert joiner.get("/flags/only-here").status_code == 404  # no gate: no default
        for node in (first, joiner):  # nothing of the file reached the cluster
            flags = node.get("/export").json()["flags"]
            assert [(f["name"], f["boolean"]) for f in flags] == [("checkout", False)]
        assert chorus(capsys, first, "clear", "checkout")[0] == 0
        # With no gate left in the cluster, each node answers with its own default.
        assert eventually(lambda: evaluate(joiner, "checkout", "ann") == (True, "default"))
        assert first.get("/flags/checkout").status_code == 404  # and none here
    finally:
        stop(first, *([joiner] if joiner else []))


def test_bad_files_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "chorus-flags", "version": 1, "flags": [{"name": "a b"}]}')
    free = f"127.0.0.1:{free_port()}"
    line = serve_fails("--listen", "127.0.0.1:0", "--http", free, "--defaults", str(bad))
    assert line.startswith(f"chorus serve: error: --defaults {bad}: at /flags/0/name: ")
    line = serve_fails("--listen", "127.0.0.1:0", "--http", free, "--defaults", "/nonexistent")
    assert "--defaults /nonexistent: cannot read it: No such file or directory" in line
    # The file is checked before any request: no node needs to answer.
    with pytest.raises(SystemExit) as exited:
        main(["flags", "import", str(bad), "--url", "http://127.0.0.1:9"])
    assert exited.value.code == 2
    assert f"import {bad}: at /flags/0/name: a flag name is" in capsys.readouterr().err

"""The distribution: its name (not ``chorus``, taken on the package index), the places
that name it, the license and the typed packages it ships."""

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from flags import cli

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
NAME = PROJECT["name"]
PACKAGES = ("hlc", "crdt", "transport", "flags")
# `pip install X`, `pip install 'X[extra]'`: the distribution X.
PIP_INSTALL = re.compile(r"pip install\s+'?([A-Za-z0-9][A-Za-z0-9._-]*)")


def test_the_distribution_is_not_named_like_the_unrelated_projects() -> None:
    assert NAME not in {"chorus", *PACKAGES}
    assert cli.DISTRIBUTION == NAME


def test_the_extras_that_name_the_project_name_it_by_its_distribution() -> None:
    extras = PROJECT["optional-dependencies"]
    assert f"{NAME}[test]" in extras["dev"]
    for extra, requirements in extras.items():
        for requirement in requirements:
            assert not requirement.startswith("chorus["), (extra, requirement)


def test_the_command_and_import_packages_keep_their_names() -> None:
    assert PROJECT["scripts"] == {"chorus": "flags.cli:main"}
    setuptools = PYPROJECT["tool"]["setuptools"]
    on_disk = {
        str(init.parent.relative_to(ROOT)).replace("/", ".")
        for package in PACKAGES
        for init in (ROOT / package).rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == on_disk
    for package in PACKAGES:
        assert (ROOT / package / "py.typed").is_file(), package


def test_license_and_urls() -> None:
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert set(PROJECT["urls"]) >= {"Homepage", "Source", "Issues"}
    assert "Typing :: Typed" in PROJECT["classifiers"]


@pytest.mark.timeout(60)
def test_version_names_the_installed_distribution() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flags.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=True,
    )
    # The distribution that installed these packages (an editable install of an older
    # checkout may still be named otherwise): the one providing flags and transport.
    providers = metadata.packages_distributions()
    ours = set(providers["flags"]) & set(providers["transport"])
    installed = NAME if NAME in ours else ours.pop()
    assert result.stdout.strip() == f"{installed} {metadata.version(installed)}"


def test_version_passes_over_an_unrelated_flags_distribution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    providers = {"flags": ["flags", NAME], "transport": [NAME]}
    versions = {"flags": "0.0.1", NAME: "1.2.3"}
    monkeypatch.setattr(metadata, "packages_distributions", lambda: providers)
    monkeypatch.setattr(metadata, "version", versions.__getitem__)
    assert cli._version() == f"{NAME} 1.2.3"
    # A virtualenv that still holds the install from before the rename.
    providers["flags"] = ["chorus", "flags", NAME]
    providers["transport"] = ["chorus", NAME]
    versions["chorus"] = "0.1.0"
    assert cli._version() == f"{NAME} 1.2.3"


def _pip_installs() -> list[tuple[str, str, str]]:
    """Every ``pip install NAME`` in the README and the Python sources: (file, line,
    the distribution named)."""
    files = [ROOT / "README.md", *sorted(ROOT.glob("[!.]*/**/*.py"))]
    found = []
    for path in files:
        for line in path.read_text().splitlines():
            for match in PIP_INSTALL.finditer(line):
                found.append((str(path.relative_to(ROOT)), line, match.group(1)))
    return found


def test_pip_commands_name_the_distribution() -> None:
    installs = _pip_installs()
    assert any(name == NAME for _file, _line, name in installs)
    for file, line, name in installs:
        if name == "chorus":  # only as the warning against it
            assert "Do not `pip install chorus`" in line, (file, line)
        else:
            assert name == NAME or not name.startswith("chorus"), (file, line)


@pytest.mark.timeout(300)
def test_the_wheel_carries_the_license_and_py_typed(tmp_path: Path) -> None:
    # A copy, so that the build leaves no build/ or egg-info (whose metadata Python
    # would find from the checkout) behind. pip builds in an isolated environment:
    # setuptools comes from the package index.
    source = tmp_path / "source"
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        copy = source / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes((ROOT / name).read_bytes())
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        timeout=240,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name.startswith(NAME.replace("-", "_") + "-")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    for package in PACKAGES:
        assert f"{package}/py.typed" in names
    # The web UI's templates and static files are package data.
    for data in (
        "templates/base.html",
        "templates/flag.html",
        "static/chorus.js",
        "static/chorus.css",
    ):
        assert f"flags/ui/{data}" in names
    # So are the JSON Schemas that GET /schema/<name>.json serves.
    for schema in ("rule", "condition", "serve", "segment", "schedule"):
        assert f"flags/schema/{schema}.json" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "chorus = flags.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

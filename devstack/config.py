"""What a local stack is configured with, and the errors it raises.

``StackConfig`` says where the stack keeps its state and which ports it uses,
``SimulatorOptions`` how the facility simulator behaves; ``StackError`` and ``PortInUseError``
are what starting or using the stack raises. ``redirect_facilities`` writes the facilities file
the apps get when the simulator is not on its default port. Nothing here starts a process.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent

# Where the bundled facilities send print jobs: the simulator on its default port.
DEFAULT_SIMULATOR_PORT = 8100


class StackError(RuntimeError):
    """A process did not start, died, or an HTTP call to the stack failed."""


class PortInUseError(StackError):
    """A fixed port is taken, usually by an earlier ``make run`` still running."""

    def __init__(self, name: str, port: int) -> None:
        super().__init__(f"port {port} ({name}) is already in use")
        self.name = name
        self.port = port


@dataclass(frozen=True)
class SimulatorOptions:
    """How the facility simulator behaves (``PRINTFLOW_SIM_*``); None keeps its own default."""

    report_events: bool = True
    response_delay: float | None = None  # seconds before it answers a print job
    printed_after: float | None = None  # seconds from the job to "printed"
    shipped_after: float | None = None  # from "printed" to "shipped"
    delivered_after: float | None = None  # from "shipped" to "delivered"
    env: Mapping[str, str] = field(default_factory=dict)  # any other PRINTFLOW_SIM_* setting

    def environment(self, printflow_url: str) -> dict[str, str]:
        env = {
            "PRINTFLOW_SIM_REPORT_EVENTS": "1" if self.report_events else "0",
            "PRINTFLOW_SIM_PRINTFLOW_URL": printflow_url,
        }
        delays = {
            "RESPONSE_DELAY": self.response_delay,
            "PRINTED_AFTER": self.printed_after,
            "SHIPPED_AFTER": self.shipped_after,
            "DELIVERED_AFTER": self.delivered_after,
        }
        for name, seconds in delays.items():
            if seconds is not None:
                env[f"PRINTFLOW_SIM_{name}"] = f"{seconds:g}"
        env.update(self.env)
        return env


@dataclass(frozen=True)
class StackConfig:
    """Where the stack keeps its state and which ports it uses (0: a free one, for tests)."""

    data_dir: Path
    root: Path = REPO_ROOT
    host: str = "127.0.0.1"
    temporal_port: int = 7233
    ui_port: int = 8233
    api_port: int = 8000
    simulator_port: int = DEFAULT_SIMULATOR_PORT
    smtp_port: int = 1025
    ui: bool = True
    # The Web UI decodes encrypted payloads at the API's /codec (make run: with its keys).
    ui_codec: bool = False
    # None: a random token per Stack (``make run`` passes a stored one, stable across runs).
    admin_token: str | None = None
    # None: the bundled facilities, pointed at this stack's simulator if it is not on :8100.
    facilities_file: Path | None = None
    simulator: SimulatorOptions = field(default_factory=SimulatorOptions)
    # How many API processes and workers run: "api", "api-2", … (each API on a port of its
    # own, the first on ``api_port``) and "worker", "worker-2", …, all on one database.
    apis: int = 1
    workers: int = 1
    # Extra environment for the app processes (worker, API, simulator); wins over ours.
    env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout: float = 60.0
    stop_grace: float = 10.0

    @classmethod
    def ephemeral(cls, data_dir: Path, **overrides: Any) -> StackConfig:
        """Free random ports and no Web UI: what tests want, so they never collide. The print
        files' checks are off (tests' orders name made-up file URLs) unless ``env`` turns
        them on (``PRINTFLOW_PREFLIGHT=on``, with files the stack serves)."""
        values: dict[str, Any] = {
            "temporal_port": 0,
            "ui_port": 0,
            "api_port": 0,
            "simulator_port": 0,
            "smtp_port": 0,
            "ui": False,
        }
        values.update(overrides)
        values["env"] = {"PRINTFLOW_PREFLIGHT": "off", **overrides.get("env", {})}
        return cls(data_dir=data_dir, **values)


def redirect_facilities(bundled: Path, target: Path, simulator_url: str) -> Path:
    """Write a copy of ``bundled`` to ``target`` that sends :8100's print jobs to the simulator."""
    facilities = json.loads(bundled.read_text())
    for facility in facilities:
        if urlsplit(str(facility.get("api_url", ""))).port == DEFAULT_SIMULATOR_PORT:
            facility["api_url"] = simulator_url
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(facilities, indent=2) + "\n")
    return target

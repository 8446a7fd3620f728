"""How the simulated facility is configured: ``SimulatorConfig`` and where it comes from.

``PRINTFLOW_SIM_*`` sets every field; the accepted bearer tokens come from
``PRINTFLOW_SIM_TOKENS`` or, by default, from the facilities file printflow itself reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

ENV_PREFIX = "PRINTFLOW_SIM_"
BUNDLED_FACILITIES = Path(__file__).resolve().parent.parent / "domain" / "facilities.json"


class SimulatorConfigError(ValueError):
    """The environment or the facilities file cannot give a usable configuration."""


class SimulatorConfig(BaseModel):
    """How the simulated facility behaves; every delay is in seconds."""

    tokens: dict[str, str] = Field(default_factory=dict, description="api token -> facility id")
    response_delay: float = Field(0.0, ge=0)
    report_events: bool = False
    printflow_url: str | None = None
    printed_after: float = Field(5.0, ge=0)
    shipped_after: float = Field(5.0, ge=0)
    delivered_after: float = Field(5.0, ge=0)
    # Delivery of events: retried on connection errors, 5xx and 429 for about ``retry_for``.
    retry_for: float = Field(60.0, ge=0)
    retry_initial_backoff: float = Field(0.5, gt=0)
    retry_max_backoff: float = Field(10.0, gt=0)
    event_timeout: float = Field(10.0, gt=0)
    # Print jobs each facility (token) takes in any one second; beyond it ``POST /print-jobs``
    # is answered 429 with ``Retry-After``, as a busy partner would. None: no limit.
    max_jobs_per_second: int | None = Field(None, ge=1)
    # Guards what a facility's clients must not see (``GET /print-jobs``: every job's address
    # and e-mail) and ``/_control/*``: ``Authorization: Bearer <control_token>``. None: open,
    # as ``make run`` and the tests run it; docker compose always sets it.
    control_token: str | None = None

    @field_validator("control_token", mode="before")
    @classmethod
    def _no_token_when_empty(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("max_jobs_per_second", mode="before")
    @classmethod
    def _no_limit_when_empty(cls, value: object) -> object:
        # ``PRINTFLOW_SIM_MAX_JOBS_PER_SECOND=`` (empty) means "no limit", like an unset one.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("printflow_url")
    @classmethod
    def _strip_url(cls, value: str | None) -> str | None:
        # An empty variable means "not configured", and a trailing slash must not double up.
        if value is None or not value.strip():
            return None
        return value.strip().rstrip("/")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SimulatorConfig:
        """Reads ``PRINTFLOW_SIM_*``; tokens come from the facilities file unless given.

        ``PRINTFLOW_SIM_TOKENS`` (a JSON object token -> facility id) overrides the file, which
        is ``PRINTFLOW_FACILITIES_FILE`` or the bundled ``domain/facilities.json``.
        """
        env = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and name != "tokens":
                values[name] = raw
        raw_tokens = env.get(ENV_PREFIX + "TOKENS")
        if raw_tokens:
            try:
                values["tokens"] = json.loads(raw_tokens)
            except json.JSONDecodeError as exc:
                raise SimulatorConfigError(f"{ENV_PREFIX}TOKENS is not JSON: {exc}") from exc
        else:
            path = env.get("PRINTFLOW_FACILITIES_FILE")
            values["tokens"] = load_facility_tokens(Path(path) if path else BUNDLED_FACILITIES)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SimulatorConfigError(f"invalid simulator configuration: {exc}") from exc


def load_facility_tokens(path: Path) -> dict[str, str]:
    """Maps every facility's ``api_token`` to its ``id``.

    Read straight from the JSON so the simulator does not depend on printflow's domain code:
    it plays the partner, and a partner knows only the tokens it handed out.
    """
    try:
        facilities = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SimulatorConfigError(f"facilities file not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise SimulatorConfigError(f"facilities file {path} is not JSON: {exc}") from exc
    if not isinstance(facilities, list):
        raise SimulatorConfigError(f"facilities file {path} must hold a JSON list")
    tokens: dict[str, str] = {}
    for facility in facilities:
        if isinstance(facility, dict) and facility.get("api_token") and facility.get("id"):
            tokens[str(facility["api_token"])] = str(facility["id"])
    return tokens

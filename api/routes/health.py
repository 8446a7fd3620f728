"""Probes for orchestrators and load balancers: no authentication, no side effects.

- ``GET /healthz``: the process is alive and serving (liveness). Never touches a dependency, so
  a database outage does not get every API replica restarted.
- ``GET /readyz``: the database answers ``SELECT 1`` and the Temporal frontend reports
  ``SERVING``, each within ``CHECK_TIMEOUT``; otherwise 503 with the reason in the usual error
  envelope (readiness: take the replica out of the load balancer until it recovers).
  ``status`` is ``degraded`` (still 200) while the worker reports our own configuration refused
  by an outside system (a facility's token, the mail sender: ``activities.alerts``, read from
  ``configuration_alerts``): ``checks.configuration`` names what refused and the setting to
  fix. Still 200, because taking the API out of the load balancer would not fix the setting
  and would stop every merchant's requests; alert on ``status != "ready"``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from activities.alerts import active_alerts
from api.errors import envelope
from db.engine import ping
from runtime.logs import first_line

CHECK_TIMEOUT = 2.0

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "a dependency is unreachable; the error's details name which and why",
        "content": {
            "application/json": {
                "example": {
                    "error": {
                        "code": "not_ready",
                        "message": "temporal: unreachable (Connection refused)",
                        "details": {"database": "ok", "temporal": "unreachable (...)"},
                    }
                }
            }
        },
    }
}


@router.get("/healthz", response_model=Health, summary="Liveness: the process serves requests")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=_NOT_READY,
    summary="Readiness: database and Temporal reachable; degraded by a configuration error",
)
async def readyz(request: Request) -> Readiness | JSONResponse:
    engine = request.app.state.engine
    database, temporal = await asyncio.gather(
        _database_problem(engine), _temporal_problem(request.app.state.temporal)
    )
    checks = {"database": database or "ok", "temporal": temporal or "ok"}
    problems = [f"{name}: {why}" for name, why in checks.items() if why != "ok"]
    if problems:
        return envelope(503, "not_ready", "; ".join(problems), checks)
    configuration = await _configuration_problem(engine)
    checks["configuration"] = configuration or "ok"
    return Readiness(status="degraded" if configuration else "ready", checks=checks)


async def _database_problem(engine: AsyncEngine) -> str | None:
    try:
        await ping(engine, CHECK_TIMEOUT)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT:g}s"
    except Exception as err:  # noqa: BLE001 - whatever the driver raises, the answer is "not ready"
        return f"unreachable ({first_line(err)})"
    return None


async def _configuration_problem(engine: AsyncEngine) -> str | None:
    """What the worker reported refused of our configuration lately, with the setting to fix."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            alerts = await active_alerts(engine)
    except Exception as err:  # noqa: BLE001 - the database check above answered; say so
        return f"unknown ({first_line(err)})"
    return "; ".join(f"{a.message}: fix {a.setting}" for a in alerts) or None


async def _temporal_problem(client: Client) -> str | None:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            serving = await client.service_client.check_health(
                timeout=timedelta(seconds=CHECK_TIMEOUT)
            )
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT:g}s"
    except Exception as err:  # noqa: BLE001 - RPCError and connection errors alike
        return f"unreachable ({first_line(err)})"
    return None if serving else "frontend not serving"

"""The facility's HTTP surface: the print job API printflow calls, and ``/_control/*``.

Every route only translates HTTP; the ``Simulator`` in ``app.state.simulator`` (see
``create_app``) holds the jobs and does the work. The ``/_control/*`` endpoints let end-to-end
tests stage what is hard to get from a real partner: failures, rejections, lost responses and
production issues. They, and reading jobs, need the configured ``control_token`` as a bearer
token (``simulator.app``); without one (``make run``, tests) they are open: a local tool.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from simulator.config import SimulatorConfig
from simulator.floor import Simulator
from simulator.models import (
    ConfigPatch,
    FailNext,
    Issue,
    Job,
    RaiseIssue,
    RejectOrder,
    SendEvent,
)
from simulator.wire import bearer_token, error_response

log = logging.getLogger("printflow.simulator")

router = APIRouter()


def get_simulator(request: Request) -> Simulator:
    """The facility this app serves, set on ``app.state`` by ``create_app``."""
    simulator: Simulator = request.app.state.simulator
    return simulator


SimulatorDep = Annotated[Simulator, Depends(get_simulator)]


async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    """Request validation errors in the same envelope as every other error."""
    details = json.loads(json.dumps(exc.errors(), default=str))
    return error_response(422, "validation_error", "invalid request", details)


def _public_config(config: SimulatorConfig) -> dict[str, Any]:
    # Tokens are secrets of the facility's clients; show which facilities are served instead.
    data = config.model_dump(exclude={"tokens", "control_token"})
    data["facilities"] = sorted(set(config.tokens.values()))
    return data


async def _optional_json(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _job_or_404(simulator: Simulator, job_id: str) -> Job | JSONResponse:
    job = simulator.jobs.get(job_id)
    return job if job is not None else error_response(404, "not_found", f"no job {job_id}")


def _authorized_job(simulator: Simulator, request: Request, job_id: str) -> Job | JSONResponse:
    """A job of the calling facility; another facility's job is a 404, as in printflow."""
    token = bearer_token(request)
    facility_id = simulator.config.tokens.get(token) if token else None
    if facility_id is None:
        return error_response(401, "unauthorized", "missing or unknown bearer token")
    job = simulator.jobs.get(job_id)
    if job is None or job.facility_id != facility_id:
        return error_response(404, "not_found", f"no job {job_id}")
    return job


def _reporting_job(simulator: Simulator, order_id: str) -> Job | JSONResponse:
    if simulator.config.printflow_url is None:
        return error_response(409, "reporting_unavailable", "no printflow_url configured")
    job = simulator.find_job_for_order(order_id)
    return job if job is not None else error_response(404, "not_found", f"no job for {order_id}")


def _dump(job: Job) -> dict[str, Any]:
    return job.model_dump(mode="json")


@router.get("/healthz")
async def healthz(simulator: SimulatorDep) -> dict[str, Any]:
    return {"ok": True, "jobs": len(simulator.jobs)}


# -- the print job API, as printflow calls it


@router.post("/print-jobs")
async def create_print_job(request: Request, simulator: SimulatorDep) -> JSONResponse:
    return await simulator.submit(request)


@router.get("/print-jobs")
async def list_print_jobs(simulator: SimulatorDep) -> list[dict[str, Any]]:
    return [_dump(job) for job in simulator.jobs.values()]


@router.get("/print-jobs/{job_id}", response_model=None)
async def get_print_job(job_id: str, simulator: SimulatorDep) -> dict[str, Any] | JSONResponse:
    job = _job_or_404(simulator, job_id)
    return _dump(job) if isinstance(job, Job) else job


@router.get("/print-jobs/{job_id}/state", response_model=None)
async def print_job_state(
    request: Request, job_id: str, simulator: SimulatorDep
) -> dict[str, Any] | JSONResponse:
    """What printflow asks when an order's reports stop coming: how far the job got, and its
    tracking once shipped (the facility's token; another facility's job is a 404)."""
    job = _authorized_job(simulator, request, job_id)
    if isinstance(job, JSONResponse):
        return job
    return {
        "job_id": job.job_id,
        "order_id": job.order_id,
        "status": job.status,
        "stage": job.stage,
        "tracking": job.tracking.model_dump(mode="json") if job.tracking else None,
    }


@router.put("/print-jobs/{job_id}", response_model=None)
async def replace_print_job(
    request: Request, job_id: str, simulator: SimulatorDep
) -> dict[str, Any] | JSONResponse:
    """printflow sends the job as it must be printed now (a fixed address, replaced files)
    before it resumes a held job; the facility prints and ships what it holds last."""
    job = _authorized_job(simulator, request, job_id)
    if isinstance(job, JSONResponse):
        return job
    body = await _optional_json(request)
    if body is None or body.get("order_id") != job.order_id:
        return error_response(422, "invalid_job", "send the whole job of the same order")
    if job.status == "canceled" or job.stage in ("shipped", "delivered"):
        return error_response(409, "job_closed", f"job {job_id} can no longer change")
    simulator.replace(job, body)
    log.info("job %s order=%s replaced by printflow", job.job_id, job.order_id)
    return _dump(job)


@router.post("/print-jobs/{job_id}/cancel", response_model=None)
async def cancel_print_job(
    request: Request, job_id: str, simulator: SimulatorDep
) -> dict[str, Any] | JSONResponse:
    job = _authorized_job(simulator, request, job_id)
    if isinstance(job, JSONResponse):
        return job
    simulator.cancel(job, await _optional_json(request))
    log.info("job %s order=%s canceled by printflow", job.job_id, job.order_id)
    return _dump(job)


@router.post("/print-jobs/{job_id}/resume", response_model=None)
async def resume_print_job(
    request: Request, job_id: str, simulator: SimulatorDep
) -> dict[str, Any] | JSONResponse:
    job = _authorized_job(simulator, request, job_id)
    if isinstance(job, JSONResponse):
        return job
    if job.status == "canceled":
        return error_response(409, "job_canceled", f"job {job_id} is canceled")
    simulator.resume(job, await _optional_json(request))
    log.info("job %s order=%s resumed by printflow", job.job_id, job.order_id)
    return _dump(job)


# -- controls for tests and development (the control token, when one is configured)


@router.get("/_control/requests")
async def list_requests(simulator: SimulatorDep) -> list[dict[str, Any]]:
    return [record.model_dump(mode="json") for record in simulator.requests]


@router.get("/_control/rate")
async def rate(simulator: SimulatorDep) -> dict[str, Any]:
    """Per facility: print job requests taken, answered 429, and the most taken in one second."""
    limited: dict[str, int] = {}
    for record in simulator.requests:
        if record.status == 429 and record.facility_id is not None:
            limited[record.facility_id] = limited.get(record.facility_id, 0) + 1
    return {
        "max_jobs_per_second": simulator.config.max_jobs_per_second,
        "facilities": {
            facility_id: {
                "accepted": len(times),
                "limited": limited.get(facility_id, 0),
                "peak_per_second": simulator.peak_per_second(facility_id),
            }
            for facility_id, times in sorted(simulator.accepted_at.items())
        },
    }


@router.post("/_control/fail-next")
async def fail_next(body: FailNext, simulator: SimulatorDep) -> dict[str, Any]:
    simulator.fail_next = body
    return body.model_dump()


@router.post("/_control/reject-order")
async def reject_order(body: RejectOrder, simulator: SimulatorDep) -> dict[str, Any]:
    simulator.rejected_orders[body.order_id] = body.status
    return body.model_dump()


@router.delete("/_control/reject-order/{order_id}")
async def unreject_order(order_id: str, simulator: SimulatorDep) -> dict[str, Any]:
    return {"order_id": order_id, "status": simulator.rejected_orders.pop(order_id, None)}


@router.post("/_control/raise-issue", status_code=202, response_model=None)
async def raise_issue(body: RaiseIssue, simulator: SimulatorDep) -> dict[str, Any] | JSONResponse:
    job = _reporting_job(simulator, body.order_id)
    if isinstance(job, JSONResponse):
        return job
    if job.status == "canceled":
        return error_response(409, "job_canceled", f"job {job.job_id} is canceled")
    event_id = simulator.raise_issue(job, Issue(kind=body.kind, description=body.description))
    return {"event_id": event_id, "job_id": job.job_id}


@router.post("/_control/send-event", status_code=202, response_model=None)
async def send_event(body: SendEvent, simulator: SimulatorDep) -> dict[str, Any] | JSONResponse:
    job = _reporting_job(simulator, body.order_id)
    if isinstance(job, JSONResponse):
        return job
    event_id = simulator.send_now(
        job, body.type, event_id=body.event_id, tracking=body.tracking, issue=body.issue
    )
    return {"event_id": event_id, "job_id": job.job_id}


@router.get("/_control/config")
async def get_config(simulator: SimulatorDep) -> dict[str, Any]:
    return _public_config(simulator.config)


@router.post("/_control/config", response_model=None)
async def patch_config(body: ConfigPatch, simulator: SimulatorDep) -> dict[str, Any] | JSONResponse:
    update = body.model_dump(exclude_unset=True)
    try:
        simulator.config = SimulatorConfig.model_validate(
            {**simulator.config.model_dump(), **update}
        )
    except ValidationError as exc:
        details = json.loads(exc.json(include_url=False))
        return error_response(422, "validation_error", "invalid configuration", details)
    return _public_config(simulator.config)


@router.post("/_control/reset")
async def reset(simulator: SimulatorDep) -> dict[str, Any]:
    await simulator.reset()
    return _public_config(simulator.config)

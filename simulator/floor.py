"""The facility floor: its print jobs in memory and the events it reports about them.

``Simulator`` takes print jobs the way a real partner does (one job per ``Idempotency-Key``
whatever the retries), plays the staged failures and rejections, and runs each job's
``printed`` → ``shipped`` → ``delivered`` sequence as a background task that holds, resumes and
cancels with the job. With ``max_jobs_per_second`` it takes at most that many print job requests
per facility (token) in any one second and answers the rest 429 with ``Retry-After``. State
lives in memory; one process is one facility floor (it serves every configured token).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
import uuid
from bisect import bisect_right
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from simulator.config import SimulatorConfig
from simulator.models import (
    EventType,
    FailNext,
    Issue,
    Job,
    JobAction,
    PrintJobRequest,
    RequestRecord,
    SentEvent,
    Tracking,
)
from simulator.reporting import deliver, new_tracking, wait_due
from simulator.wire import bearer_token, error_response

log = logging.getLogger("printflow.simulator")

WINDOW = 1.0
"""Seconds: ``max_jobs_per_second`` counts the requests taken in any window this long."""


def peak_per_window(times: Sequence[float], window: float = WINDOW) -> int:
    """The most of ``times`` (seconds, ascending) that fall within any one ``window``."""
    peak = start = 0
    for end, moment in enumerate(times):
        while times[start] <= moment - window:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


class _JobControl:
    """What the reporting task of one job needs beyond the public job record."""

    def __init__(self, token: str) -> None:
        self.token = token
        # Set on every cancel / hold / resume so a waiting reporter re-examines the job.
        self.wakeup = asyncio.Event()


class Simulator:
    """The facility's memory and behaviour; ``simulator.routes`` only translates HTTP."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.initial_config = config
        self.config = config
        self.jobs: dict[str, Job] = {}
        self.job_by_key: dict[str, str] = {}
        self.requests: list[RequestRecord] = []
        # Per facility, when each print job request got past the rate limit (``clock``,
        # ascending): the limit's sliding window, and what ``peak_per_second`` reads.
        self.accepted_at: dict[str, list[float]] = {}
        self.clock: Callable[[], float] = time.monotonic  # the rate limit's (tests set their own)
        self.fail_next = FailNext(count=0)
        self.rejected_orders: dict[str, int] = {}
        self._controls: dict[str, _JobControl] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock = asyncio.Lock()
        self._client: httpx.AsyncClient | None = None

    # -- lifecycle

    async def aclose(self) -> None:
        """Stops every background task and the HTTP client, so shutdown leaves nothing behind."""
        await self._cancel_tasks()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def reset(self) -> None:
        """Back to a freshly started facility: no jobs, no staged failures, initial config."""
        await self._cancel_tasks()
        self.config = self.initial_config
        self.jobs.clear()
        self.job_by_key.clear()
        self.requests.clear()
        self.accepted_at.clear()
        self.fail_next = FailNext(count=0)
        self.rejected_orders.clear()
        self._controls.clear()

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def client(self) -> httpx.AsyncClient:
        # Created lazily: ASGI test transports do not run the lifespan that could create it.
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.config.event_timeout)
        return self._client

    # -- print jobs

    async def submit(self, request: Request) -> JSONResponse:
        """Handles ``POST /print-jobs``: authorise, apply staged failures, create at most once."""
        record = RequestRecord(
            order_id=None,
            idempotency_key=request.headers.get("idempotency-key") or None,
            facility_id=None,
            status=0,
        )
        response, job = await self._decide(request, record)
        record.status = response.status_code
        record.job_id = job.job_id if job else None
        self.requests.append(record)
        log.info(
            "print job request order=%s key=%s facility=%s -> %s%s",
            record.order_id,
            record.idempotency_key,
            record.facility_id,
            record.status,
            f" {job.job_id} (attempt {job.attempts})" if job else "",
        )
        if self.config.response_delay > 0:
            # The job (if any) is already stored: a client that gives up now has lost only the
            # answer, which is the crash window printflow must survive without a second job.
            await asyncio.sleep(self.config.response_delay)
        return response

    async def _decide(
        self, request: Request, record: RequestRecord
    ) -> tuple[JSONResponse, Job | None]:
        token = bearer_token(request)
        facility_id = self.config.tokens.get(token) if token else None
        try:
            body: Any = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict) and isinstance(body.get("order_id"), str):
            record.order_id = body["order_id"]
        record.facility_id = facility_id
        if token is None or facility_id is None:
            return error_response(401, "unauthorized", "missing or unknown bearer token"), None
        too_many = self._admit(facility_id)
        if too_many is not None:
            return too_many, None
        key = record.idempotency_key
        if key is None:
            return error_response(
                400, "idempotency_key_required", "Idempotency-Key header missing"
            ), None
        if not isinstance(body, dict):
            return error_response(400, "invalid_json", "the body must be a JSON object"), None
        if record.order_id is None:
            record.order_id = key
        if self.fail_next.count > 0:
            self.fail_next.count -= 1
            status = self.fail_next.status
            return error_response(
                status, "simulated_failure", "staged by /_control/fail-next"
            ), None
        rejected = self.rejected_orders.get(record.order_id) or self.rejected_orders.get(key)
        if rejected is not None:
            return error_response(
                rejected, "order_rejected", "staged by /_control/reject-order"
            ), None
        async with self._lock:
            existing = self.job_by_key.get(key)
            if existing is not None:
                job = self.jobs[existing]
                job.attempts += 1
                return JSONResponse({"job_id": job.job_id}, status_code=200), job
            try:
                parsed = PrintJobRequest.model_validate(body)
            except ValidationError as exc:
                details = json.loads(exc.json(include_url=False))
                return error_response(422, "validation_error", "invalid print job", details), None
            if parsed.facility_id is not None and parsed.facility_id != facility_id:
                message = f"job for {parsed.facility_id} sent with the token of {facility_id}"
                return error_response(422, "facility_mismatch", message), None
            job = Job(
                job_id="job_" + secrets.token_hex(8),
                order_id=parsed.order_id,
                idempotency_key=key,
                facility_id=facility_id,
                request=body,
            )
            self.jobs[job.job_id] = job
            self.job_by_key[key] = job.job_id
            self._controls[job.job_id] = _JobControl(token)
        if self.config.report_events and self.config.printflow_url:
            self._spawn(self._report(job), name=f"report-{job.job_id}")
        return JSONResponse({"job_id": job.job_id}, status_code=201), job

    def _admit(self, facility_id: str) -> JSONResponse | None:
        """The rate limit: records the request and lets it in (None) unless the facility took
        ``max_jobs_per_second`` requests in the last second; then the 429 to answer."""
        now = self.clock()
        accepted = self.accepted_at.setdefault(facility_id, [])
        limit = self.config.max_jobs_per_second
        if limit is not None and len(accepted) - bisect_right(accepted, now - WINDOW) >= limit:
            # A request fits again once the limit-th latest leaves the window.
            retry_after = max(1, math.ceil(accepted[-limit] + WINDOW - now))
            response = error_response(
                429,
                "rate_limited",
                f"this facility takes at most {limit} print jobs per second",
                {"max_jobs_per_second": limit},
            )
            response.headers["Retry-After"] = str(retry_after)
            return response
        accepted.append(now)
        return None

    def peak_per_second(self, facility_id: str) -> int:
        """The most print job requests of the facility taken (not answered 429) in one second."""
        return peak_per_window(self.accepted_at.get(facility_id, []))

    def find_job_for_order(self, order_id: str) -> Job | None:
        """The newest job of an order (normally its only one)."""
        matches = [job for job in self.jobs.values() if job.order_id == order_id]
        return max(matches, key=lambda job: job.received_at) if matches else None

    def cancel(self, job: Job, detail: dict[str, Any] | None) -> None:
        """printflow decided a held (or not yet printed) order is canceled: stop reporting."""
        if job.status != "canceled":
            job.status = "canceled"
            job.history.append(JobAction(action="cancel", detail=detail))
            self._controls[job.job_id].wakeup.set()

    def replace(self, job: Job, request: dict[str, Any]) -> None:
        """The job as printflow now wants it printed; the history keeps what changed."""
        changed = sorted(k for k in request if request.get(k) != job.request.get(k))
        job.request = request
        job.history.append(JobAction(action="replace", detail={"changed": changed}))

    def resume(self, job: Job, detail: dict[str, Any] | None) -> None:
        """printflow resolved the hold: the sequence goes on where it paused."""
        job.status = "accepted"
        job.history.append(JobAction(action="resume", detail=detail))
        self._controls[job.job_id].wakeup.set()

    def raise_issue(self, job: Job, issue: Issue) -> str:
        """Reports a production problem now and holds the job until printflow resumes it."""
        job.status = "on_hold"
        job.history.append(JobAction(action="issue", detail=issue.model_dump()))
        self._controls[job.job_id].wakeup.set()
        return self.send_now(job, "issue", issue=issue)

    def send_now(
        self,
        job: Job,
        type_: EventType,
        *,
        event_id: str | None = None,
        tracking: Tracking | None = None,
        issue: Issue | None = None,
    ) -> str:
        """Delivers one event in the background (with retries) and returns its id."""
        event = SentEvent(event_id=event_id or str(uuid.uuid4()), type=type_)
        job.events.append(event)
        self._spawn(
            self._deliver(job, event, tracking=tracking, issue=issue),
            name=f"event-{event.event_id}",
        )
        return event.event_id

    # -- reporting back

    async def _report(self, job: Job) -> None:
        """The automatic sequence: printed, shipped (with tracking), delivered."""
        steps: list[tuple[Literal["printed", "shipped", "delivered"], float]] = [
            ("printed", self.config.printed_after),
            ("shipped", self.config.shipped_after),
            ("delivered", self.config.delivered_after),
        ]
        try:
            for type_, delay in steps:
                if not await wait_due(job, delay, self._controls[job.job_id].wakeup):
                    log.info("job %s canceled: no %s event", job.job_id, type_)
                    return
                tracking = None
                if type_ == "shipped":
                    tracking = new_tracking()
                    job.tracking = tracking
                event = SentEvent(event_id=str(uuid.uuid4()), type=type_)
                job.events.append(event)
                if not await self._deliver(job, event, tracking=tracking):
                    log.error("job %s: stopping its sequence, %s not delivered", job.job_id, type_)
                    return
                job.stage = type_
        except Exception:
            log.exception("job %s: reporting failed", job.job_id)

    async def _deliver(
        self,
        job: Job,
        event: SentEvent,
        *,
        tracking: Tracking | None = None,
        issue: Issue | None = None,
    ) -> bool:
        """Delivers one event to the current ``printflow_url`` with the job's token."""
        token = self._controls[job.job_id].token
        return await deliver(
            self.client, self.config, job, event, token, tracking=tracking, issue=issue
        )

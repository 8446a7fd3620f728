"""A local print facility: the other side of printflow's print submission contract.

It accepts print jobs the way a real partner does (bearer token, ``Idempotency-Key`` = order id,
one job per key whatever the retries) and reports ``printed`` → ``shipped`` → ``delivered``
back to ``POST /v1/production/events`` after configurable delays, so orders move on their own
during ``make run``. The ``/_control/*`` endpoints let end-to-end tests stage what is hard to
get from a real partner: failures, rejections, lost responses and production issues.

State lives in memory; one process is one facility floor (it serves every configured token).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger("printflow.simulator")

ENV_PREFIX = "PRINTFLOW_SIM_"
BUNDLED_FACILITIES = Path(__file__).resolve().parent.parent / "domain" / "facilities.json"

EventType = Literal["printed", "shipped", "delivered", "returned", "issue"]
IssueKind = Literal["file_quality", "address_invalid", "other"]
JobStatus = Literal["accepted", "on_hold", "canceled"]


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


# --- what the facility stores and answers -----------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


class Tracking(BaseModel):
    carrier: str
    tracking_code: str
    tracking_url: str


class Issue(BaseModel):
    kind: IssueKind
    description: str = ""


class SentEvent(BaseModel):
    """One event as the facility tried to deliver it, so tests can see retries and failures."""

    event_id: str
    type: EventType
    status: Literal["pending", "delivered", "failed"] = "pending"
    attempts: int = 0
    created_at: datetime = Field(default_factory=_now)
    delivered_at: datetime | None = None
    last_error: str | None = None


class JobAction(BaseModel):
    at: datetime = Field(default_factory=_now)
    action: str
    detail: dict[str, Any] | None = None


class Job(BaseModel):
    job_id: str
    order_id: str
    idempotency_key: str
    facility_id: str
    status: JobStatus = "accepted"
    received_at: datetime = Field(default_factory=_now)
    request: dict[str, Any]
    attempts: int = 1
    stage: Literal["printed", "shipped", "delivered"] | None = None
    tracking: Tracking | None = None
    events: list[SentEvent] = Field(default_factory=list)
    history: list[JobAction] = Field(default_factory=list)


class RequestRecord(BaseModel):
    """One ``POST /print-jobs`` as received, with what the facility answered."""

    at: datetime = Field(default_factory=_now)
    order_id: str | None
    idempotency_key: str | None
    facility_id: str | None
    status: int
    job_id: str | None = None


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class PrintFile(_Open):
    type: str
    url: str


class PrintItem(_Open):
    item_reference_id: str
    product_uid: str
    quantity: int = Field(ge=1)
    files: list[PrintFile]
    personalization: dict[str, Any] | None = None


class PrintJobRequest(_Open):
    """What a facility needs to print and ship; extra fields are accepted and kept."""

    order_id: str = Field(min_length=1)
    order_reference_id: str
    facility_id: str | None = None
    items: list[PrintItem] = Field(min_length=1)
    shipping_address: dict[str, Any]


class FailNext(BaseModel):
    status: int = Field(503, ge=400, le=599)
    count: int = Field(1, ge=0)


class RejectOrder(BaseModel):
    order_id: str
    status: int = Field(422, ge=400, le=499)


class RaiseIssue(BaseModel):
    order_id: str
    kind: IssueKind = "other"
    description: str = ""


class SendEvent(BaseModel):
    """Any event, sent now: for what the automatic sequence never does (``returned``, replays)."""

    order_id: str
    type: EventType
    event_id: str | None = None
    tracking: Tracking | None = None
    issue: Issue | None = None


class ConfigPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    response_delay: float | None = Field(None, ge=0)
    report_events: bool | None = None
    printflow_url: str | None = None
    printed_after: float | None = Field(None, ge=0)
    shipped_after: float | None = Field(None, ge=0)
    delivered_after: float | None = Field(None, ge=0)


def _error(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details}}, status_code=status
    )


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


# --- the facility -----------------------------------------------------------------------------


class _JobControl:
    """What the reporting task of one job needs beyond the public job record."""

    def __init__(self, token: str) -> None:
        self.token = token
        # Set on every cancel / hold / resume so a waiting reporter re-examines the job.
        self.wakeup = asyncio.Event()


class Simulator:
    """The facility's memory and behaviour; the routes below only translate HTTP."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.initial_config = config
        self.config = config
        self.jobs: dict[str, Job] = {}
        self.job_by_key: dict[str, str] = {}
        self.requests: list[RequestRecord] = []
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
        token = _bearer(request)
        facility_id = self.config.tokens.get(token) if token else None
        try:
            body: Any = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict) and isinstance(body.get("order_id"), str):
            record.order_id = body["order_id"]
        record.facility_id = facility_id
        if token is None or facility_id is None:
            return _error(401, "unauthorized", "missing or unknown bearer token"), None
        key = record.idempotency_key
        if key is None:
            return _error(400, "idempotency_key_required", "Idempotency-Key header missing"), None
        if not isinstance(body, dict):
            return _error(400, "invalid_json", "the body must be a JSON object"), None
        if record.order_id is None:
            record.order_id = key
        if self.fail_next.count > 0:
            self.fail_next.count -= 1
            status = self.fail_next.status
            return _error(status, "simulated_failure", "staged by /_control/fail-next"), None
        rejected = self.rejected_orders.get(record.order_id) or self.rejected_orders.get(key)
        if rejected is not None:
            return _error(rejected, "order_rejected", "staged by /_control/reject-order"), None
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
                return _error(422, "validation_error", "invalid print job", details), None
            if parsed.facility_id is not None and parsed.facility_id != facility_id:
                message = f"job for {parsed.facility_id} sent with the token of {facility_id}"
                return _error(422, "facility_mismatch", message), None
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
                if not await self._wait_due(job, delay):
                    log.info("job %s canceled: no %s event", job.job_id, type_)
                    return
                tracking = None
                if type_ == "shipped":
                    code = "SIM" + "".join(secrets.choice("0123456789") for _ in range(10))
                    tracking = Tracking(
                        carrier="DHL",
                        tracking_code=code,
                        tracking_url=f"https://tracking.example/{code}",
                    )
                    job.tracking = tracking
                event = SentEvent(event_id=str(uuid.uuid4()), type=type_)
                job.events.append(event)
                if not await self._deliver(job, event, tracking=tracking):
                    log.error("job %s: stopping its sequence, %s not delivered", job.job_id, type_)
                    return
                job.stage = type_
        except Exception:
            log.exception("job %s: reporting failed", job.job_id)

    async def _wait_due(self, job: Job, delay: float) -> bool:
        """Sleeps until the next event is due; False when the job was canceled meanwhile.

        A hold freezes the sequence: after ``resume`` the step's full delay starts again, as a
        reprint would, so printflow never sees ``printed`` race its own resume call.
        """
        control = self._controls[job.job_id]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while True:
            if job.status == "canceled":
                return False
            control.wakeup.clear()
            if job.status == "on_hold":
                await control.wakeup.wait()
                if job.status == "accepted":
                    deadline = loop.time() + delay
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return True
            try:
                await asyncio.wait_for(control.wakeup.wait(), remaining)
            except TimeoutError:
                pass

    async def _deliver(
        self,
        job: Job,
        event: SentEvent,
        *,
        tracking: Tracking | None = None,
        issue: Issue | None = None,
    ) -> bool:
        """POSTs one event, re-sending the same ``event_id`` on connection errors and 5xx."""
        url = f"{self.config.printflow_url}/v1/production/events"
        payload: dict[str, Any] = {"event_id": event.event_id, "order_id": job.order_id}
        payload["type"] = event.type
        if tracking is not None:
            payload["tracking"] = tracking.model_dump()
        if issue is not None:
            payload["issue"] = issue.model_dump()
        headers = {"Authorization": f"Bearer {self._controls[job.job_id].token}"}
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.config.retry_for
        backoff = self.config.retry_initial_backoff
        while True:
            event.attempts += 1
            try:
                response = await self.client.post(url, json=payload, headers=headers)
            except httpx.HTTPError as exc:
                event.last_error = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    event.status = "delivered"
                    event.delivered_at = _now()
                    event.last_error = None
                    log.info(
                        "event %s %s order=%s job=%s -> %s (attempt %d)",
                        event.type,
                        event.event_id,
                        job.order_id,
                        job.job_id,
                        response.status_code,
                        event.attempts,
                    )
                    return True
                event.last_error = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code < 500 and response.status_code != 429:
                    # A 4xx will not heal by itself (bad token, bad body): retrying is noise.
                    event.status = "failed"
                    log.error("event %s %s refused: %s", event.type, url, event.last_error)
                    return False
            if loop.time() + backoff > give_up_at:
                event.status = "failed"
                log.error(
                    "event %s %s gave up after %d attempts: %s",
                    event.type,
                    event.event_id,
                    event.attempts,
                    event.last_error,
                )
                return False
            log.warning(
                "event %s %s attempt %d failed (%s); retrying in %.2fs",
                event.type,
                event.event_id,
                event.attempts,
                event.last_error,
                backoff,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.config.retry_max_backoff)


# --- HTTP -------------------------------------------------------------------------------------


def _public_config(config: SimulatorConfig) -> dict[str, Any]:
    # Tokens are secrets of the facility's clients; show which facilities are served instead.
    data = config.model_dump(exclude={"tokens"})
    data["facilities"] = sorted(set(config.tokens.values()))
    return data


async def _optional_json(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def create_app(config: SimulatorConfig) -> FastAPI:
    """Builds one simulated facility; ``app.state.simulator`` exposes it to in-process tests."""
    simulator = Simulator(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not config.tokens:
            log.warning("no facility tokens configured: every print job will get 401")
        if config.report_events and not config.printflow_url:
            log.warning("report_events is on but no printflow_url is set: no events will be sent")
        yield
        await simulator.aclose()

    app = FastAPI(title="printflow print facility simulator", lifespan=lifespan)
    app.state.simulator = simulator

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = json.loads(json.dumps(exc.errors(), default=str))
        return _error(422, "validation_error", "invalid request", details)

    def job_or_404(job_id: str) -> Job | JSONResponse:
        job = simulator.jobs.get(job_id)
        return job if job is not None else _error(404, "not_found", f"no job {job_id}")

    def authorized_job(request: Request, job_id: str) -> Job | JSONResponse:
        """A job of the calling facility; another facility's job is a 404, as in printflow."""
        token = _bearer(request)
        facility_id = simulator.config.tokens.get(token) if token else None
        if facility_id is None:
            return _error(401, "unauthorized", "missing or unknown bearer token")
        job = simulator.jobs.get(job_id)
        if job is None or job.facility_id != facility_id:
            return _error(404, "not_found", f"no job {job_id}")
        return job

    def dump(job: Job) -> dict[str, Any]:
        return job.model_dump(mode="json")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "jobs": len(simulator.jobs)}

    @app.post("/print-jobs")
    async def create_print_job(request: Request) -> JSONResponse:
        return await simulator.submit(request)

    @app.get("/print-jobs")
    async def list_print_jobs() -> list[dict[str, Any]]:
        return [dump(job) for job in simulator.jobs.values()]

    @app.get("/print-jobs/{job_id}", response_model=None)
    async def get_print_job(job_id: str) -> dict[str, Any] | JSONResponse:
        job = job_or_404(job_id)
        return dump(job) if isinstance(job, Job) else job

    @app.post("/print-jobs/{job_id}/cancel", response_model=None)
    async def cancel_print_job(request: Request, job_id: str) -> dict[str, Any] | JSONResponse:
        job = authorized_job(request, job_id)
        if isinstance(job, JSONResponse):
            return job
        simulator.cancel(job, await _optional_json(request))
        log.info("job %s order=%s canceled by printflow", job.job_id, job.order_id)
        return dump(job)

    @app.post("/print-jobs/{job_id}/resume", response_model=None)
    async def resume_print_job(request: Request, job_id: str) -> dict[str, Any] | JSONResponse:
        job = authorized_job(request, job_id)
        if isinstance(job, JSONResponse):
            return job
        if job.status == "canceled":
            return _error(409, "job_canceled", f"job {job_id} is canceled")
        simulator.resume(job, await _optional_json(request))
        log.info("job %s order=%s resumed by printflow", job.job_id, job.order_id)
        return dump(job)

    # -- controls for tests and development (no auth: this is a local tool)

    @app.get("/_control/requests")
    async def list_requests() -> list[dict[str, Any]]:
        return [record.model_dump(mode="json") for record in simulator.requests]

    @app.post("/_control/fail-next")
    async def fail_next(body: FailNext) -> dict[str, Any]:
        simulator.fail_next = body
        return body.model_dump()

    @app.post("/_control/reject-order")
    async def reject_order(body: RejectOrder) -> dict[str, Any]:
        simulator.rejected_orders[body.order_id] = body.status
        return body.model_dump()

    @app.delete("/_control/reject-order/{order_id}")
    async def unreject_order(order_id: str) -> dict[str, Any]:
        return {"order_id": order_id, "status": simulator.rejected_orders.pop(order_id, None)}

    def reporting_job(order_id: str) -> Job | JSONResponse:
        if simulator.config.printflow_url is None:
            return _error(409, "reporting_unavailable", "no printflow_url configured")
        job = simulator.find_job_for_order(order_id)
        return job if job is not None else _error(404, "not_found", f"no job for {order_id}")

    @app.post("/_control/raise-issue", status_code=202, response_model=None)
    async def raise_issue(body: RaiseIssue) -> dict[str, Any] | JSONResponse:
        job = reporting_job(body.order_id)
        if isinstance(job, JSONResponse):
            return job
        if job.status == "canceled":
            return _error(409, "job_canceled", f"job {job.job_id} is canceled")
        event_id = simulator.raise_issue(job, Issue(kind=body.kind, description=body.description))
        return {"event_id": event_id, "job_id": job.job_id}

    @app.post("/_control/send-event", status_code=202, response_model=None)
    async def send_event(body: SendEvent) -> dict[str, Any] | JSONResponse:
        job = reporting_job(body.order_id)
        if isinstance(job, JSONResponse):
            return job
        event_id = simulator.send_now(
            job, body.type, event_id=body.event_id, tracking=body.tracking, issue=body.issue
        )
        return {"event_id": event_id, "job_id": job.job_id}

    @app.get("/_control/config")
    async def get_config() -> dict[str, Any]:
        return _public_config(simulator.config)

    @app.post("/_control/config", response_model=None)
    async def patch_config(body: ConfigPatch) -> dict[str, Any] | JSONResponse:
        update = body.model_dump(exclude_unset=True)
        try:
            simulator.config = SimulatorConfig.model_validate(
                {**simulator.config.model_dump(), **update}
            )
        except ValidationError as exc:
            details = json.loads(exc.json(include_url=False))
            return _error(422, "validation_error", "invalid configuration", details)
        return _public_config(simulator.config)

    @app.post("/_control/reset")
    async def reset() -> dict[str, Any]:
        await simulator.reset()
        return _public_config(simulator.config)

    return app

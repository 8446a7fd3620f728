"""The printflow worker: the order, support case, customer contact and webhook delivery
workflows, and every activity they call.

Several workers may run against one task queue; Temporal spreads the work between them. Calls
to a facility (print submissions, the end of a hold) go to that facility's own task queue
(``facility_task_queue``), polled by an activity-only worker per facility that asks the
Temporal server to dispatch at most the facility's ``max_jobs_per_second`` from it: a limit the
server enforces for all workers of the queue together, so a cutoff that releases thousands of
orders at once reaches the facility at its pace, however many workers run. The print files'
checks go to ``<TASK_QUEUE>-preflight``, whose worker runs at most ``PREFLIGHT_CONCURRENCY``.

Print submissions, merchant webhooks and print file downloads go through HTTP clients of their
own, so webhook receivers or file servers that are slow to answer cannot take the connections
a cutoff wave needs. Our own
configuration refused by a facility or the mail server is alerted (``activities.alerts``).
"""

from __future__ import annotations

import asyncio
import importlib.abc
import logging
import signal
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import lru_cache, partial
from importlib.machinery import ModuleSpec, PathFinder, SourceFileLoader
from importlib.util import spec_from_file_location
from types import CodeType, ModuleType
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import workflow
from temporalio.client import Client
from temporalio.converter import StorageDriverStoreContext
from temporalio.worker import Worker, WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.worker.workflow_sandbox import _runner as sandbox_runner

from activities.alerts import ConfigurationAlerts
from activities.attempts import AttemptsAlert
from activities.cases import SupportCaseActivities
from activities.contacts import CustomerContactActivities
from activities.delays import DelayActivities
from activities.facility import FacilityActivities
from activities.holds import HoldActivities
from activities.order_projection import ProjectionActivities
from activities.personalization import PersonalizationActivities
from activities.preflight import PreflightActivities
from activities.webhooks.delivery import WebhookActivities
from activities.webhooks.emitter import WebhookEmitter
from db.engine import create_engine
from db.migrate import migrate
from domain.catalog import load_catalog
from domain.facilities import Facilities, facility_task_queue, load_facilities
from domain.preflight import preflight_task_queue
from integrations.files import FileFetcher
from integrations.mail import Mailer
from runtime.settings import Settings
from runtime.startup import (
    ConfigError,
    check_config,
    configure_process,
    freeze_startup_heap,
    temporal_runtime,
)
from workflows.cases import SupportCaseWorkflow
from workflows.client import connect, enqueue_deliveries, ensure_search_attributes
from workflows.contacts import CustomerContactWorkflow
from workflows.orders import OrderWorkflow
from workflows.webhooks import WebhookDeliveryWorkflow

log = logging.getLogger("printflow.worker")

WORKFLOWS: Sequence[type] = (
    OrderWorkflow,
    WebhookDeliveryWorkflow,
    SupportCaseWorkflow,
    CustomerContactWorkflow,
)


@lru_cache(maxsize=64)
def _compiled(code: str) -> CodeType:
    return compile(code, "<string>", "exec")  # the name exec() gives a string


class _Instance(sandbox_runner._Instance):
    """The SDK's sandboxed workflow instance, crossing into the sandbox less.

    temporalio 1.35 crosses into the sandbox with ``exec`` of a source string, which Python
    compiles again every time: at each activation, and twice for each payload encoded or
    decoded, to ask the sandbox for the payload's serialization context and its external
    storage context. Here each of the SDK's few strings is compiled once (with encrypted
    payloads the compiling was about 7 % of the worker's CPU), and the payloads' crossings are
    not made at all (another 9 %, 23 µs each): printflow's one data converter
    (``workflows.client.data_converter``) takes no serialization context and stores nothing
    externally, so every context gives the same payloads. ``tests/ops/test_sandbox.py`` fails
    if the converter starts taking one, and if the SDK's private ``_Instance`` (temporalio is
    pinned) changes shape."""

    def _run_code(self, code: str, **extra_globals: Any) -> None:
        super()._run_code(_compiled(code), **extra_globals)  # type: ignore[arg-type]

    def get_serialization_context(self, command_info: object) -> None:
        return None  # the context-free converter, which the SDK's answer would select too

    def get_external_store_context(self, command_info: object) -> StorageDriverStoreContext:
        return _NO_STORE


_NO_STORE = StorageDriverStoreContext(target=None)


class _ReadOnce(importlib.abc.MetaPathFinder):
    """Finds the workflow modules the sandbox imports afresh, and keeps their code.

    The sandbox runs a workflow's module again for every workflow it builds: a new run, and
    one that left the worker's cache and is replayed (at a cutoff, most of them). Each time,
    Python looked for the file, read its bytecode and unmarshalled it, about a fifth of the CPU
    of building one, and each kept a copy of the module's code objects (about 110 KB of every
    cached workflow). This finder answers for the modules it ``serve``s from the location found
    and the code read the first time, which they all share, so the worker also runs the
    workflow code it started with, never a mix with files changed under it. Outside the sandbox
    those modules are imported already, so it is not asked."""

    def __init__(self) -> None:
        self._served: dict[str, tuple[str, list[str] | None] | None] = {}
        self._code: dict[str, CodeType] = {}

    def serve(self, module: str) -> None:
        """Serves ``module`` and its packages (the first call puts the finder in front of
        Python's own)."""
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)
        parts = module.split(".")
        for end in range(1, len(parts) + 1):
            self._served.setdefault(".".join(parts[:end]), None)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in self._served:
            return None
        found = self._served[fullname]
        if found is None:
            spec = PathFinder.find_spec(fullname, path)
            if spec is None or spec.origin is None or type(spec.loader) is not SourceFileLoader:
                return None  # not a plain source module: Python's own finders
            found = self._served[fullname] = (spec.origin, spec.submodule_search_locations)
        origin, locations = found
        loader = _KeptCode(fullname, origin, self._code)
        return spec_from_file_location(
            fullname, origin, loader=loader, submodule_search_locations=locations
        )


class _KeptCode(SourceFileLoader):
    """Loads a module's code once (``_ReadOnce``)."""

    def __init__(self, fullname: str, path: str, kept: dict[str, CodeType]) -> None:
        super().__init__(fullname, path)
        self._kept = kept

    def get_code(self, fullname: str) -> CodeType | None:
        if self.path not in self._kept:
            code = super().get_code(fullname)
            if code is None:
                return None
            self._kept[self.path] = code
        return self._kept[self.path]


_WORKFLOW_CODE = _ReadOnce()


@dataclass(frozen=True)
class SandboxRunner(SandboxedWorkflowRunner):
    """The SDK's sandbox, with ``_Instance`` instances and the workflow modules' code read
    once (``_ReadOnce``)."""

    def prepare_workflow(self, defn: workflow._Definition) -> None:
        # A worker prepares each of its workflows when it is built, before it polls.
        _WORKFLOW_CODE.serve(defn.cls.__module__)
        super().prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _Instance(det, self.runner_class, self.restrictions)


# Pydantic validates e-mail addresses lazily; those modules are deterministic and safe to share.
WORKFLOW_RUNNER = SandboxRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("email_validator", "idna")
)


def build_activities(
    settings: Settings,
    engine: AsyncEngine,
    client: Client,
    facilities: Facilities,
    http: httpx.AsyncClient,
    facility_http: httpx.AsyncClient | None = None,
    file_http: httpx.AsyncClient | None = None,
) -> list[Any]:
    """Every activity the workflows call, wired to its clients once.

    ``http``: how webhooks reach merchants; ``facility_http``: how calls reach facilities
    (the worker gives them a client of their own, so slow webhook receivers cannot hold the
    connections a cutoff wave needs; tests route it to an in-process simulator). Without it,
    facilities share ``http``. ``file_http``: how print files are fetched (default ``http``).
    """
    emitter = WebhookEmitter(engine, partial(enqueue_deliveries, client, settings.task_queue))
    alerts = ConfigurationAlerts(engine)
    mailer = Mailer(settings, alerts)
    projection = ProjectionActivities(engine, emitter)
    facility = FacilityActivities(facilities, facility_http or http, alerts)
    secret = settings.link_secret.get_secret_value().encode() if settings.link_secret else None
    personalization = PersonalizationActivities(
        engine, mailer, settings.public_base_url, emitter, link_secret=secret
    )
    webhooks = WebhookActivities(engine, http, allow_private=settings.webhook_allow_private)
    holds = HoldActivities(mailer, settings.public_base_url, engine)
    delays = DelayActivities(mailer, settings.public_base_url)
    cases = SupportCaseActivities(engine, mailer, settings.public_base_url, emitter)
    contacts = CustomerContactActivities(engine, mailer, settings.public_base_url, emitter)
    fetcher = FileFetcher(
        file_http or http,
        allow_private=settings.preflight_allow_private,
        max_bytes=settings.max_file_bytes,
        timeout=settings.preflight_fetch_timeout,
    )
    preflight = PreflightActivities(
        fetcher, load_catalog(settings.catalog_file), cache_ttl=settings.preflight_cache_ttl
    )
    return [
        projection.project_order,
        facility.submit_print_job,
        facility.notify_facility,
        facility.fetch_print_job_state,
        personalization.issue_personalization_link,
        webhooks.deliver_webhook,
        webhooks.webhook_given_up,
        holds.send_hold_notice,
        delays.send_delay_notice,
        cases.project_case,
        cases.send_case_mail,
        contacts.project_contact,
        contacts.send_contact_mail,
        preflight.check_print_file,
    ]


# What a facility's own workers run: the calls that reach the facility's API.
FACILITY_CALLS = frozenset(
    fn.__name__
    for fn in (
        FacilityActivities.submit_print_job,
        FacilityActivities.notify_facility,
        FacilityActivities.fetch_print_job_state,
    )
)


# What the preflight workers run: the print files' checks (``workflows.preflight``).
PREFLIGHT_CALLS = frozenset({PreflightActivities.check_print_file.__name__})


def preflight_worker(client: Client, settings: Settings, activities: Sequence[Any]) -> Worker:
    """The activity-only worker of ``<TASK_QUEUE>-preflight``: at most
    ``PREFLIGHT_CONCURRENCY`` files fetched and inspected at once by this process, so a wave of
    orders cannot take the slots the cutoff's print jobs need."""
    return Worker(
        client,
        task_queue=preflight_task_queue(settings.task_queue),
        activities=[fn for fn in activities if fn.__name__ in PREFLIGHT_CALLS],
        max_concurrent_activities=settings.preflight_concurrency,
        graceful_shutdown_timeout=settings.worker_shutdown_grace,
        interceptors=[AttemptsAlert(settings.activity_attempts_alert)],
    )


def main_activities(activities: Sequence[Any]) -> list[Any]:
    """What the main task queue's worker runs: everything but the preflight checks."""
    return [fn for fn in activities if fn.__name__ not in PREFLIGHT_CALLS]


def facility_workers(
    client: Client, settings: Settings, facilities: Facilities, activities: Sequence[Any]
) -> list[Worker]:
    """One activity-only worker per facility, on the facility's task queue, with the
    facility's ``max_jobs_per_second`` as the queue's server-side dispatch limit (None: none).

    ``activities`` are those of ``build_activities``, so these workers share its clients. The
    main worker registers the same calls too, for orders started before facilities had queues
    of their own (``OrderInput.facility_queue_base`` None).
    """
    calls = [fn for fn in activities if fn.__name__ in FACILITY_CALLS]
    return [
        Worker(
            client,
            task_queue=facility_task_queue(settings.task_queue, facility.id),
            activities=calls,
            max_task_queue_activities_per_second=facility.max_jobs_per_second,
            max_concurrent_activities=settings.worker_max_concurrent_activities,
            graceful_shutdown_timeout=settings.worker_shutdown_grace,
            interceptors=[AttemptsAlert(settings.activity_attempts_alert)],
        )
        for facility in facilities
    ]


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """Polls until ``stop`` is set, then drains: no new tasks, and in-flight activities get
    ``worker_shutdown_grace`` to finish before they are cancelled (and retried elsewhere)."""
    facilities = load_facilities(settings.facilities_file)
    async with AsyncExitStack() as stack:
        engine = create_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        await migrate(settings.database_url)
        # Three pools: merchants' webhook receivers, the facilities, and merchants' file
        # servers (see the module doc); one CA bundle, loaded once, for the three.
        tls = httpx.create_ssl_context()
        webhook_http = await stack.enter_async_context(httpx.AsyncClient(timeout=20.0, verify=tls))
        facility_http = await stack.enter_async_context(httpx.AsyncClient(timeout=20.0, verify=tls))
        file_http = await stack.enter_async_context(httpx.AsyncClient(timeout=60.0, verify=tls))
        client = await connect(settings, runtime=temporal_runtime(settings.worker_metrics_port))
        await ensure_search_attributes(client, settings.temporal_namespace)
        if settings.link_secret is None:
            log.warning(
                "PRINTFLOW_LINK_SECRET is not set: a personalization link e-mailed again by "
                "another worker process (after a retry) carries a new token"
            )
        activities = build_activities(
            settings,
            engine,
            client,
            facilities,
            webhook_http,
            facility_http=facility_http,
            file_http=file_http,
        )
        workers = [
            Worker(
                client,
                task_queue=settings.task_queue,
                workflows=list(WORKFLOWS),
                workflow_runner=WORKFLOW_RUNNER,
                activities=main_activities(activities),
                graceful_shutdown_timeout=settings.worker_shutdown_grace,
                max_concurrent_activities=settings.worker_max_concurrent_activities,
                max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
                max_cached_workflows=settings.worker_max_cached_workflows,
                interceptors=[AttemptsAlert(settings.activity_attempts_alert)],
            ),
            *facility_workers(client, settings, facilities, activities),
            preflight_worker(client, settings, activities),
        ]
        log.info(
            "worker polling %s, its preflight queue and its %d facility queues on %s",
            settings.task_queue,
            len(workers) - 2,
            settings.temporal_address,
        )
        # Everything the worker keeps is built: out of the garbage collector's rounds.
        freeze_startup_heap()
        async with AsyncExitStack() as running:
            for worker in workers:
                await running.enter_async_context(worker)
            await stop.wait()
            log.info(
                "worker draining: no new tasks; in-flight activities have %ss to finish",
                settings.worker_shutdown_grace.total_seconds(),
            )
            # All at once, so the grace period is not paid once per worker.
            await asyncio.gather(*(worker.shutdown() for worker in workers))
        log.info("worker stopped")


def main() -> int:
    """``python worker.py``: exits 0 after a drained SIGTERM/SIGINT, 1 on a configuration error."""
    stop = asyncio.Event()

    async def _main() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            settings = configure_process()
            await check_config(settings)
        except ConfigError as err:
            return err.exit()
        await run_worker(settings, stop)
        return 0

    return asyncio.run(_main())


if __name__ == "__main__":
    raise SystemExit(main())

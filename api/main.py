"""The printflow HTTP API and the customer-facing pages: ``uvicorn api.main:app``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp
from temporalio.client import Client

from api import deps, errors, metrics
from api.guards import RefuseControlCharacters
from api.idempotency import IdempotentRequests
from api.metrics import MetricsMiddleware
from api.pages import console as console_pages
from api.pages import contacts as contact_pages
from api.pages import personalization as personalization_pages
from api.pages import portal as portal_pages
from api.perimeter import (
    AuthFailures,
    BodyLimit,
    Limiter,
    RateLimits,
    parse_count,
    parse_rate,
)
from api.pruning import prune_forever
from api.relay import CaseStarter, ContactStarter, OrderStarter
from api.request_ids import RequestIds
from api.routes import (
    admin,
    cases,
    claims,
    codec,
    contacts,
    health,
    orders,
    personalization,
    plans,
    production,
    products,
    quotes,
    request_log,
    standards,
    team,
    webhooks,
)
from api.services.production import pass_recorded_forever
from db.engine import create_engine, session_factory
from db.migrate import migrate
from domain.catalog import load_catalog
from domain.facilities import load_facilities
from domain.merchants import known_timezones
from domain.quotes import check_offers
from domain.support import load_support
from runtime.settings import Settings, get_settings
from runtime.startup import (
    ConfigError,
    StartupGate,
    check_static,
    configure_process,
    freeze_startup_heap,
    temporal_runtime,
)
from workflows.client import connect, ensure_search_attributes


class PrintflowApi(FastAPI):
    """The app with ``X-Request-Id`` outside everything, Starlette's error middleware included,
    so the 500 of an unexpected error carries one too (``api.request_ids``); right inside it the
    metrics and the access log, which so see every answer (the perimeter's, the guards', the
    replays and the 500s)."""

    def build_middleware_stack(self) -> ASGIApp:
        stack = MetricsMiddleware(super().build_middleware_stack(), self.state.metrics)
        return RequestIds(stack)


def create_app(
    settings: Settings | None = None, temporal: Client | None = None, *, process: bool = False
) -> FastAPI:
    """Builds the app; tests pass their own settings and an already connected client.

    ``process``: this app is the process's own (``uvicorn api.main:app``): start-up checks run
    first and fail in one line, and the SDK's log lines go through Python logging.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings or get_settings()
        app.state.settings = cfg
        app.state.facilities = load_facilities(cfg.facilities_file)
        check_offers(load_catalog(cfg.catalog_file), app.state.facilities)
        app.state.support = load_support(cfg.support_file)
        await asyncio.to_thread(known_timezones)  # read once, off the loop
        engine = create_engine(cfg.database_url)
        await migrate(cfg.database_url)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.temporal = temporal or await connect(
            cfg, runtime=temporal_runtime() if process else None
        )
        # Orders start with their search attributes; the API may come up before any worker.
        await ensure_search_attributes(app.state.temporal, cfg.temporal_namespace)
        app.state.starter = OrderStarter(app.state.sessions, app.state.temporal, cfg)
        app.state.case_starter = CaseStarter(app.state.sessions, app.state.temporal, cfg)
        app.state.contact_starter = ContactStarter(app.state.sessions, app.state.temporal, cfg)
        starters = [app.state.starter, app.state.case_starter, app.state.contact_starter]
        # The relay's sweeps, the failed-request log's pruning, facility reports not yet passed
        # to their orders, the metrics' refresh.
        background = [
            *(asyncio.create_task(starter.run()) for starter in starters),
            asyncio.create_task(
                prune_forever(app.state.sessions, app.state.temporal, cfg.idempotency_ttl)
            ),
            asyncio.create_task(pass_recorded_forever(app.state.sessions, app.state.temporal)),
            asyncio.create_task(
                app.state.metrics.refresh_forever(
                    engine, cfg.metrics_refresh_interval.total_seconds()
                )
            ),
        ]
        if process:
            # Everything the API keeps is built: out of the garbage collector's rounds.
            freeze_startup_heap()
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            # Each gives its database connection back before the engine is disposed of.
            await asyncio.gather(*background, return_exceptions=True)
            for starter in starters:
                await starter.close()
            await engine.dispose()

    app = PrintflowApi(
        title="printflow",
        version="0.1.0",
        summary="Order backbone for print-on-demand: every order a durable workflow.",
        lifespan=lifespan,
    )
    errors.install(app)
    metrics.install(app)
    app.add_middleware(RefuseControlCharacters)
    app.add_middleware(IdempotentRequests, caller=deps.caller)
    # Outside everything that reads a body: failed authentications per address, the body
    # limit, and outermost the rate limit per credential (a 413 counts against it too).
    perimeter = settings or get_settings()
    # One set of counts (RATE_LIMIT_STORAGE) for the perimeter and the portal's sign-in.
    limiter = app.state.limiter = Limiter(perimeter.rate_limit_storage)
    app.add_middleware(
        AuthFailures, rate=parse_count(perimeter.auth_failure_limit), limiter=limiter
    )
    app.add_middleware(BodyLimit, max_bytes=perimeter.max_body_bytes)
    app.add_middleware(
        RateLimits,
        rate=parse_rate(perimeter.rate_limit, perimeter.rate_limit_burst),
        limiter=limiter,
    )
    if process:
        app.add_middleware(StartupGate, settings=settings or get_settings())
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(orders.router)
    app.include_router(products.router)
    app.include_router(quotes.router)
    app.include_router(personalization.router)
    app.include_router(production.router)
    app.include_router(claims.router)
    app.include_router(webhooks.router)
    app.include_router(plans.router)
    app.include_router(request_log.router)
    app.include_router(team.router)
    app.include_router(cases.router)
    app.include_router(cases.agent_router)
    app.include_router(contacts.router)
    app.include_router(standards.router)
    app.include_router(personalization_pages.router)
    app.include_router(console_pages.router)
    app.include_router(portal_pages.router)
    app.include_router(contact_pages.router)
    app.include_router(codec.router)
    return app


def __getattr__(name: str) -> FastAPI:
    """``api.main:app``, built on first access: uvicorn's import configures this process
    (settings, logging, the checks that need no network) and exits with one line if they fail;
    importing the module (tests do) has no such side effect.
    """
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        settings = configure_process()
        check_static(settings)
    except ConfigError as err:
        raise SystemExit(err.exit()) from None
    app = create_app(settings, process=True)
    globals()["app"] = app
    return app

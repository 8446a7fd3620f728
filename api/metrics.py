"""The API's Prometheus metrics, at ``GET /metrics`` on the API's own port (8000 by default).

- ``printflow_http_requests_total{method, route, status}``: every answer, those of the perimeter
  too (413 ``body_too_large``, 429 ``rate_limited`` and ``too_many_failed_authentications``),
  the guards' and the idempotency middleware's replays
- ``printflow_http_refusals_total{reason}``: the perimeter's refusals, by their error code
- ``printflow_idempotent_replays_total{method, route}``: answers replayed for an
  ``Idempotency-Key`` (``Idempotent-Replayed: true``)
- ``printflow_http_request_duration_seconds{method, route}`` (histogram)
- ``printflow_open_orders{status}``: orders not closed yet, per status, counted in the read
  model by a background task every ``METRICS_REFRESH_INTERVAL`` (15 s), never by a scrape: a
  scrape costs the same however many orders there are and never touches the database (every API
  replica reports the same numbers: aggregate with ``max by (status)``, not ``sum``)
- the process's CPU, memory and file descriptors (``process_*``)

``/metrics`` wants ``Authorization: Bearer <METRICS_TOKEN>``: 401 ``unauthorized`` without it
or with another, 403 ``metrics_disabled`` while no ``PRINTFLOW_METRICS_TOKEN`` is set.

``route`` is the route's template (``/v1/orders/{order_id}``), never the raw path: the label stays
bounded and no personalization token lands in a time series. A request answered before routing
(a limit, a guard, a replay) is labelled with the template its path matches; requests no route
matches count as ``route="unmatched"``. The middleware wraps the whole app (inside
``api.request_ids`` only), so it sees every answer. It writes the access log
(``printflow.access``), also by template, which is why ``logs.configure_logging`` silences
uvicorn's own; each line carries the answer's ``X-Request-Id`` (``request_id``), the perimeter's
refusal (``refusal``) and whether the answer was replayed (``replayed``).

The worker's metrics are the Temporal SDK's, on ``PRINTFLOW_WORKER_METRICS_PORT`` (9464), with
printflow's own counters from the workers' activities and workflows on the same endpoint
(``printflow_configuration_errors_total``, ``printflow_production_reports_overdue``,
``printflow_activity_failing_attempts``; docs/deploying.md).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col
from starlette.routing import Match

from api.errors import Forbidden, Unauthorized
from db.models import Order
from domain.orders import CLOSED, Status
from runtime.logs import mask_token_path

OPEN_STATUSES = tuple(s.value for s in Status if s not in CLOSED)
SCRAPE_QUERY_TIMEOUT = 5.0
# Probes hit these every few seconds; their access lines are DEBUG so they do not drown the rest.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})

access_log = logging.getLogger("printflow.access")
log = logging.getLogger("printflow.metrics")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApiMetrics:
    """One registry per app, so tests can build many apps in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "printflow_http_requests",
            "HTTP requests answered, by route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "printflow_http_request_duration_seconds",
            "Time from request to the end of the response, by route template.",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.refusals = Counter(
            "printflow_http_refusals",
            "Requests the perimeter refused (body_too_large, rate_limited, "
            "too_many_failed_authentications).",
            ["reason"],
            registry=self.registry,
        )
        self.replays = Counter(
            "printflow_idempotent_replays",
            "Answers replayed for a repeated Idempotency-Key, by route template.",
            ["method", "route"],
            registry=self.registry,
        )
        self.open_orders = Gauge(
            "printflow_open_orders",
            "Orders not closed yet (read model), by status.",
            ["status"],
            registry=self.registry,
        )
        self.open_orders_failures = Counter(
            "printflow_open_orders_refresh_failures",
            "Scrapes whose open-orders count failed; printflow_open_orders kept its last values.",
            registry=self.registry,
        )
        for status in OPEN_STATUSES:
            self.open_orders.labels(status=status).set(0)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method=method, route=route, status=str(status)).inc()
        self.latency.labels(method=method, route=route).observe(seconds)

    async def refresh_open_orders(self, engine: AsyncEngine) -> None:
        column = col(Order.status)
        query = select(column, func.count()).where(column.in_(OPEN_STATUSES)).group_by(column)
        try:
            async with asyncio.timeout(SCRAPE_QUERY_TIMEOUT), engine.connect() as connection:
                rows = (await connection.execute(query)).all()
        except Exception as err:  # noqa: BLE001 - a scrape must still answer with the rest
            self.open_orders_failures.inc()
            log.warning("counting open orders failed: %s", err)
            return
        counts = {str(status): int(count) for status, count in rows}
        for status in OPEN_STATUSES:
            self.open_orders.labels(status=status).set(counts.get(status, 0))

    async def refresh_forever(self, engine: AsyncEngine, interval: float) -> None:
        """Counts open orders now and then every ``interval`` seconds, until cancelled."""
        while True:
            await self.refresh_open_orders(engine)
            await asyncio.sleep(interval)


def route_label(scope: Scope) -> str:
    route = scope.get("route")
    if route is None:  # answered before routing: the template the path would have matched
        route = _matching_route(scope)
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else "unmatched"


def _matching_route(scope: Scope) -> Any:
    app = scope.get("app")
    state = getattr(app, "state", None)
    if state is None:
        return None
    routes = getattr(state, "flat_routes", None)
    if routes is None:
        routes = state.flat_routes = list(_flatten(getattr(app, "routes", ())))
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
    return None


def _flatten(routes: Any) -> Any:
    """The app's routes, those of included routers too (FastAPI keeps them in the router)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flatten(inner.routes)
        else:
            yield route


class MetricsMiddleware:
    """Counts and times every HTTP request by route template, and writes the access log line."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            seconds = time.perf_counter() - started
            method = str(scope.get("method", ""))
            route = route_label(scope)
            self.metrics.observe(method, route, status, seconds)
            state = scope.get("state", {})
            refusal = state.get("refusal")  # api.perimeter
            replayed = bool(state.get("idempotent_replay"))  # api.idempotency
            if refusal:
                self.metrics.refusals.labels(reason=refusal).inc()
            if replayed:
                self.metrics.replays.labels(method=method, route=route).inc()
            # Unmatched requests show their path, any token in it masked.
            shown = route if route != "unmatched" else mask_token_path(str(scope.get("path", "")))
            # Set by api.request_ids, which wraps the whole app.
            request_id = state.get("request_id")
            note = f" {refusal}" if refusal else (" replayed" if replayed else "")
            access_log.log(
                logging.DEBUG if route in _QUIET_ROUTES else logging.INFO,
                "%s %s %d %.1fms %s%s",
                method,
                shown,
                status,
                seconds * 1000,
                request_id or "-",
                note,
                extra={
                    "http_method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                    "request_id": request_id,
                    "refusal": refusal,
                    "replayed": replayed,
                },
            )


router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    include_in_schema=False,
    response_class=Response,
    summary="Prometheus metrics of this API process",
)
async def metrics(request: Request) -> Response:
    expected = request.app.state.settings.metrics_token
    if expected is None:
        raise Forbidden(
            "metrics are disabled: no PRINTFLOW_METRICS_TOKEN is set", code="metrics_disabled"
        )
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.get_secret_value().encode()
    ):
        raise Unauthorized("send the metrics token as 'Authorization: Bearer <token>'")
    api_metrics: ApiMetrics = request.app.state.metrics
    # Open orders come from the background count (refresh_forever): no query per scrape.
    return Response(generate_latest(api_metrics.registry), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI) -> ApiMetrics:
    """Adds ``/metrics`` to ``app``; the metrics live on ``app.state``. ``api.main`` wraps the
    app's whole middleware stack in ``MetricsMiddleware``, so it counts every answer."""
    api_metrics = ApiMetrics()
    app.state.metrics = api_metrics
    app.include_router(router)
    return api_metrics

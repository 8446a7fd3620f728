"""The simulator's FastAPI app: ``create_app`` wires one job floor to the facility's routes.

``simulator.config`` says how the facility behaves, ``simulator.floor`` holds its jobs and
reports their events, ``simulator.routes`` translates HTTP. With a ``control_token``, reading
jobs and ``/_control/*`` need it as a bearer token. ``SimulatorConfig`` is re-exported
here because callers build an app from it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError

from simulator import samples
from simulator.config import SimulatorConfig
from simulator.floor import Simulator
from simulator.routes import invalid_request, router
from simulator.wire import bearer_token, error_response

__all__ = ["SimulatorConfig", "create_app"]

log = logging.getLogger("printflow.simulator")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Warns about a configuration that cannot work; on shutdown stops every background task."""
    simulator: Simulator = app.state.simulator
    config = simulator.initial_config
    if not config.tokens:
        log.warning("no facility tokens configured: every print job will get 401")
    if config.report_events and not config.printflow_url:
        log.warning("report_events is on but no printflow_url is set: no events will be sent")
    yield
    await simulator.aclose()


def guarded(method: str, path: str) -> bool:
    """What the control token guards: reading jobs (every job's address and e-mail, whoever
    sent it) and every ``/_control`` endpoint. The print job API a facility's client calls
    (``POST /print-jobs``, a job's replace, cancel, resume and ``GET …/state``) takes the
    facility's token."""
    if method == "GET" and path.startswith("/print-jobs/") and path.endswith("/state"):
        return False
    return path.startswith("/_control") or (method == "GET" and path.startswith("/print-jobs"))


def create_app(config: SimulatorConfig) -> FastAPI:
    """Builds one simulated facility; ``app.state.simulator`` exposes it to in-process tests."""
    app = FastAPI(title="printflow print facility simulator", lifespan=_lifespan)
    app.state.simulator = Simulator(config)

    @app.middleware("http")
    async def _control_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        expected = app.state.simulator.config.control_token
        if expected and guarded(request.method, request.url.path):
            given = bearer_token(request) or ""
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return error_response(401, "unauthorized", "send the control token as a bearer")
        return await call_next(request)

    app.exception_handler(RequestValidationError)(invalid_request)
    app.include_router(router)
    app.include_router(samples.router)
    return app

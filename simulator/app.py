"""The simulator's FastAPI app: ``create_app`` wires one job floor to the facility's routes.

``simulator.config`` says how the facility behaves, ``simulator.floor`` holds its jobs and
reports their events, ``simulator.routes`` translates HTTP. ``SimulatorConfig`` is re-exported
here because callers build an app from it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from simulator.config import SimulatorConfig
from simulator.floor import Simulator
from simulator.routes import invalid_request, router

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


def create_app(config: SimulatorConfig) -> FastAPI:
    """Builds one simulated facility; ``app.state.simulator`` exposes it to in-process tests."""
    app = FastAPI(title="printflow print facility simulator", lifespan=_lifespan)
    app.state.simulator = Simulator(config)
    app.exception_handler(RequestValidationError)(invalid_request)
    app.include_router(router)
    return app

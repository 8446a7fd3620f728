"""The printflow HTTP API and the customer-facing pages: ``uvicorn api.main:app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client

from api import errors
from api.routes import admin, orders
from db.engine import create_engine, create_tables, session_factory
from domain.facilities import load_facilities
from settings import Settings, get_settings
from workflows.client import connect


def create_app(settings: Settings | None = None, temporal: Client | None = None) -> FastAPI:
    """Builds the app; tests pass their own settings and an already connected client."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings or get_settings()
        app.state.settings = cfg
        app.state.facilities = load_facilities(cfg.facilities_file)
        engine = create_engine(cfg.database_url)
        await create_tables(engine)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.temporal = temporal or await connect(cfg)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="printflow",
        version="0.1.0",
        summary="Order backbone for print-on-demand: every order a durable workflow.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(admin.router)
    app.include_router(orders.router)
    return app


app = create_app()

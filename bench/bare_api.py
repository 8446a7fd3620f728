"""``uvicorn bench.bare_api:app``: the least an HTTP endpoint on printflow's database costs.

The floor the API's CPU per request is compared with (``bench/cost.py``): a plain Starlette app
under uvicorn, started as the API is (``python -m uvicorn MODULE:app --host --port``, no other
option: the same server, protocol and loop), on the same database (``PRINTFLOW_DATABASE_URL``:
printflow's SQLite file or PostgreSQL schema), through the same engine (``db.engine``: the same
drivers, SQLite's WAL and pragmas, PostgreSQL's pool), with nothing else:

- ``POST /rows``: reads the JSON body, inserts it as one row (a new id, the body as text, the
  time) and commits; answers 201 with the id;
- ``GET /rows/{id}``: one primary-key read; answers the stored body, or 404.

No authentication, validation, middleware, rate limit, idempotency or workflow: what remains is
uvicorn, Starlette's routing, JSON and one statement through SQLAlchemy's async engine. Its
table (``bench_bare_rows``) is created at start-up if missing; uvicorn's own access log is on,
as printflow's API writes one line per request of its own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from db.engine import create_engine
from runtime.settings import Settings

TABLE = "bench_bare_rows"

metadata = sa.MetaData()
rows = sa.Table(
    TABLE,
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    engine = create_engine(Settings().database_url)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    app.state.engine = engine
    try:
        yield
    finally:
        await engine.dispose()


async def create_row(request: Request) -> Response:
    body = json.loads(await request.body())
    row_id = str(uuid.uuid4())
    async with request.app.state.engine.begin() as connection:
        await connection.execute(
            rows.insert().values(id=row_id, body=json.dumps(body), created_at=datetime.now(UTC))
        )
    return JSONResponse({"id": row_id}, status_code=201)


async def read_row(request: Request) -> Response:
    async with request.app.state.engine.connect() as connection:
        found = (
            await connection.execute(
                sa.select(rows.c.body).where(rows.c.id == request.path_params["row_id"])
            )
        ).scalar_one_or_none()
    if found is None:
        return JSONResponse({"error": "not_found"}, status_code=404)
    return Response(found, media_type="application/json")


app = Starlette(
    routes=[
        Route("/rows", create_row, methods=["POST"]),
        Route("/rows/{row_id}", read_row, methods=["GET"]),
    ],
    lifespan=lifespan,
)

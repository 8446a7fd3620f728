"""How projections write the read model (``activities.read_model``), on SQLite and PostgreSQL.

A workflow task that projected a change as a local activity and was then lost (its worker
SIGKILLed, or its task timed out) leaves its version with its own moment; the task that
replaces it makes the same version later, and only that one is in the history. So at an equal
version the later ``updated_at`` wins, with its timeline rows, in whichever order the two
writes land; an older version never overwrites a newer one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, Column, Integer, String, select
from sqlalchemy.orm import DeclarativeBase

from activities.read_model import insert_once, write_newer
from db.engine import create_engine
from db.models import UTCDateTime

T0 = datetime(2026, 12, 4, 15, 41, 42, 334151, tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "read_model_rows"
    id = Column(String(40), primary_key=True)
    version = Column(Integer, nullable=False)
    updated_at = Column(UTCDateTime(), nullable=False)
    state = Column(JSON, nullable=False)


class Entry(Base):
    __tablename__ = "read_model_entries"
    row_id = Column(String(40), primary_key=True)
    seq = Column(Integer, primary_key=True)
    at = Column(UTCDateTime(), nullable=False)


class State(BaseModel):
    version: int
    updated_at: datetime


async def test_the_later_projection_of_a_version_wins_an_older_version_never(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            await conn.execute(
                Row.__table__.insert().values(id="o", version=0, updated_at=T0, state={})
            )

        async def project(version: int, at: datetime) -> bool:
            async with engine.begin() as conn:
                wrote = await write_newer(conn, Row, "o", State(version=version, updated_at=at))
                await insert_once(
                    conn, Entry, [{"row_id": "o", "seq": version, "at": at}], replace=wrote
                )
                return wrote

        async def stored() -> tuple[Any, ...]:
            async with engine.connect() as conn:
                row = (await conn.execute(select(Row.version, Row.updated_at))).one()
                entries = (await conn.execute(select(Entry.seq, Entry.at))).all()
                return (row.version, row.updated_at, [tuple(e) for e in entries])

        lost, kept = T0, T0 + timedelta(seconds=26)
        assert await project(1, lost)  # the lost task's local activity
        assert await project(1, kept)  # the task that replaced it: what the history holds
        assert await stored() == (1, kept, [(1, kept)])
        assert not await project(1, lost)  # the lost one's write, landing late
        assert not await project(1, kept)  # a plain retry changes nothing
        assert await stored() == (1, kept, [(1, kept)])
        later = kept + timedelta(seconds=1)
        assert await project(2, later)
        assert not await project(1, later + timedelta(seconds=5))  # an older version, late
        assert await stored() == (2, later, [(1, kept), (2, later)])
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
        await engine.dispose()

"""Our own configuration, refused by an outside system: a facility's ``api_token`` answered 401
or 403, the mail server refusing our sender or our login. Retrying fixes nothing until a person
fixes the setting, but it is not the merchant's problem either: the activity is retried (with
back-off) and never turns into a refusal that holds an order, and the operator is told three
ways (``ConfigurationAlerts.refused``):

- a log line at ERROR naming what refused and the setting to fix;
- ``printflow_configuration_errors_total{what}`` on the worker's metrics endpoint (``what`` is
  ``facility:<id>`` or ``mail``);
- a row in ``configuration_alerts``, which the API's ``GET /readyz`` reads (the API cannot see
  the worker's memory): ``/readyz`` says ``degraded`` while a row was refreshed within
  ``FRESH_FOR``.

The next call that goes through deletes the row (``ok``). A row nobody refreshes any more (the
orders that hit it were canceled, the worker was restarted with the fixed file and has not
called yet) stops counting after ``FRESH_FOR``: the retries back off to every 5 minutes, so a
problem that lasts refreshes it well within that.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from db.engine import utcnow
from db.models import ConfigurationAlert

log = logging.getLogger("printflow.configuration")

METRIC = "printflow_configuration_errors_total"
FRESH_FOR = timedelta(minutes=15)
MESSAGE_KEPT = 500


class ConfigurationAlerts:
    """Raises and clears the alerts of one worker process (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine | None) -> None:
        self._engine = engine
        # What this process raised: only those are cleared by a call that goes through, so a
        # successful call costs no database write.
        self._raised: set[str] = set()

    async def refused(self, what: str, setting: str, message: str) -> None:
        """``what`` refused our configuration: log, count, and record it for ``/readyz``."""
        log.error("configuration error: %s; fix %s (retrying until it is fixed)", message, setting)
        if activity.in_activity():
            activity.metric_meter().create_counter(
                METRIC, "calls refused because of our own configuration (token, mail sender)"
            ).add(1, {"what": what})
        self._raised.add(what)
        if self._engine is None:
            return
        try:
            await self._record(what, setting, message[:MESSAGE_KEPT])
        except Exception as err:  # noqa: BLE001 - the alert must not hide the refusal itself
            log.warning("configuration alert %s not recorded: %s", what, type(err).__name__)

    async def ok(self, what: str) -> None:
        """A call to ``what`` went through: its alert, if this process raised one, is over."""
        if what not in self._raised:
            return
        self._raised.discard(what)
        log.info("configuration error over: %s answers again", what)
        if self._engine is None:
            return
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    delete(ConfigurationAlert).where(col(ConfigurationAlert.what) == what)
                )
        except Exception as err:  # noqa: BLE001 - a stale row expires by itself (FRESH_FOR)
            log.warning("configuration alert %s not cleared: %s", what, type(err).__name__)

    async def _record(self, what: str, setting: str, message: str) -> None:
        now = utcnow()
        assert self._engine is not None
        values = {"setting": setting, "message": message, "last_seen": now}
        for _ in range(2):  # a concurrent attempt may insert the row between ours
            try:
                async with self._engine.begin() as conn:
                    changed = await conn.execute(
                        update(ConfigurationAlert)
                        .where(col(ConfigurationAlert.what) == what)
                        .values(**values)
                    )
                    if not changed.rowcount:
                        await conn.execute(
                            insert(ConfigurationAlert).values(what=what, first_seen=now, **values)
                        )
                return
            except IntegrityError:
                continue


async def active_alerts(
    engine: AsyncEngine, now: datetime | None = None
) -> list[ConfigurationAlert]:
    """The alerts refreshed within ``FRESH_FOR``, oldest first (what ``/readyz`` shows)."""
    since = (now or utcnow()) - FRESH_FOR
    async with AsyncSession(engine) as session:
        rows = await session.exec(
            select(ConfigurationAlert)
            .where(col(ConfigurationAlert.last_seen) >= since)
            .order_by(col(ConfigurationAlert.first_seen))
        )
        return list(rows)

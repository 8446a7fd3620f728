"""Calls to a print facility: submitting an order's print job, ending a hold, asking how a job
is getting on.

The facility's API is ``integrations.facility``; these activities choose the facility and say
what its answers mean for Temporal:

- a facility that cannot take the call now (5xx, 408, 429, no answer) fails the attempt with a
  plain error, which Temporal retries with back-off for as long as it takes;
- a facility refusing our token (401, 403) is our configuration, not the merchant's order: the
  attempt fails with a plain error too, so it is retried until the facilities file is fixed,
  and the operator is alerted (``activities.alerts``: a log line naming the facility and
  ``PRINTFLOW_FACILITIES_FILE``, a metric, ``/readyz`` degraded);
- a facility refusing the call itself (any other 4xx) raises the non-retryable
  ``FacilityRejected`` (``contracts.errors``), which no retry changes: the order goes on hold.
"""

from __future__ import annotations

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.alerts import ConfigurationAlerts
from contracts.errors import FACILITY_REJECTED
from contracts.orders import (
    FacilityOutcome,
    JobQuery,
    PrintJobRequest,
    PrintJobResult,
    PrintJobState,
)
from domain.facilities import Facilities
from integrations.facility import (
    FacilityClient,
    FacilityError,
    FacilityRejected,
    FacilityUnauthorized,
)

TOKEN_SETTING = "api_token of facility {id} in PRINTFLOW_FACILITIES_FILE"


class FacilityActivities:
    def __init__(
        self,
        facilities: Facilities,
        http: httpx.AsyncClient,
        alerts: ConfigurationAlerts | None = None,
    ) -> None:
        self._facilities = facilities
        self._http = http
        self._alerts = alerts or ConfigurationAlerts(None)

    @activity.defn
    async def submit_print_job(self, job: PrintJobRequest) -> PrintJobResult:
        client = self._client(job.facility_id)
        activity.logger.info("submitting the print job to facility %s", job.facility_id)
        try:
            job_id = await client.submit(job)
        except FacilityError as err:
            raise await self._for_temporal(err) from None
        await self._alerts.ok(_what(job.facility_id))
        activity.logger.info("facility %s accepted the print job", job.facility_id)
        return PrintJobResult(job_id=job_id)

    @activity.defn
    async def notify_facility(self, outcome: FacilityOutcome) -> None:
        """Ends a hold at the facility. A resume first replaces the held job with the job as
        it is now (``PUT /print-jobs/{job_id}``), so what was fixed is what gets printed."""
        client = self._client(outcome.facility_id)
        try:
            if outcome.outcome == "cancel":
                await client.cancel(outcome.job_id)
            else:
                # A job the facility canceled cannot be replaced; the resume below says so.
                if outcome.job is not None:
                    await client.replace(outcome.job_id, outcome.job)
                if not await client.resume(outcome.job_id):
                    activity.logger.warning(
                        "facility %s: job %s cannot resume", outcome.facility_id, outcome.job_id
                    )
        except FacilityError as err:
            raise await self._for_temporal(err) from None
        await self._alerts.ok(_what(outcome.facility_id))

    @activity.defn
    async def fetch_print_job_state(self, query: JobQuery) -> PrintJobState:
        """What the facility says of the job now: for an order whose reports stopped coming."""
        try:
            state = await self._client(query.facility_id).job_state(query.job_id)
        except FacilityError as err:
            raise await self._for_temporal(err) from None
        await self._alerts.ok(_what(query.facility_id))
        return state

    def _client(self, facility_id: str) -> FacilityClient:
        return FacilityClient(self._facilities.get(facility_id), self._http)

    async def _for_temporal(self, err: FacilityError) -> Exception:
        """A refusal of the job: non-retryable ``FacilityRejected``; a refusal of our token:
        an alert and a plain error, retried; anything else: a plain error, retried."""
        if isinstance(err, FacilityRejected):
            return ApplicationError(
                str(err),
                {"status_code": err.status_code, "body": err.body},
                type=FACILITY_REJECTED,
                non_retryable=True,
            )
        if isinstance(err, FacilityUnauthorized):
            setting = TOKEN_SETTING.format(id=err.facility_id)
            await self._alerts.refused(_what(err.facility_id), setting, str(err))
        return RuntimeError(str(err))


def _what(facility_id: str) -> str:
    return f"facility:{facility_id}"

"""Calls to a print facility: submitting an order's print job, and ending a hold.

The facility's API is ``integrations.facility``; these activities choose the facility and say
what its answers mean for Temporal. A facility that cannot take the call now (5xx, 408, 429, no
answer) fails the attempt with a plain error, which Temporal retries with back-off for as long
as it takes; a facility refusing the call (any other 4xx) raises the non-retryable
``FacilityRejected`` (``contracts.errors``), which no retry changes: the order goes on hold.
"""

from __future__ import annotations

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts.errors import FACILITY_REJECTED
from contracts.orders import FacilityOutcome, PrintJobRequest, PrintJobResult
from domain.facilities import Facilities
from integrations.facility import FacilityClient, FacilityError, FacilityRejected


class FacilityActivities:
    def __init__(self, facilities: Facilities, http: httpx.AsyncClient) -> None:
        self._facilities = facilities
        self._http = http

    @activity.defn
    async def submit_print_job(self, job: PrintJobRequest) -> PrintJobResult:
        client = self._client(job.facility_id)
        activity.logger.info("submitting the print job to facility %s", job.facility_id)
        try:
            job_id = await client.submit(job)
        except FacilityError as err:
            raise _for_temporal(err) from None
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
                return
            # A job the facility canceled cannot be replaced; the resume below says so.
            if outcome.job is not None:
                await client.replace(outcome.job_id, outcome.job)
            if not await client.resume(outcome.job_id):
                activity.logger.warning(
                    "facility %s: job %s cannot resume", outcome.facility_id, outcome.job_id
                )
        except FacilityError as err:
            raise _for_temporal(err) from None

    def _client(self, facility_id: str) -> FacilityClient:
        return FacilityClient(self._facilities.get(facility_id), self._http)


def _for_temporal(err: FacilityError) -> Exception:
    """A refusal: non-retryable ``FacilityRejected``; anything else: a plain error, retried."""
    if isinstance(err, FacilityRejected):
        return ApplicationError(
            str(err),
            {"status_code": err.status_code, "body": err.body},
            type=FACILITY_REJECTED,
            non_retryable=True,
        )
    return RuntimeError(str(err))

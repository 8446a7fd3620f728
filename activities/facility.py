"""Print submission: the one call that sends an order's files to its facility.

The facility deduplicates on ``Idempotency-Key`` (the order id), so retrying after a crash or a
lost response can never create a second job. 5xx and network errors retry for as long as it
takes; any other 4xx is the facility refusing the job, which no retry will change.
"""

from __future__ import annotations

from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts.errors import FACILITY_REJECTED
from contracts.orders import FacilityOutcome, PrintJobRequest, PrintJobResult
from domain.facilities import Facilities


class FacilityActivities:
    def __init__(self, facilities: Facilities, http: httpx.AsyncClient) -> None:
        self._facilities = facilities
        self._http = http

    @activity.defn
    async def submit_print_job(self, job: PrintJobRequest) -> PrintJobResult:
        facility = self._facilities.get(job.facility_id)
        activity.logger.info("submitting the print job to facility %s", facility.id)
        response = await self._http.post(
            f"{facility.api_url.rstrip('/')}/print-jobs",
            json=job.model_dump(mode="json"),
            headers={
                "Authorization": f"Bearer {facility.api_token.get_secret_value()}",
                "Idempotency-Key": job.order_id,
            },
        )
        _raise_unless_ok(facility.id, "the print job", response)
        activity.logger.info(
            "facility %s accepted the print job (HTTP %d)", facility.id, response.status_code
        )
        return PrintJobResult(job_id=str(response.json()["job_id"]))

    @activity.defn
    async def notify_facility(self, outcome: FacilityOutcome) -> None:
        """Ends a hold at the facility. A resume first replaces the held job with the job as
        it is now (``PUT /print-jobs/{job_id}``), so what was fixed is what gets printed."""
        facility = self._facilities.get(outcome.facility_id)
        job_url = f"{facility.api_url.rstrip('/')}/print-jobs/{outcome.job_id}"
        headers = {"Authorization": f"Bearer {facility.api_token.get_secret_value()}"}
        if outcome.outcome == "resume" and outcome.job is not None:
            response = await self._http.put(
                job_url, json=outcome.job.model_dump(mode="json"), headers=headers
            )
            if response.status_code != 409:  # a canceled job: the resume below says so
                _raise_unless_ok(facility.id, "update of the held job", response)
        response = await self._http.post(f"{job_url}/{outcome.outcome}", headers=headers)
        if response.status_code == 409 and outcome.outcome == "resume":
            # The facility already canceled the job: nothing left to resume.
            activity.logger.warning(
                "facility %s: job %s cannot resume", facility.id, outcome.job_id
            )
            return
        _raise_unless_ok(facility.id, outcome.outcome, response)


def _raise_unless_ok(facility_id: str, what: str, response: httpx.Response) -> None:
    """5xx, 408 and 429 raise a plain error, which Temporal retries with back-off; any other
    4xx is the facility refusing, which no retry changes (non-retryable ``FacilityRejected``)."""
    code = response.status_code
    if code >= 500 or code in (408, 429):
        raise RuntimeError(f"facility {facility_id} answered {code} to {what}")
    if code >= 400:
        raise ApplicationError(
            f"facility {facility_id} refused {what} ({code}): {_short(response)}",
            {"status_code": code, "body": _short(response)},
            type=FACILITY_REJECTED,
            non_retryable=True,
        )


def _short(response: httpx.Response) -> Any:
    text = response.text
    return text if len(text) <= 500 else text[:500] + "…"

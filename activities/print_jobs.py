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

from domain.facilities import Facilities
from workflows.order_messages import (
    FACILITY_REJECTED,
    FacilityOutcome,
    PrintJobRequest,
    PrintJobResult,
)


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
        if response.status_code >= 500 or response.status_code in (408, 429):
            # Raised as a plain error: Temporal retries it with back-off.
            raise RuntimeError(f"facility {facility.id} answered {response.status_code}")
        if response.status_code >= 400:
            raise ApplicationError(
                f"facility {facility.id} refused the print job ({response.status_code}): "
                f"{_short(response)}",
                {"status_code": response.status_code, "body": _short(response)},
                type=FACILITY_REJECTED,
                non_retryable=True,
            )
        activity.logger.info(
            "facility %s accepted the print job (HTTP %d)", facility.id, response.status_code
        )
        return PrintJobResult(job_id=str(response.json()["job_id"]))

    @activity.defn
    async def notify_facility(self, outcome: FacilityOutcome) -> None:
        facility = self._facilities.get(outcome.facility_id)
        response = await self._http.post(
            f"{facility.api_url.rstrip('/')}/print-jobs/{outcome.job_id}/{outcome.outcome}",
            headers={"Authorization": f"Bearer {facility.api_token.get_secret_value()}"},
        )
        if response.status_code == 409 and outcome.outcome == "resume":
            # The facility already canceled the job: nothing left to resume.
            activity.logger.warning(
                "facility %s: job %s cannot resume", facility.id, outcome.job_id
            )
            return
        response.raise_for_status()


def _short(response: httpx.Response) -> Any:
    text = response.text
    return text if len(text) <= 500 else text[:500] + "…"

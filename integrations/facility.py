"""The facilities' print API, as one facility serves it: ``FacilityClient``.

Every request goes to the facility's ``api_url`` with its ``api_token`` as a bearer token and is
bounded by ``TIMEOUT_SECONDS``. A submission carries the order id as ``Idempotency-Key``: the
facility deduplicates on it, so submitting again after a crash or a lost answer never creates
a second job.

Answers are classified once, here: 2xx is a result; 5xx, 408 and 429 raise
``FacilityUnavailable`` (asking again later may work); 401 and 403 raise
``FacilityUnauthorized`` (the facility refuses *our* token: a mistake of our configuration,
fixed by fixing the facilities file, never by the merchant); any other 4xx raises
``FacilityRejected`` (the facility refuses the request itself, and asking again changes
nothing), except where a method says what a 409 means. A request that gets no answer at all
raises httpx's own ``httpx.TransportError`` (a time-out, a refused connection), which is of the
first kind too.
"""

from __future__ import annotations

import httpx

from contracts.orders import PrintJobRequest, PrintJobState
from domain.facilities import Facility

TIMEOUT_SECONDS = 20.0
BODY_SHOWN = 500  # characters of a refusal's body kept in its message


class FacilityError(Exception):
    """The facility answered ``status_code`` to ``what`` (e.g. "the print job", "resume")."""

    def __init__(self, message: str, facility_id: str, what: str, status_code: int) -> None:
        super().__init__(message)
        self.facility_id = facility_id
        self.what = what
        self.status_code = status_code


class FacilityUnavailable(FacilityError):
    """5xx, 408 or 429: the facility cannot take the request now."""


class FacilityUnauthorized(FacilityError):
    """401 or 403: the facility does not accept our ``api_token`` (wrong, or rotated at the
    facility). Nothing about the job: retried once the facilities file is fixed."""


class FacilityRejected(FacilityError):
    """Any other 4xx: the facility refuses the request itself; ``body`` is (the start of) its
    answer, which says why."""

    def __init__(self, message: str, facility_id: str, what: str, status_code: int, body: str):
        super().__init__(message, facility_id, what, status_code)
        self.body = body


class FacilityClient:
    """The print API of ``facility``, over ``http``."""

    def __init__(
        self, facility: Facility, http: httpx.AsyncClient, *, timeout: float = TIMEOUT_SECONDS
    ) -> None:
        self._facility = facility
        self._http = http
        self._timeout = timeout
        self._jobs = f"{facility.api_url.rstrip('/')}/print-jobs"

    async def submit(self, job: PrintJobRequest) -> str:
        """Submits the print job (once per order, however often it is called); returns the
        facility's job id."""
        response = await self._request(
            "POST", self._jobs, job, extra_headers={"Idempotency-Key": job.order_id}
        )
        self._raise_unless_ok("the print job", response)
        return str(response.json()["job_id"])

    async def replace(self, job_id: str, job: PrintJobRequest) -> bool:
        """Replaces held job ``job_id`` with ``job`` (``PUT /print-jobs/{job_id}``); False if the
        facility has canceled the job (409), so there is nothing to replace."""
        response = await self._request("PUT", f"{self._jobs}/{job_id}", job)
        if response.status_code == 409:
            return False
        self._raise_unless_ok("update of the held job", response)
        return True

    async def resume(self, job_id: str) -> bool:
        """Ends the hold of job ``job_id``: it is printed. False if the facility has canceled
        the job (409), so there is nothing left to resume."""
        response = await self._request("POST", f"{self._jobs}/{job_id}/resume")
        if response.status_code == 409:
            return False
        self._raise_unless_ok("resume", response)
        return True

    async def job_state(self, job_id: str) -> PrintJobState:
        """What the facility knows of job ``job_id`` now (``GET /print-jobs/{job_id}/state``):
        how far it got, and its tracking once shipped."""
        response = await self._request("GET", f"{self._jobs}/{job_id}/state")
        self._raise_unless_ok("the job's state", response)
        return PrintJobState.model_validate(response.json())

    async def cancel(self, job_id: str) -> None:
        """Ends the hold of job ``job_id``: it is not printed."""
        response = await self._request("POST", f"{self._jobs}/{job_id}/cancel")
        self._raise_unless_ok("cancel", response)

    async def _request(
        self,
        method: str,
        url: str,
        job: PrintJobRequest | None = None,
        *,
        extra_headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._facility.api_token.get_secret_value()}"}
        return await self._http.request(
            method,
            url,
            json=job.model_dump(mode="json") if job is not None else None,
            headers=headers | (extra_headers or {}),
            timeout=self._timeout,
        )

    def _raise_unless_ok(self, what: str, response: httpx.Response) -> None:
        code = response.status_code
        facility_id = self._facility.id
        if code >= 500 or code in (408, 429):
            raise FacilityUnavailable(
                f"facility {facility_id} answered {code} to {what}", facility_id, what, code
            )
        if code in (401, 403):
            raise FacilityUnauthorized(
                f"facility {facility_id} refused our api_token ({code}) to {what}",
                facility_id,
                what,
                code,
            )
        if code >= 400:
            body = _short(response)
            raise FacilityRejected(
                f"facility {facility_id} refused {what} ({code}): {body}",
                facility_id,
                what,
                code,
                body,
            )


def _short(response: httpx.Response) -> str:
    text = response.text
    return text if len(text) <= BODY_SHOWN else text[:BODY_SHOWN] + "…"

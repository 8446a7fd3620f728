"""Reporting back to printflow: waiting until an event is due and delivering it with retries.

Events go to ``POST {printflow_url}/v1/production/events`` with the facility's bearer token; a
delivery re-sends the same ``event_id`` on connection errors, 5xx and 429 with exponential
backoff, and gives up on any other 4xx at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import httpx

from simulator.config import SimulatorConfig
from simulator.models import Issue, Job, SentEvent, Tracking, now

log = logging.getLogger("printflow.simulator")


def new_tracking() -> Tracking:
    """A made-up DHL tracking number, as sent with ``shipped``."""
    code = "SIM" + "".join(secrets.choice("0123456789") for _ in range(10))
    return Tracking(
        carrier="DHL",
        tracking_code=code,
        tracking_url=f"https://tracking.example/{code}",
    )


async def wait_due(job: Job, delay: float, wakeup: asyncio.Event) -> bool:
    """Sleeps until the next event is due; False when the job was canceled meanwhile.

    A hold freezes the sequence: after ``resume`` the step's full delay starts again, as a
    reprint would, so printflow never sees ``printed`` race its own resume call. ``wakeup`` is
    set on every cancel / hold / resume so the wait re-examines the job.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    while True:
        if job.status == "canceled":
            return False
        wakeup.clear()
        if job.status == "on_hold":
            await wakeup.wait()
            if job.status == "accepted":
                deadline = loop.time() + delay
            continue
        remaining = deadline - loop.time()
        if remaining <= 0:
            return True
        try:
            await asyncio.wait_for(wakeup.wait(), remaining)
        except TimeoutError:
            pass


async def deliver(
    client: httpx.AsyncClient,
    config: SimulatorConfig,
    job: Job,
    event: SentEvent,
    token: str,
    *,
    tracking: Tracking | None = None,
    issue: Issue | None = None,
) -> bool:
    """POSTs one event, re-sending the same ``event_id`` on connection errors and 5xx."""
    url = f"{config.printflow_url}/v1/production/events"
    payload: dict[str, Any] = {"event_id": event.event_id, "order_id": job.order_id}
    payload["type"] = event.type
    if tracking is not None:
        payload["tracking"] = tracking.model_dump()
    if issue is not None:
        payload["issue"] = issue.model_dump()
    headers = {"Authorization": f"Bearer {token}"}
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + config.retry_for
    backoff = config.retry_initial_backoff
    while True:
        event.attempts += 1
        try:
            response = await client.post(url, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            event.last_error = f"{type(exc).__name__}: {exc}"
        else:
            if response.is_success:
                event.status = "delivered"
                event.delivered_at = now()
                event.last_error = None
                log.info(
                    "event %s %s order=%s job=%s -> %s (attempt %d)",
                    event.type,
                    event.event_id,
                    job.order_id,
                    job.job_id,
                    response.status_code,
                    event.attempts,
                )
                return True
            event.last_error = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code < 500 and response.status_code != 429:
                # A 4xx will not heal by itself (bad token, bad body): retrying is noise.
                event.status = "failed"
                log.error("event %s %s refused: %s", event.type, url, event.last_error)
                return False
        if loop.time() + backoff > give_up_at:
            event.status = "failed"
            log.error(
                "event %s %s gave up after %d attempts: %s",
                event.type,
                event.event_id,
                event.attempts,
                event.last_error,
            )
            return False
        log.warning(
            "event %s %s attempt %d failed (%s); retrying in %.2fs",
            event.type,
            event.event_id,
            event.attempts,
            event.last_error,
            backoff,
        )
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, config.retry_max_backoff)

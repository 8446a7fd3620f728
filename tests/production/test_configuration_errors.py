"""Our own misconfiguration never punishes a merchant: a facility refusing our token, a mail
server refusing our sender. The order waits (retried with back-off), ``/readyz`` says
``degraded`` with the setting to fix, and the order goes on once it is fixed.

Real dev server, real database (SQLite and PostgreSQL), the worker's real activities
(``worker.build_activities``), the simulated facility and a real SMTP server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from temporalio.testing import WorkflowEnvironment

from devstack.mailsink import free_port
from simulator.floor import Simulator
from tests.helpers.api import Api, order_json, running_api
from tests.helpers.polling import apoll
from tests.helpers.production import FullApi
from tests.personalization.conftest import personalized_order


async def _readiness(api: Api) -> dict[str, Any] | None:
    """The readiness body; None for a moment when Temporal or the database did not answer the
    check within its 2 s. A configuration error never takes the API out of the load balancer:
    any other answer fails the test."""
    response = await api.client.get("/readyz")
    if response.status_code == 503:
        details = response.json()["error"]["details"]
        assert set(details) == {"database", "temporal"}, response.text
        return None
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _degraded(api: Api) -> dict[str, Any] | None:
    body = await _readiness(api)
    return body if body is not None and body["status"] == "degraded" else None


async def _ready(api: Api) -> dict[str, Any] | None:
    body = await _readiness(api)
    return body if body is not None and body["status"] == "ready" else None


async def test_a_rotated_facility_token_holds_no_order_and_it_goes_on_once_fixed(
    full_api: FullApi,
) -> None:
    api = full_api
    facility: Simulator = api.simulator.state.simulator
    ours = facility.config.tokens
    # The facility rotated its token; our facilities file still has the old one: 401.
    facility.config = facility.config.model_copy(update={"tokens": {"tok-rotated": "reykjavik"}})
    key = Api.auth(await api.merchant())
    created = await api.client.post("/v1/orders", json=order_json(country="IS"), headers=key)
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]

    body = await apoll("readyz to name the facility's token", lambda: _degraded(api))
    assert body["checks"]["configuration"] == (
        "facility reykjavik refused our api_token (401) to the print job: "
        "fix api_token of facility reykjavik in PRINTFLOW_FACILITIES_FILE"
    )
    refused = [r for r in facility.requests if r.order_id == order_id]
    assert refused and {r.status for r in refused} == {401}
    order = await api.order(key, order_id)
    assert order["status"] == "scheduled" and order["hold"] is None

    facility.config = facility.config.model_copy(update={"tokens": ours})  # fixed
    done = await api.until(key, order_id, lambda o: o["status"] == "in_production", within=40)
    statuses = {e["status"] for e in done["events"] if e.get("status")}
    assert "on_hold" not in statuses and "print_job_rejected" not in {
        e["type"] for e in done["events"]
    }
    await apoll("readyz to be ready again", lambda: _ready(api))


async def _order(api: Api, key: dict[str, str], order_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/v1/orders/{order_id}", headers=key)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _link_issued(order: dict[str, Any]) -> bool:
    return "personalization_link_issued" in {e["type"] for e in order["events"]}


class _SenderRefusing:
    """A relay that refuses our ``MAIL FROM`` while ``refuse`` is set (e.g. after a change of
    PRINTFLOW_MAIL_FROM to an address it does not own), and takes the mail afterwards."""

    def __init__(self) -> None:
        self.refuse: str | None = "550 5.7.1 sender address not owned by user printflow"
        self.refused = 0
        self.delivered: list[str] = []

    async def handle_MAIL(  # noqa: N802 (aiosmtpd's hook name)
        self, server: object, session: object, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse is not None:
            self.refused += 1
            return self.refuse
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        self.delivered.append(str(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


@pytest.fixture
async def relay() -> AsyncIterator[tuple[_SenderRefusing, int]]:
    handler, port = _SenderRefusing(), free_port()
    server = Controller(handler, hostname="127.0.0.1", port=port)
    server.start()
    try:
        yield handler, port
    finally:
        server.stop()


async def test_a_mail_server_refusing_our_sender_holds_no_order_and_it_goes_on_once_fixed(
    dev_env: WorkflowEnvironment,
    database_url: str,
    tmp_path: Path,
    relay: tuple[_SenderRefusing, int],
) -> None:
    handler, port = relay
    async with running_api(
        dev_env.client,
        database_url,
        tmp_path,
        smtp_port=port,
        personalization_email_delay=timedelta(seconds=1),
    ) as api:
        key = Api.auth(await api.merchant())
        created = await api.client.post("/v1/orders", json=personalized_order(), headers=key)
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]

        body = await apoll("readyz to name the mail sender", lambda: _degraded(api))
        assert "PRINTFLOW_MAIL_FROM" in body["checks"]["configuration"]
        assert "550" in body["checks"]["configuration"]
        order = await _order(api, key, order_id)
        assert order["status"] == "pending_personalization" and order["hold"] is None

        handler.refuse = None  # the sender is fixed
        order = await api.until(key, order_id, _link_issued, within=40)
        assert handler.refused >= 1 and handler.delivered
        assert order["status"] == "pending_personalization" and order["hold"] is None
        assert "on_hold" not in {e["type"] for e in order["events"]}
        await apoll("readyz to be ready again", lambda: _ready(api))

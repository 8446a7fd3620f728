"""Rotating a merchant's webhook secret: during the overlap every delivery carries two ``v1=``
signatures (new, then old), so a receiver with either secret verifies it; after it, only the new
secret signs. Real API, real receiver, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from db.engine import create_engine
from db.models import Merchant
from integrations.webhooks import verify_signature
from tests.helpers.api import ADMIN_TOKEN
from tests.helpers.production import FullApi
from tests.helpers.webhook_receiver import Received


def _verifies(secret: str, received: Received) -> bool:
    return verify_signature(secret, received.body, received.timestamp, received.signature)


async def _delivered_for(api: FullApi, order_id: str, count: int) -> list[Received]:
    def mine(r: Received) -> bool:
        return r.answered == 200 and order_id in r.body.decode()

    await api.receiver.wait_for(lambda rec: len([r for r in rec.requests if mine(r)]) >= count)
    return [r for r in api.receiver.requests if mine(r)]


async def test_both_secrets_sign_during_the_overlap_then_only_the_new(full_api: FullApi) -> None:
    api = full_api
    merchant = await api.hooked_merchant()
    old = merchant["webhook_secret"]
    key = api.auth(merchant)

    response = await api.client.post(
        f"/v1/admin/merchants/{merchant['id']}/rotate-webhook-secret",
        headers={"X-Admin-Token": ADMIN_TOKEN},
    )
    assert response.status_code == 200, response.text
    new = response.json()["webhook_secret"]
    assert new != old and new.startswith("whsec_")
    api.receiver.secret = new

    order = await api.in_production(key)
    first = (await _delivered_for(api, order["id"], 1))[0]
    assert first.signature is not None and first.signature.count("v1=") == 2, first.signature
    assert _verifies(new, first) and _verifies(old, first), "a receiver with either verifies"
    assert not _verifies("whsec_someone-else", first)

    engine = create_engine(api.settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(Merchant)
                .where(Merchant.id == merchant["id"])  # type: ignore[arg-type]
                .values(
                    previous_webhook_secret_valid_until=datetime.now(UTC) - timedelta(seconds=1)
                )
            )
    finally:
        await engine.dispose()

    printed = await api.event(order["id"], "printed")
    assert printed.status_code == 202, printed.text
    received = await _delivered_for(api, order["id"], 2)
    last = received[-1]
    assert last.event_id != first.event_id
    assert last.signature is not None and last.signature.count("v1=") == 1, last.signature
    assert _verifies(new, last) and not _verifies(old, last)

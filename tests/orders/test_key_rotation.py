"""Rotating a merchant's API key: the new one is shown once and works at once, the old one works
until ``previous_valid_until`` and never after. Real API, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text, update

from api.idempotency import WITHHELD
from db.engine import create_engine
from db.models import Merchant
from tests.helpers.api import ADMIN_TOKEN, Api, order_json

ADMIN = {"X-Admin-Token": ADMIN_TOKEN}


async def _status(api: Api, key: str) -> int:
    return (await api.client.get("/v1/orders", headers={"X-API-Key": key})).status_code


async def _expire_previous(api: Api, merchant_id: str) -> None:
    """Moves the overlap's end into the past, as 24 hours would."""
    engine = create_engine(api.settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(Merchant)
                .where(Merchant.id == merchant_id)  # type: ignore[arg-type]
                .values(previous_api_key_valid_until=datetime.now(UTC) - timedelta(seconds=1))
            )
    finally:
        await engine.dispose()


async def test_old_and_new_keys_both_work_during_the_overlap_then_only_the_new(api: Api) -> None:
    merchant = await api.merchant()
    old = merchant["api_key"]
    created = await api.client.post("/v1/orders", json=order_json(), headers=api.auth(merchant))
    assert created.status_code == 201

    before = datetime.now(UTC)
    response = await api.client.post(
        f"/v1/admin/merchants/{merchant['id']}/rotate-key", headers=ADMIN
    )
    assert response.status_code == 200, response.text
    rotated = response.json()
    new = rotated["api_key"]
    assert new != old and new.startswith("pf_")
    until = datetime.fromisoformat(rotated["previous_valid_until"])
    assert before + timedelta(hours=24) <= until <= datetime.now(UTC) + timedelta(hours=24)

    assert await _status(api, old) == 200
    assert await _status(api, new) == 200
    mine = await api.client.get("/v1/orders", headers={"X-API-Key": new})
    assert [o["id"] for o in mine.json()["data"]] == [created.json()["id"]], "same merchant"

    await _expire_previous(api, merchant["id"])
    assert await _status(api, old) == 401
    assert await _status(api, new) == 200


async def test_a_second_rotation_retires_the_oldest_key_at_once(api: Api) -> None:
    merchant = await api.merchant()
    path = f"/v1/admin/merchants/{merchant['id']}/rotate-key"
    second = (await api.client.post(path, headers=ADMIN)).json()["api_key"]
    third = (await api.client.post(path, headers=ADMIN)).json()["api_key"]
    assert await _status(api, merchant["api_key"]) == 401
    assert await _status(api, second) == 200
    assert await _status(api, third) == 200


async def test_the_overlap_follows_the_setting(api: Api) -> None:
    api.settings.key_rotation_overlap = timedelta(seconds=0)
    merchant = await api.merchant()
    path = f"/v1/admin/merchants/{merchant['id']}/rotate-key"
    assert (await api.client.post(path, headers=ADMIN)).status_code == 200
    assert await _status(api, merchant["api_key"]) == 401


async def test_rotation_needs_the_admin_token_and_a_known_merchant(api: Api) -> None:
    merchant = await api.merchant()
    path = f"/v1/admin/merchants/{merchant['id']}/rotate-key"
    refused = await api.client.post(path, headers=api.auth(merchant))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    missing = await api.client.post("/v1/admin/merchants/mer_nope/rotate-key", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert await _status(api, merchant["api_key"]) == 200


async def test_a_replayed_rotation_never_shows_or_stores_the_new_key(api: Api) -> None:
    merchant = await api.merchant()
    path = f"/v1/admin/merchants/{merchant['id']}/rotate-key"
    headers = {**ADMIN, "Idempotency-Key": "rotate-1"}
    first = await api.client.post(path, headers=headers)
    again = await api.client.post(path, headers=headers)
    assert first.status_code == again.status_code == 200
    key = first.json()["api_key"]
    assert again.json()["api_key"] == WITHHELD
    assert again.json()["previous_valid_until"] == first.json()["previous_valid_until"]
    assert await _status(api, key) == 200, "the replay did not rotate again"

    engine = create_engine(api.settings.database_url)
    try:
        async with engine.connect() as connection:
            kept = await connection.execute(text("SELECT response_body FROM idempotent_requests"))
            assert all(key not in str(row[0]) for row in kept)
            rows = await connection.execute(text("SELECT * FROM merchants"))
            assert all(key not in str(tuple(row)) for row in rows), "stored hashed only"
    finally:
        await engine.dispose()

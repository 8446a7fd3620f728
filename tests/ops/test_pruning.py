"""What the API process prunes in the background: ``idempotent_requests`` and the outboxes of
workflow starts after ``IDEMPOTENCY_TTL``, quotes ``IDEMPOTENCY_TTL`` after they expire, against
the real API of tests/helpers/api.py (dev server, SQLite and PostgreSQL). An outbox row whose
workflow never started is never deleted.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select

from api.pruning import prune_idempotency, prune_outboxes, prune_portal, prune_quotes
from db.models import (
    IdempotentRequest,
    MerchantUser,
    Order,
    OrderStart,
    PortalSession,
    PortalToken,
    Quote,
)
from tests.helpers.api import Api, order_json, started
from tests.helpers.polling import apoll

TTL = timedelta(hours=24)


async def test_idempotency_rows_older_than_the_ttl_are_deleted(api: Api) -> None:
    # Days ahead: the API's own pruning loop (which runs at start, at the real time) leaves
    # these rows to the call under test.
    now = datetime.now(UTC) + timedelta(days=10)
    rows = {
        "old-answered": now - TTL - timedelta(minutes=1),
        "old-abandoned": now - TTL - timedelta(hours=3),
        "fresh": now - TTL + timedelta(minutes=1),
    }
    async with api.app.state.sessions() as session:
        for key, at in rows.items():
            session.add(
                IdempotentRequest(
                    scope="0" * 64,
                    key=key,
                    request_hash="1" * 64,
                    status_code=None if key == "old-abandoned" else 201,
                    response_body=None if key == "old-abandoned" else "{}",
                    created_at=at,
                )
            )
        await session.commit()
        assert await prune_idempotency(session, TTL, now=now) == 2
        left = (await session.exec(select(IdempotentRequest.key))).all()
    assert left == ["fresh"]


async def test_quotes_are_deleted_a_ttl_after_they_expired(api: Api) -> None:
    merchant = await api.merchant()
    body = {
        "shipping_address": {"country": "DE"},
        "items": [{"product_uid": "mug_11oz_white", "quantity": 2}],
        "currency": "EUR",
    }
    quoted = await api.client.post("/v1/quotes", json=body, headers=Api.auth(merchant))
    assert quoted.status_code == 201, quoted.text
    # Days ahead, as above: the API's own pruning loop leaves these rows to the call under test.
    now = datetime.now(UTC) + timedelta(days=10)
    kept = {"quo_just_expired": now - timedelta(minutes=1), "quo_fresh": now + timedelta(hours=23)}
    async with api.app.state.sessions() as session:
        for quote_id, expires_at in kept.items():
            session.add(
                Quote(
                    id=quote_id,
                    merchant_id=merchant["id"],
                    country="DE",
                    currency="EUR",
                    items=body["items"],
                    options=[],
                    created_at=expires_at - timedelta(days=1),
                    expires_at=expires_at,
                )
            )
        # The API's quote, expired a minute longer ago than the grace.
        await session.exec(
            update(Quote)
            .where(col(Quote.id) == quoted.json()["id"])
            .values(expires_at=now - TTL - timedelta(minutes=1))
        )
        await session.commit()
        assert await prune_quotes(session, TTL, now=now) == 1
        left = set((await session.exec(select(Quote.id))).all())
    assert left == set(kept)


async def test_portal_sessions_go_when_expired_and_links_a_day_after(api: Api) -> None:
    merchant = await api.merchant()
    # Days ahead, as above: the API's own pruning loop leaves these rows to the call under test.
    now = datetime.now(UTC) + timedelta(days=10)
    async with api.app.state.sessions() as session:
        session.add(
            MerchantUser(
                id="usr_1",
                merchant_id=merchant["id"],
                email="u@shop.example",
                name="U",
                role="owner",
                created_at=now - timedelta(days=9),
            )
        )
        for sid, expires_at in {"ended": now, "live": now + timedelta(minutes=1)}.items():
            session.add(
                PortalSession(
                    id=sid,
                    user_id="usr_1",
                    created_at=now - timedelta(hours=12),
                    expires_at=expires_at,
                )
            )
        links = {"gone": now - timedelta(days=1), "kept": now - timedelta(hours=23)}
        for link, expires_at in links.items():
            session.add(
                PortalToken(
                    id=link,
                    user_id="usr_1",
                    purpose="reset",
                    created_at=expires_at - timedelta(hours=1),
                    expires_at=expires_at,
                )
            )
        await session.commit()
        assert await prune_portal(session, now=now) == 2
        assert (await session.exec(select(PortalSession.id))).all() == ["live"]
        assert (await session.exec(select(PortalToken.id))).all() == ["kept"]


async def test_outbox_rows_of_started_workflows_are_deleted_after_the_ttl_never_the_others(
    api: Api,
) -> None:
    key = Api.auth(await api.merchant())
    made = []
    for _ in range(2):
        created = await api.client.post("/v1/orders", json=order_json(), headers=key)
        assert created.status_code == 201, created.text
        made.append(created.json()["id"])
        await started(api.temporal.get_workflow_handle(made[-1]))
    old_started, fresh_started = made

    async def outbox_emptied() -> bool:  # the relay deletes started workflows' rows in batches
        async with api.app.state.sessions() as session:
            return not (await session.exec(select(OrderStart.order_id))).all()

    await apoll("the outbox to be emptied", outbox_emptied)
    never_started = "ord_" + uuid.uuid4().hex
    long_ago = datetime.now(UTC) - TTL - timedelta(hours=1)

    async with api.app.state.sessions() as session:
        template = await session.get(Order, old_started)
        assert template is not None
        # An order whose workflow never started (its start keeps failing): as created, aged.
        session.add(
            Order(
                **template.model_dump(exclude={"id", "order_reference_id", "support_id"}),
                id=never_started,
                order_reference_id="NEVER-1",
                support_id="PF-NEVER001",
            )
        )
        await session.flush()
        # Outbox rows the relay left behind (a process died before deleting them).
        for order_id in (old_started, fresh_started, never_started):
            session.add(
                OrderStart(
                    order_id=order_id,
                    due_at=datetime.now(UTC) + timedelta(hours=1),
                    static_summary="s",
                    static_details="d",
                )
            )
        await session.exec(
            update(Order)
            .where(col(Order.id).in_([old_started, never_started]))
            .values(created_at=long_ago)
        )
        await session.commit()

    assert await prune_outboxes(api.app.state.sessions, api.temporal, TTL) == 1
    async with api.app.state.sessions() as session:
        left = set((await session.exec(select(OrderStart.order_id))).all())
    assert left == {fresh_started, never_started}, "only the old row of a started workflow"

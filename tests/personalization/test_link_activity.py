"""issue_personalization_link against a real database (SQLite, PostgreSQL) and real SMTP."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.testing import ActivityEnvironment

from activities.personalization import PersonalizationActivities, link_subject
from contracts.orders import IssueLink
from db.models import Merchant, Order, PersonalizationLink
from devstack.mailsink import MailSink, free_port
from domain.orders import OrderCreate, OrderInput, new_state
from domain.personalization import hash_token, pending_items
from domain.support_ids import generate_support_id
from integrations.mail import Mailer
from runtime.settings import Settings
from tests.helpers.workflows import OSLO
from tests.personalization.conftest import LINK, html_part, link_in, personalized_order, text_part

BASE = "https://printflow.example"
EXPIRES = datetime(2030, 6, 11, 14, 5, tzinfo=UTC)


@dataclass
class FakeWebhooks:
    """The webhook side is another module's; here we only see what it is handed."""

    calls: list[dict[str, object]] = field(default_factory=list)
    failures: int = 0  # how many calls fail before one succeeds

    async def link_issued(
        self, *, merchant_id: str, order_id: str, url: str, expires_at: datetime
    ) -> None:
        self.calls.append(
            {"merchant_id": merchant_id, "order_id": order_id, "url": url, "expires_at": expires_at}
        )
        if len(self.calls) <= self.failures:
            raise ConnectionError(f"webhook store down while handling {url}")


async def _order(engine: AsyncEngine) -> IssueLink:
    """An order row (links refer to it) and the request the workflow would send for it."""
    now = datetime.now(UTC)
    merchant = Merchant(
        id="mer_" + uuid.uuid4().hex,
        name="Mug Shop",
        support_email="help@mugs.example.com",
        api_key_hash=uuid.uuid4().hex,
        api_key_prefix="pf_x",
        webhook_secret="whsec",
        created_at=now,
    )
    body = OrderCreate.model_validate(personalized_order("R-1001"))
    inp = OrderInput(
        order_id="ord_" + uuid.uuid4().hex,
        merchant_id=merchant.id,
        support_email=merchant.support_email,
        approval="auto",
        order=body,
        facility=OSLO,
        received_at=now,
    )
    state = new_state(inp)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        session.add(merchant)
        await session.flush()  # the order's foreign key needs the merchant first
        session.add(
            Order(
                id=inp.order_id,
                merchant_id=merchant.id,
                order_reference_id=body.order_reference_id,
                support_id=generate_support_id(),
                request_hash="x",
                workflow_input=inp.model_dump(mode="json"),
                status=state.status.value,
                facility_id=OSLO.id,
                state=state.model_dump(mode="json"),
                created_at=now,
                updated_at=now,
            )
        )
        await session.commit()
    return IssueLink(
        order_id=inp.order_id,
        merchant_id=merchant.id,
        support_email=merchant.support_email,
        order_reference_id=body.order_reference_id,
        seq=1,
        expires_at=EXPIRES,
        items=pending_items(state.items),
    )


async def _links(engine: AsyncEngine, order_id: str) -> list[PersonalizationLink]:
    async with AsyncSession(engine) as session:
        rows = await session.exec(
            select(PersonalizationLink)
            .where(PersonalizationLink.order_id == order_id)
            .order_by(PersonalizationLink.seq)  # type: ignore[arg-type]
        )
        return list(rows)


SECRET = b"the link secret of every worker, 32+ bytes"


def _activities(
    engine: AsyncEngine, port: int, webhooks: FakeWebhooks | None = None, secret: bytes = SECRET
) -> PersonalizationActivities:
    settings = Settings(smtp_host="127.0.0.1", smtp_port=port)
    return PersonalizationActivities(engine, Mailer(settings), BASE, webhooks, link_secret=secret)


def _token(url: str) -> str:
    match = LINK.fullmatch(url)
    assert match is not None, url
    return match.group(1)


async def test_the_merchant_gets_a_link_whose_token_is_stored_only_as_a_hash(
    engine: AsyncEngine, mail: MailSink
) -> None:
    req = await _order(engine)
    issued = await _activities(engine, mail.port).issue_personalization_link(req)

    message = await mail.wait_for(timeout=5)
    assert message["To"] == "help@mugs.example.com"
    assert message["Subject"] == link_subject("R-1001")
    assert "personalization needed" in message["Subject"] and "R-1001" in message["Subject"]
    url = link_in(message)
    assert url.startswith(f"{BASE}/p/")
    token = _token(url)
    assert len(token) >= 43  # 256 bits, base64url

    [row] = await _links(engine, req.order_id)
    assert (row.id, row.seq, row.expires_at) == (issued.link_id, 1, EXPIRES)
    assert row.id.startswith("lnk_") and row.used_at is None
    assert row.token_hash == hash_token(token)
    assert token not in row.model_dump_json()
    assert token not in issued.model_dump_json(), "the workflow history must never hold it"

    text, html = text_part(message), html_part(message)
    for body in (text, html):
        assert "R-1001" in body
        assert "mug_11oz_white × 2" in body and "poster_a3_matte × 1" in body
        assert "Name on the mug: text, up to 20 characters, required" in body
        assert "Photo: image URL (http or https), optional" in body
        assert "Tuesday, 11 June 2030, 14:05 UTC" in body
        assert "This is link" not in body  # the first link replaces nothing
    assert "tshirt_m_black" not in text, "items without personalization are not listed"


async def test_a_retry_resends_the_same_link_so_a_forwarded_one_keeps_working(
    engine: AsyncEngine, mail: MailSink
) -> None:
    """The first attempt sent its e-mail and then timed out (SMTP, the webhook's tries): the
    merchant may have forwarded that link already. The retry e-mails the very same link."""
    req = await _order(engine)
    first = await _activities(engine, mail.port).issue_personalization_link(req)
    # Temporal retrying, on another worker process with the same PRINTFLOW_LINK_SECRET.
    again = await _activities(engine, mail.port).issue_personalization_link(req)

    assert again == first
    await mail.wait_for(lambda _: len(mail.messages) == 2, timeout=5)
    forwarded, resent = (_token(link_in(m)) for m in mail.messages)
    assert forwarded == resent
    [row] = await _links(engine, req.order_id)
    assert row.token_hash == hash_token(forwarded)


async def test_a_worker_with_another_secret_sends_a_new_link_that_works(
    engine: AsyncEngine, mail: MailSink
) -> None:
    req = await _order(engine)
    await _activities(engine, mail.port).issue_personalization_link(req)
    other = _activities(engine, mail.port, secret=b"another secret".ljust(32, b"!"))
    await other.issue_personalization_link(req)

    await mail.wait_for(lambda _: len(mail.messages) == 2, timeout=5)
    first, second = (_token(link_in(m)) for m in mail.messages)
    assert first != second, "the token cannot be made without the secret"
    [row] = await _links(engine, req.order_id)
    assert row.token_hash == hash_token(second), "the link that went out last is the one"


async def test_a_later_link_says_the_earlier_one_no_longer_works(
    engine: AsyncEngine, mail: MailSink
) -> None:
    req = await _order(engine)
    activities = _activities(engine, mail.port)
    await activities.issue_personalization_link(req)
    later = await activities.issue_personalization_link(req.model_copy(update={"seq": 2}))

    message = await mail.wait_for(lambda m: "link 2" in text_part(m), timeout=5)
    for body in (text_part(message), html_part(message)):
        assert "This is link 2 for this order" in body
        assert "the earlier link expired unused and no longer works" in body
    assert [(r.seq, r.id) for r in await _links(engine, req.order_id)][1] == (2, later.link_id)


async def test_a_link_the_customer_already_used_is_not_sent_again(
    engine: AsyncEngine, mail: MailSink
) -> None:
    req = await _order(engine)
    activities = _activities(engine, mail.port)
    first = await activities.issue_personalization_link(req)
    await mail.wait_for(timeout=5)
    async with AsyncSession(engine) as session:
        row = await session.get(PersonalizationLink, first.link_id)
        assert row is not None
        row.used_at = datetime.now(UTC)
        used_hash = row.token_hash
        session.add(row)
        await session.commit()

    again = await activities.issue_personalization_link(req)

    assert again.link_id == first.link_id
    [row] = await _links(engine, req.order_id)
    assert row.token_hash == used_hash
    assert len(mail.messages) == 1


async def test_a_failed_email_raises_and_its_retry_sends_a_working_link(
    engine: AsyncEngine, tmp_path: object
) -> None:
    req = await _order(engine)
    port = free_port()
    activities = _activities(engine, port)
    with pytest.raises(OSError):  # nothing listens yet: Temporal will retry the activity
        await activities.issue_personalization_link(req)
    [unsent] = await _links(engine, req.order_id)

    async with MailSink(port=port) as sink:
        await activities.issue_personalization_link(req)
        url = link_in(await sink.wait_for(timeout=5))

    [row] = await _links(engine, req.order_id)
    assert row.id == unsent.id
    assert row.token_hash == unsent.token_hash == hash_token(_token(url))


async def test_the_webhook_gets_the_link_too(engine: AsyncEngine, mail: MailSink) -> None:
    webhooks = FakeWebhooks()
    req = await _order(engine)
    await _activities(engine, mail.port, webhooks).issue_personalization_link(req)

    url = link_in(await mail.wait_for(timeout=5))
    assert webhooks.calls == [
        {
            "merchant_id": req.merchant_id,
            "order_id": req.order_id,
            "url": url,
            "expires_at": EXPIRES,
        }
    ]


@pytest.mark.parametrize("failures", [2, 10])
async def test_a_failing_webhook_never_undoes_the_sent_email(
    engine: AsyncEngine, mail: MailSink, failures: int, caplog: pytest.LogCaptureFixture
) -> None:
    webhooks = FakeWebhooks(failures=failures)
    req = await _order(engine)
    issued = await _activities(engine, mail.port, webhooks).issue_personalization_link(req)

    url = link_in(await mail.wait_for(timeout=5))
    assert len(mail.messages) == 1
    [row] = await _links(engine, req.order_id)
    assert row.id == issued.link_id and row.token_hash == hash_token(_token(url))
    assert len(webhooks.calls) == min(failures + 1, 3)  # a few tries, then it gives up
    gave_up = [r for r in caplog.records if "webhook for link" in r.getMessage()]
    assert len(gave_up) == (1 if failures >= 3 else 0)
    assert all(_token(url) not in r.getMessage() for r in caplog.records if r.name != "mail.log")


async def test_as_an_activity_it_logs_the_link_id_but_never_the_token(
    engine: AsyncEngine, mail: MailSink, caplog: pytest.LogCaptureFixture
) -> None:
    req = await _order(engine)
    with caplog.at_level(logging.DEBUG):
        issued = await ActivityEnvironment().run(
            _activities(engine, mail.port).issue_personalization_link,
            req.model_copy(update={"seq": 3}),
        )
    token = _token(link_in(await mail.wait_for(timeout=5)))

    assert issued.seq == 3 and issued.expires_at == EXPIRES
    # Everything but the receiving SMTP server's own debug log (which shows the mail it got).
    ours = [r for r in caplog.records if r.name != "mail.log"]
    assert any(issued.link_id in r.getMessage() for r in ours)
    assert all(token not in r.getMessage() for r in ours)


async def test_links_expire_when_the_workflow_says(engine: AsyncEngine, mail: MailSink) -> None:
    req = await _order(engine)
    soon = datetime.now(UTC) + timedelta(days=7)
    issued = await _activities(engine, mail.port).issue_personalization_link(
        req.model_copy(update={"expires_at": soon})
    )
    assert issued.expires_at == soon
    [row] = await _links(engine, req.order_id)
    assert abs(row.expires_at - soon) < timedelta(milliseconds=1)

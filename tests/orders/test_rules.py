"""The table of docs/api.md, "Order statuses": which action is allowed in which status, and
nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from domain.orders import Action, Hold, OrderCreate, Status, allowed_actions, refusal
from runtime.settings import Settings

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
LATER = NOW + timedelta(hours=6)

ALLOWED = {
    Action.CANCEL: {"pending_personalization", "pending_approval", "scheduled", "on_hold"},
    Action.UPDATE_ADDRESS: {"pending_personalization", "pending_approval", "scheduled", "on_hold"},
    Action.APPROVE: {"pending_personalization", "pending_approval"},
    Action.REORDER: {"printed", "shipped", "delivered", "returned"},
}
ADDRESS_HOLD = Hold(kind="address_invalid", description="no such street", since=NOW)


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("action", list(Action))
def test_each_action_is_allowed_exactly_where_the_contract_says(
    status: Status, action: Action
) -> None:
    hold = ADDRESS_HOLD if status is Status.ON_HOLD else None
    why = refusal(action, status, LATER, NOW, hold)
    expected = status.value in ALLOWED[action]
    assert (why is None) == expected, (action, status, why)
    if why is not None:
        assert why.code and why.message


def test_after_the_cutoff_a_scheduled_order_refuses_changes_even_before_its_status_moves() -> None:
    assert refusal(Action.CANCEL, Status.SCHEDULED, NOW, NOW - timedelta(seconds=1)) is None
    late = refusal(Action.CANCEL, Status.SCHEDULED, NOW, NOW + timedelta(seconds=1))
    assert late is not None and late.code == "order_in_production"
    assert allowed_actions(Status.SCHEDULED, NOW, NOW)["update_address"] is False


def test_on_hold_the_address_changes_only_for_an_address_problem() -> None:
    quality = Hold(kind="file_quality", description="blurry", since=NOW)
    assert refusal(Action.UPDATE_ADDRESS, Status.ON_HOLD, None, NOW, quality) is not None
    assert refusal(Action.UPDATE_ADDRESS, Status.ON_HOLD, None, NOW, ADDRESS_HOLD) is None


def _order(**address: str) -> dict[str, object]:
    base = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "address_line_1": "1 Main St",
        "city": "Springfield",
        "post_code": "12345",
        "country": "DE",
        "email": "ada@example.com",
    }
    base.update(address)
    return {
        "order_reference_id": "R-1",
        "shipping_address": base,
        "items": [{"item_reference_id": "1", "product_uid": "p", "quantity": 1}],
    }


@pytest.mark.parametrize("country", ["US", "CA", "AU"])
def test_carriers_need_a_state_for_some_countries(country: str) -> None:
    with pytest.raises(ValidationError, match="state is required"):
        OrderCreate.model_validate(_order(country=country))
    assert OrderCreate.model_validate(_order(country=country, state="XY"))


def test_country_codes_are_iso_and_normalized() -> None:
    assert OrderCreate.model_validate(_order(country="no")).shipping_address.country == "NO"
    with pytest.raises(ValidationError, match="ISO 3166-1"):
        OrderCreate.model_validate(_order(country="XX"))


def test_durations_take_seconds_or_iso_8601(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRINTFLOW_PERSONALIZATION_EMAIL_DELAY", "90")
    monkeypatch.setenv("PRINTFLOW_PERSONALIZATION_LINK_TTL", "P7D")
    settings = Settings()
    assert settings.personalization_email_delay == timedelta(seconds=90)
    assert settings.personalization_link_ttl == timedelta(days=7)
    monkeypatch.setenv("PRINTFLOW_PERSONALIZATION_LINK_TTL", "a week")
    with pytest.raises(ValidationError):
        Settings()


def test_a_reprint_keeps_the_personalization_of_its_original() -> None:
    from datetime import timedelta as td

    from domain.facilities import FacilityInfo, Schedule
    from domain.orders import OrderInput, new_state

    body = _order()
    body["items"] = [
        {
            "item_reference_id": "mug",
            "product_uid": "mug",
            "quantity": 1,
            "personalization": {"fields": [{"name": "name", "label": "Name", "type": "text"}]},
        },
        {"item_reference_id": "poster", "product_uid": "poster", "quantity": 1},
    ]
    facility = FacilityInfo(
        id="x", name="X", timezone="UTC", api_url="http://x", schedule=Schedule(every_seconds=60)
    )
    common = {
        "order_id": "ord_1",
        "merchant_id": "mer_1",
        "support_email": "a@example.com",
        "approval": "auto",
        "order": OrderCreate.model_validate(body),
        "facility": facility,
        "received_at": NOW,
        "personalization_email_delay": td(minutes=15),
    }
    fresh = new_state(OrderInput.model_validate(common))
    assert fresh.status is Status.PENDING_PERSONALIZATION

    reprint = new_state(
        OrderInput.model_validate(
            {**common, "reorder_of": "ord_0", "personalization_values": {"mug": {"name": "Ada"}}}
        )
    )
    assert reprint.status is Status.SCHEDULED
    mug = reprint.items[0]
    assert (mug.personalization_status, mug.personalization_values) == (
        "completed",
        {"name": "Ada"},
    )
    assert reprint.items[1].personalization_status == "not_required"


def test_email_addresses_are_checked_and_test_domains_are_welcome() -> None:
    order = OrderCreate.model_validate(_order(email="Ada@Shop.TEST"))
    assert order.shipping_address.email == "Ada@shop.test"
    with pytest.raises(ValidationError, match="not a valid e-mail address"):
        OrderCreate.model_validate(_order(email="ada.example.com"))

"""Which timeline events become which webhooks (pure: no server, no database)."""

from __future__ import annotations

from datetime import UTC, datetime

from activities.webhooks.emitter import (
    DELAYED,
    ON_HOLD,
    SHIPMENT_CREATED,
    STATUS_UPDATED,
    events_for,
)
from domain.orders import Hold, Status, TimelineEvent, new_state
from tests.helpers.workflows import order_input

NOW = datetime(2026, 6, 9, 14, 5, tzinfo=UTC)


def _types(event: TimelineEvent, hold: Hold | None = None) -> list[tuple[str, dict[str, object]]]:
    state = new_state(order_input(NOW))
    state.hold = hold
    return [(type_, data) for _, type_, data in events_for(state, event)]


def test_only_status_changes_shipments_and_holds_are_sent() -> None:
    assert _types(TimelineEvent(seq=1, at=NOW, type="created")) == []
    assert _types(TimelineEvent(seq=2, at=NOW, type="hold_reminder_sent")) == []
    assert _types(TimelineEvent(seq=3, at=NOW, type="event_ignored", detail={"x": 1})) == []
    assert _types(TimelineEvent(seq=4, at=NOW, type="printed", status="printed")) == [
        (STATUS_UPDATED, {"status": "printed"})
    ]
    second_package = {"carrier": "UPS", "tracking_code": "2", "tracking_url": None}
    assert _types(TimelineEvent(seq=5, at=NOW, type="shipment", detail=second_package)) == [
        (SHIPMENT_CREATED, {"shipment": second_package})
    ]


def test_a_refused_print_job_is_a_hold_too() -> None:
    hold = Hold(kind="facility_rejected", description="unknown product", since=NOW)
    rejected = TimelineEvent(
        seq=6, at=NOW, type="print_job_rejected", status=Status.ON_HOLD.value, detail={}
    )
    assert _types(rejected, hold) == [
        (STATUS_UPDATED, {"status": "on_hold"}),
        (ON_HOLD, {"hold": {"kind": "facility_rejected", "description": "unknown product"}}),
    ]


def test_a_late_order_is_an_order_delayed_webhook_with_the_new_estimate() -> None:
    delay = {
        "ships_by": "2026-06-09T22:00:00+00:00",
        "estimated_ships_by": "2026-06-10T22:00:00+00:00",
        "delivery_estimate": {"earliest": "2026-06-13", "latest": "2026-06-18"},
    }
    late = TimelineEvent(seq=7, at=NOW, type="late", detail=delay)
    assert _types(late) == [(DELAYED, {"delay": delay})]

"""OrderWorkflow: one durable workflow per order, from the API until the order is closed.

Where an order waits, and for what:
- ``pending_personalization`` / ``pending_approval``: for the customer or the merchant;
- ``scheduled``: for the production cutoff of its facility (a timer), while cancel and address
  changes are still accepted;
- at the cutoff the print job is submitted exactly once (the facility deduplicates on the order
  id) and the order is ``in_production``.

Every status change goes through ``_commit``, which records a timeline event, updates the search
attributes and projects the state into the read model. Nothing else writes state outward.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.print_jobs import (
        FACILITY_REJECTED,
        PrintJobItem,
        PrintJobRequest,
        PrintJobResult,
    )
    from activities.projection import Projection
    from domain.facilities import FacilityInfo
    from domain.orders import (
        CLOSED,
        Action,
        CancelRequest,
        Hold,
        OrderInput,
        OrderState,
        ShippingAddress,
        Status,
        TimelineEvent,
        new_state,
        refusal,
    )
    from domain.schedule import describe_cutoff, next_cutoff
    from pydantic import BaseModel

    from workflows import search_attributes as sa

PROJECTION_TIMEOUT = timedelta(seconds=30)
SUBMIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=0,  # 5xx and timeouts: for as long as it takes
    non_retryable_error_types=[FACILITY_REJECTED],
)


class AddressChange(BaseModel):
    """A new shipping address; ``facility`` is where that address routes (the API routes it)."""

    shipping_address: ShippingAddress
    facility: FacilityInfo


def search_attributes_for(state: OrderState) -> TypedSearchAttributes:
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(sa.ORDER_STATUS, state.status.value),
        SearchAttributePair(sa.MERCHANT_ID, state.merchant_id),
        SearchAttributePair(sa.ORDER_REFERENCE, state.order_reference_id),
        SearchAttributePair(sa.FACILITY, state.facility.id),
    ]
    if state.cutoff_at is not None:
        pairs.append(SearchAttributePair(sa.CUTOFF_AT, state.cutoff_at))
    return TypedSearchAttributes(pairs)


@workflow.defn(name="OrderWorkflow")
class OrderWorkflow:
    @workflow.init
    def __init__(self, inp: OrderInput) -> None:
        self._input = inp
        self._state = inp.state or new_state(inp)
        self._unprojected: list[TimelineEvent] = []
        # Bumped by every change that can move the cutoff; the cutoff wait restarts on it.
        self._generation = 0

    # ------------------------------------------------------------------ the order's life

    @workflow.run
    async def run(self, inp: OrderInput) -> OrderState:
        if inp.state is None:
            if self._state.status is Status.SCHEDULED:
                self._state.cutoff_at = self._next_cutoff(inp.received_at)
            await self._commit("created", {"facility": self._state.facility.id})

        while self._state.status not in CLOSED:
            status = self._state.status
            if status is Status.SCHEDULED:
                await self._wait_for_cutoff()
            else:
                self._show(self._waiting_text())
                await workflow.wait_condition(lambda s=status: self._state.status is not s)  # type: ignore[misc]

        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _wait_for_cutoff(self) -> None:
        while self._state.status is Status.SCHEDULED:
            cutoff = self._state.cutoff_at
            assert cutoff is not None
            remaining = cutoff - workflow.now()
            if remaining > timedelta(0):
                generation = self._generation
                text = f"waiting for {describe_cutoff(self._state.facility, cutoff)}"
                self._show(f"{text}; cancel and address changes accepted until then")
                try:
                    await workflow.wait_condition(
                        lambda: self._generation != generation
                        or self._state.status is not Status.SCHEDULED,
                        timeout=remaining,
                        timeout_summary=text,
                    )
                    continue  # canceled, re-addressed or re-routed: look again
                except asyncio.TimeoutError:
                    pass
            await self._submit()
            return

    async def _submit(self) -> None:
        state = self._state
        self._show(f"submitting the print job to {state.facility.name}")
        job = PrintJobRequest(
            order_id=state.order_id,
            order_reference_id=state.order_reference_id,
            facility_id=state.facility.id,
            items=[
                PrintJobItem(
                    item_reference_id=i.item_reference_id,
                    product_uid=i.product_uid,
                    quantity=i.quantity,
                    files=[f.model_dump(mode="json") for f in i.files],
                    personalization=i.personalization_values,
                )
                for i in state.items
            ],
            shipping_address=state.shipping_address,
        )
        try:
            result = await workflow.execute_activity(
                "submit_print_job",
                job,
                result_type=PrintJobResult,
                start_to_close_timeout=self._input.print_submit_timeout,
                retry_policy=SUBMIT_RETRY,
                summary=f"print job to {state.facility.name}",
            )
        except ActivityError as err:
            cause = err.cause
            if not (isinstance(cause, ApplicationError) and cause.type == FACILITY_REJECTED):
                raise
            state.hold = Hold(kind="facility_rejected", description=cause.message, since=workflow.now())
            await self._commit("print_job_rejected", {"reason": cause.message}, Status.ON_HOLD)
            return
        state.job_id = result.job_id
        await self._commit("in_production", {"job_id": result.job_id}, Status.IN_PRODUCTION)

    # ------------------------------------------------------------------ merchant's updates

    @workflow.update
    async def cancel(self, request: CancelRequest) -> OrderState:
        self._state.cancel_reason = request.reason
        await self._commit("canceled", {"reason": request.reason}, Status.CANCELED)
        return self._state

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        self._refuse_unless(Action.CANCEL)

    @workflow.update
    async def update_shipping_address(self, change: AddressChange) -> OrderState:
        state = self._state
        detail: dict[str, Any] = {"country": change.shipping_address.country}
        state.shipping_address = change.shipping_address
        if change.facility.id != state.facility.id:
            detail["facility"] = change.facility.id
            state.facility = change.facility
            if state.status is Status.SCHEDULED:
                state.cutoff_at = self._next_cutoff(workflow.now())
                detail["cutoff_at"] = state.cutoff_at.isoformat()
        self._generation += 1
        await self._commit("shipping_address_updated", detail)
        return state

    @update_shipping_address.validator
    def _validate_address(self, change: AddressChange) -> None:
        self._refuse_unless(Action.UPDATE_ADDRESS)

    @workflow.update
    async def approve(self) -> OrderState:
        skipped = []
        for item in self._state.items:
            if item.personalization_status == "pending":
                item.personalization_status = "skipped"
                skipped.append(item.item_reference_id)
        self._state.cutoff_at = self._next_cutoff(workflow.now())
        detail: dict[str, Any] = {"cutoff_at": self._state.cutoff_at.isoformat()}
        if skipped:
            detail["personalization_skipped"] = skipped
        await self._commit("approved", detail, Status.SCHEDULED)
        return self._state

    @approve.validator
    def _validate_approve(self) -> None:
        self._refuse_unless(Action.APPROVE)

    @workflow.query
    def order(self) -> OrderState:
        return self._state

    # ------------------------------------------------------------------ the one place

    async def _commit(
        self, event: str, detail: dict[str, Any] | str | None = None, status: Status | None = None
    ) -> None:
        """Records a change: timeline, search attributes, read model. The only writer."""
        state = self._state
        now = workflow.now()
        if status is not None:
            state.status = status
        state.version += 1
        state.event_seq += 1
        state.updated_at = now
        self._unprojected.append(TimelineEvent(seq=state.event_seq, at=now, type=event, detail=detail))
        workflow.upsert_search_attributes(search_attributes_for(state))
        projection = Projection(state=state, new_events=self._unprojected)
        self._unprojected = []
        self._show(self._waiting_text())
        await workflow.execute_local_activity(
            "project_order", projection, start_to_close_timeout=PROJECTION_TIMEOUT
        )

    # ------------------------------------------------------------------ helpers

    def _refuse_unless(self, action: Action) -> None:
        state = self._state
        why = refusal(action, state.status, state.cutoff_at, workflow.now(), state.hold)
        if why is not None:
            raise ApplicationError(why.message, type=why.code, non_retryable=True)

    def _next_cutoff(self, after: datetime) -> datetime:
        facility = self._state.facility
        return next_cutoff(facility.schedule, facility.timezone, after)

    def _waiting_text(self) -> str:
        state = self._state
        match state.status:
            case Status.PENDING_PERSONALIZATION:
                return "waiting for the customer's personalization"
            case Status.PENDING_APPROVAL:
                return "waiting for the merchant's approval"
            case Status.SCHEDULED if state.cutoff_at is not None:
                return f"waiting for {describe_cutoff(state.facility, state.cutoff_at)}"
            case Status.ON_HOLD if state.hold is not None:
                return f"on hold ({state.hold.kind}): {state.hold.description}"
            case Status.IN_PRODUCTION:
                return f"in production at {state.facility.name} (job {state.job_id})"
        return str(state.status)

    @staticmethod
    def _show(text: str) -> None:
        workflow.set_current_details(text[:300])

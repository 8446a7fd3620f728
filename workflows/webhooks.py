"""WebhookDeliveryWorkflow: one per order (id ``webhooks-{order_id}``), sends its events in order.

Events are queued by signal (ids only) and delivered one at a time: a later event of the order
waits until the earlier one is delivered or given up, so a receiver sees each order's events in
the order they happened. Each delivery is an activity retried with exponential back-off for 25
hours; after that the event is recorded as given up and the queue moves on (the merchant can
redeliver it later). The order workflow never waits for any of this.

An event already queued is not queued again, a redelivery included, and the queue holds at
most ``MAX_QUEUED`` events (more are dropped with a warning: they stay stored, and the merchant
can redeliver them once the queue has drained), so the queue carried into continue-as-new stays
small whatever is signaled.

The workflow ends after it has been idle for a while, once its queue is empty: an event signaled
in the same workflow task as the idle timer's firing is delivered, whichever of the two the SDK
applies first. The next event starts a new run (signal-with-start). Long-lived runs continue as
new, so the history stays bounded.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.webhooks.delivery import WebhookActivities
    from contracts.errors import EVENT_MISSING
    from contracts.webhooks import (
        ENQUEUE_SIGNAL,
        DeliverWebhook,
        EnqueueWebhooks,
        GiveUp,
        QueuedEvent,
        WebhookDeliveryInput,
    )

# At least 24 hours of retries, as the docs promise receivers: 10 s, 20 s, 40 s … then hourly.
DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(hours=1),
    maximum_attempts=0,
    non_retryable_error_types=[EVENT_MISSING],
)
DELIVERY_WINDOW = timedelta(hours=25)
# One POST: the activity's own HTTP timeout is 10 s; this only catches a stuck worker.
ATTEMPT_TIMEOUT = timedelta(seconds=30)
# Status changes of one order often come in bursts (printed, shipped …): linger a little
# instead of starting a new run for each.
IDLE_TIMEOUT = timedelta(minutes=2)
# Enough to drop a duplicate signal from a retried projection; bounded for continue-as-new.
REMEMBER_DONE = 200
# Far more than an order's events; what a merchant's redeliveries can add is bounded by it.
MAX_QUEUED = 1000
# Since this patch a redelivery of an event already queued adds nothing, the queue is bounded,
# and the idle timeout ends the run only once the queue is empty.
BOUNDED_QUEUE = "bounded-queue"


@workflow.defn
class WebhookDeliveryWorkflow:
    @workflow.init
    def __init__(self, inp: WebhookDeliveryInput) -> None:
        self._order_id = inp.order_id
        self._queue: list[QueuedEvent] = list(inp.queue)
        self._done: list[str] = list(inp.done)

    @workflow.signal(name=ENQUEUE_SIGNAL)
    def enqueue(self, message: EnqueueWebhooks) -> None:
        for event_id in message.event_ids:
            queued = next((q for q in self._queue if q.event_id == event_id), None)
            if not message.redeliver and (queued is not None or event_id in self._done):
                continue  # the same event again (a retried projection): already on its way
            if queued is not None and workflow.patched(BOUNDED_QUEUE):
                # Redelivered while it waits: it goes once, even if it was delivered before.
                # (The event being delivered right now is sent as it was asked for.)
                if queued is not self._queue[0]:
                    queued.redeliver = True
                continue
            if len(self._queue) >= MAX_QUEUED and workflow.patched(BOUNDED_QUEUE):
                workflow.logger.warning(
                    "webhooks of order %s: %d events queued; %s not queued (redeliver it later)",
                    self._order_id,
                    len(self._queue),
                    event_id,
                )
                continue
            self._queue.append(QueuedEvent(event_id=event_id, redeliver=message.redeliver))

    @workflow.query
    def pending(self) -> list[str]:
        return [q.event_id for q in self._queue]

    @workflow.run
    async def run(self, inp: WebhookDeliveryInput) -> int:
        delivered = 0
        while True:
            if not self._queue:
                workflow.set_current_details("idle: every event of this order is delivered")
                try:
                    await workflow.wait_condition(
                        lambda: bool(self._queue),
                        timeout=IDLE_TIMEOUT,
                        timeout_summary="idle; the next event starts a new run",
                    )
                except TimeoutError:
                    # An event signaled with the timer's firing may be queued by now.
                    if not (self._queue and workflow.patched(BOUNDED_QUEUE)):
                        return delivered
            await self._deliver(self._queue[0])
            self._done = [*self._done, self._queue.pop(0).event_id][-REMEMBER_DONE:]
            delivered += 1
            if (
                workflow.info().is_continue_as_new_suggested()
                or delivered >= inp.deliveries_per_run
            ):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    inp.model_copy(update={"queue": self._queue, "done": self._done})
                )

    async def _deliver(self, item: QueuedEvent) -> None:
        waiting = len(self._queue) - 1
        workflow.set_current_details(
            f"delivering {item.event_id}"
            + (f"; {waiting} later event(s) wait for it" if waiting else "")
        )
        try:
            await workflow.execute_activity_method(
                WebhookActivities.deliver_webhook,
                DeliverWebhook(event_id=item.event_id, redeliver=item.redeliver),
                start_to_close_timeout=ATTEMPT_TIMEOUT,
                schedule_to_close_timeout=DELIVERY_WINDOW,
                retry_policy=DELIVERY_RETRY,
                summary=f"POST {item.event_id}",
            )
        except ActivityError:
            # Out of time (or the event vanished): record it and let the next event go.
            await workflow.execute_activity_method(
                WebhookActivities.webhook_given_up,
                GiveUp(event_id=item.event_id),
                start_to_close_timeout=ATTEMPT_TIMEOUT,
                summary=f"give up {item.event_id}",
            )

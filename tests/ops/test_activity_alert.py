"""An activity that keeps failing is named in a log line from the alert threshold on."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.attempts import AttemptsAlert
from worker import WORKFLOW_RUNNER

ATTEMPTS: list[int] = []


@activity.defn
async def flaky_relay() -> str:
    ATTEMPTS.append(activity.info().attempt)
    if activity.info().attempt < 4:
        raise ConnectionError("the relay is down")
    return "sent"


@workflow.defn(sandboxed=False)
class SendsOnce:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(
            flaky_relay,
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=1)),
        )


async def test_attempts_from_the_threshold_on_are_logged_with_the_activity_name(
    env: WorkflowEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    ATTEMPTS.clear()
    task_queue = "tq-" + uuid.uuid4().hex
    with caplog.at_level(logging.WARNING, logger="printflow.activities"):
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[SendsOnce],
            activities=[flaky_relay],
            workflow_runner=WORKFLOW_RUNNER,
            interceptors=[AttemptsAlert(threshold=2)],
        ):
            result = await env.client.execute_workflow(
                SendsOnce.run, id=task_queue, task_queue=task_queue
            )
    assert result == "sent" and ATTEMPTS == [1, 2, 3, 4]
    alerts = [r.getMessage() for r in caplog.records if r.name == "printflow.activities"]
    # Attempt 1 failed quietly; 2 and 3 failed at or past the threshold; 4 succeeded.
    assert len(alerts) == 2, alerts
    assert all("flaky_relay" in a and "ConnectionError" in a for a in alerts)
    assert "attempt 2" in alerts[0] and "attempt 3" in alerts[1]

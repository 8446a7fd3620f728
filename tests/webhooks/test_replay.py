"""Today's delivery workflow must replay the history that earlier code wrote."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import WORKFLOW_RUNNER
from workflows.webhooks import WebhookDeliveryWorkflow

HISTORY = Path(__file__).parent / "histories" / "webhook_delivery_gave_up.json"


async def test_the_committed_delivery_history_replays() -> None:
    history = WorkflowHistory.from_json("webhook-delivery", HISTORY.read_text())
    replayer = Replayer(
        workflows=[WebhookDeliveryWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
        data_converter=pydantic_data_converter,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure

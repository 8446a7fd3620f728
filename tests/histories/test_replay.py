"""Today's workflow code must replay the histories that earlier code wrote: every ``*.json`` in
this folder, against every workflow the worker registers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import WORKFLOW_RUNNER, WORKFLOWS

HISTORIES = {path.stem: path.read_text() for path in sorted(Path(__file__).parent.glob("*.json"))}


@pytest.mark.parametrize("name", sorted(HISTORIES))
async def test_committed_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(name, HISTORIES[name])
    replayer = Replayer(
        workflows=list(WORKFLOWS),
        workflow_runner=WORKFLOW_RUNNER,
        data_converter=pydantic_data_converter,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_there_is_a_history_to_replay() -> None:
    assert HISTORIES, "tests/histories/ holds no history: record one with tests.histories.record"


def test_every_workflow_the_worker_runs_has_a_committed_history() -> None:
    recorded = {
        json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]["workflowType"][
            "name"
        ]
        for text in HISTORIES.values()
    }
    names = {getattr(w, "__temporal_workflow_definition").name for w in WORKFLOWS}
    assert names <= recorded, f"no committed history of {sorted(names - recorded)}"

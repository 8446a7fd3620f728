"""Today's workflow code must replay the histories that earlier code wrote: every ``*.json`` in
this folder, against every workflow the worker registers.

``order_encrypted_with_test_key`` was written with every payload encrypted under key A: it
replays through the payload codec with the test keys ``B,A`` (tests/helpers/keys.py), as a worker
replays after a key rotation. The others were written without keys, and replay as a worker
without keys runs them: a worker with keys refuses plaintext payloads (workflows/codec.py).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from domain.countries import ISO_COUNTRIES, STATE_REQUIRED
from tests.helpers.keys import TEST_KEY_A, TEST_KEY_B, keys
from worker import WORKFLOW_RUNNER, WORKFLOWS
from workflows.client import SharedPydanticPayloadConverter, data_converter
from workflows.codec import ENCODING

HISTORIES = {path.stem: path.read_text() for path in sorted(Path(__file__).parent.glob("*.json"))}
ENCRYPTED = "order_encrypted_with_test_key"


def _replayer(payload_keys: str) -> Replayer:
    return Replayer(
        workflows=list(WORKFLOWS),
        workflow_runner=WORKFLOW_RUNNER,
        data_converter=data_converter(keys(payload_keys) if payload_keys else ()),
    )


@pytest.mark.parametrize("name", sorted(HISTORIES))
async def test_committed_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(name, HISTORIES[name])
    payload_keys = f"{TEST_KEY_B},{TEST_KEY_A}" if name == ENCRYPTED else ""
    result = await _replayer(payload_keys).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def test_workflows_replayed_again_build_no_type_adapter_of_their_own() -> None:
    """Every type a workflow decodes is the same object in every sandbox, so the process's one
    cache of pydantic adapters (``SharedPydanticPayloadConverter``) holds one per type however
    many workflows ran: a type made anew in each sandbox would grow it with every workflow (and
    keep each one's sandbox alive)."""
    replayer = _replayer("")

    async def plaintext() -> AsyncIterator[WorkflowHistory]:
        for name, text in HISTORIES.items():
            if name != ENCRYPTED:
                yield WorkflowHistory.from_json(name, text)

    async def replay_all() -> None:
        result = await replayer.replay_workflows(plaintext(), raise_on_replay_failure=False)
        assert not result.replay_failures, result.replay_failures

    await replay_all()
    after_one = _adapters().cache_info()
    assert after_one.currsize > 0
    for _ in range(3):
        await replay_all()
    after_four = _adapters().cache_info()
    assert (after_four.currsize, after_four.misses) == (after_one.currsize, after_one.misses)
    assert after_four.hits > after_one.hits


def _adapters() -> Any:
    """The cache of pydantic type adapters the shared JSON converter keeps (the SDK's
    ``PydanticJSONPlainPayloadConverter``; temporalio is pinned)."""
    return SharedPydanticPayloadConverter().converters[b"json/plain"]._type_adapter  # type: ignore[attr-defined]


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


def test_the_encrypted_history_holds_no_customer_data_in_the_clear() -> None:
    text = HISTORIES[ENCRYPTED]
    for word in ("Kari", "Nordmann", "Karl Johans", "kari@example.com"):
        assert word not in text
    encodings = [
        base64.b64decode(value) for value in _metadata_values(json.loads(text), "encoding")
    ]
    assert encodings.count(ENCODING) > 10


async def test_the_encrypted_history_needs_its_key() -> None:
    history = WorkflowHistory.from_json(ENCRYPTED, HISTORIES[ENCRYPTED])
    result = await _replayer(TEST_KEY_B).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert "PayloadDecryptError" in str(result.replay_failure)


def _metadata_values(node: object, key: str) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        metadata = node.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get(key), str):
            found.append(metadata[key])
        for value in node.values():
            found += _metadata_values(value, key)
    elif isinstance(node, list):
        for value in node:
            found += _metadata_values(value, key)
    return found


@pytest.mark.parametrize("name", sorted(HISTORIES))
async def test_histories_replay_after_the_api_tightens_its_input_rules(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a history holds was accepted under the rules of its day: a rule the API tightens
    # later (a state now required for Norway, countries no longer shipped to) must not make
    # running orders fail to read their own history (domain.stored). Likewise a stricter rule
    # for facilities files (ids, cutoff times), whose facility every order carries.
    import domain.facilities
    import domain.orders

    monkeypatch.setattr(domain.orders, "STATE_REQUIRED", STATE_REQUIRED | {"NO"})
    monkeypatch.setattr(domain.orders, "ISO_COUNTRIES", ISO_COUNTRIES - {"NO", "DE"})
    monkeypatch.setattr(domain.facilities, "_ID_RE", re.compile(r"^fac-[0-9]+$"))

    def no_times(value: object) -> object:
        raise ValueError("cutoff times are now given another way")

    monkeypatch.setattr(domain.facilities, "_clean_times", no_times)

    history = WorkflowHistory.from_json(name, HISTORIES[name])
    payload_keys = f"{TEST_KEY_B},{TEST_KEY_A}" if name == ENCRYPTED else ""
    result = await _replayer(payload_keys).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure

"""The payload converter every workflow of a process shares its parts with
(``workflows.client.SharedPydanticPayloadConverter``): the SDK builds one per workflow, and
each used to build and keep pydantic ``TypeAdapter``s of its own."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.worker import Replayer

from domain.orders import Status
from tests.helpers.workflows import order_input
from worker import WORKFLOW_RUNNER, WORKFLOWS
from workflows.client import SharedPydanticPayloadConverter, data_converter

HISTORIES = Path(__file__).parent.parent / "histories"
JSON = b"json/plain"


def _adapters() -> Any:
    """The cache of pydantic type adapters the shared JSON converter keeps (the SDK's
    ``PydanticJSONPlainPayloadConverter``; temporalio is pinned)."""
    return SharedPydanticPayloadConverter().converters[JSON]._type_adapter  # type: ignore[attr-defined]


def test_every_converter_built_shares_one_set_of_parts() -> None:
    first, second = SharedPydanticPayloadConverter(), SharedPydanticPayloadConverter()
    assert first is not second
    assert list(first.converters) == list(PydanticPayloadConverter().converters)
    assert all(first.converters[k] is second.converters[k] for k in first.converters)
    for keys in ([], [("k1", bytes(32))]):
        assert data_converter(keys).payload_converter_class is SharedPydanticPayloadConverter


def test_payloads_are_the_sdk_pydantic_converters_byte_for_byte() -> None:
    inp = order_input(datetime(2026, 12, 6, 9, 30, tzinfo=UTC))
    values = [inp, Status.SCHEDULED, {"a": [1, None]}, None, b"raw"]
    shared = SharedPydanticPayloadConverter().to_payloads(values)
    assert shared == PydanticPayloadConverter().to_payloads(values)
    types: list[Any] = [type(inp), Status, dict[str, Any], type(None), bytes]
    decoded = SharedPydanticPayloadConverter().from_payloads(shared, types)
    assert decoded == PydanticPayloadConverter().from_payloads(shared, types)
    assert decoded[1:] == values[1:]


async def test_workflows_replayed_again_build_no_type_adapter_of_their_own() -> None:
    """Every type a workflow decodes is the same object in every sandbox, so the shared cache
    holds one adapter per type however many workflows ran: a type made anew in each sandbox
    would grow it with every workflow (and keep each one's sandbox alive)."""
    histories = [
        WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
        for path in sorted(HISTORIES.glob("*.json"))
        if path.stem != "order_encrypted_with_test_key"  # written with keys: its own test
    ]
    replayer = Replayer(
        workflows=list(WORKFLOWS), workflow_runner=WORKFLOW_RUNNER, data_converter=data_converter()
    )

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    async def replay_all() -> None:
        result = await replayer.replay_workflows(each(), raise_on_replay_failure=False)
        assert not result.replay_failures, result.replay_failures

    await replay_all()
    after_one = _adapters().cache_info()
    assert after_one.currsize > 0
    for _ in range(3):
        await replay_all()
    after_four = _adapters().cache_info()
    assert (after_four.currsize, after_four.misses) == (after_one.currsize, after_one.misses)
    assert after_four.hits > after_one.hits

"""The payload converter every workflow of a process shares its parts with
(``workflows.client.SharedPydanticPayloadConverter``): the SDK builds one per workflow, and
each used to build and keep pydantic ``TypeAdapter``s of its own. That replaying workflows again
builds no adapter: tests/histories/test_replay.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from temporalio.contrib.pydantic import PydanticPayloadConverter

from domain.orders import Status
from tests.helpers.workflows import order_input
from workflows.client import SharedPydanticPayloadConverter, data_converter


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

"""What Temporal stores of an order: with keys set, no name, address line or e-mail of the
customer anywhere in its history or description; with the keys, all of it reads again, also
after a key rotation."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.helpers.api import Api, order_json, started
from tests.helpers.keys import TEST_KEY_B, keys
from worker import WORKFLOW_RUNNER, WORKFLOWS
from workflows.client import data_converter
from workflows.codec import ENCODING, EncryptionCodec
from workflows.orders import OrderWorkflow

CUSTOMER = {
    "first_name": "Wilhelmine",
    "last_name": "Zauberstein",
    "address_line_1": "Kastanienallee 77",
    "address_line_2": "Hinterhaus links",
    "city": "Berlin",
    "post_code": "10435",
    "country": "DE",
    "email": "wilhelmine.zauberstein@example.org",
    "phone": "+49 30 5550199",
}
MOVED = {**CUSTOMER, "last_name": "Quellenbrink", "address_line_1": "Oderberger Strasse 9"}
PERSONAL = [
    "Wilhelmine",
    "Zauberstein",
    "Kastanienallee",
    "Hinterhaus",
    "wilhelmine.zauberstein@example.org",
    "5550199",
    "Quellenbrink",
    "Oderberger",
]


def payloads_in(message: Message) -> Iterator[Payload]:
    """Every payload a message holds, however deep; search attributes aside (not encoded)."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            items = [v for v in value.values() if isinstance(v, Message)]
        elif isinstance(value, Message):
            items = [value]
        else:
            items = list(value)  # a repeated field
        for item in items:
            if isinstance(item, SearchAttributes):
                continue
            if isinstance(item, Payload):
                yield item
            else:
                yield from payloads_in(item)


def _patch_marker(payload: Payload) -> bool:
    try:
        return set(json.loads(payload.data)) == {"id", "deprecated"}
    except ValueError:
        return False


def personal_data_in(blob: bytes) -> list[str]:
    return [word for word in PERSONAL if word.encode() in blob]


async def _an_order_with_its_changes(api: Api) -> str:
    key = Api.auth(await api.merchant())
    body = order_json(shipping_address=CUSTOMER)
    created = await api.client.post("/v1/orders", json=body, headers=key)
    assert created.status_code == 201, created.text
    order_id = str(created.json()["id"])
    await started(api.temporal.get_workflow_handle(order_id))
    moved = await api.client.put(f"/v1/orders/{order_id}/shipping-address", json=MOVED, headers=key)
    assert moved.status_code == 200, moved.text
    canceled = await api.client.post(
        f"/v1/orders/{order_id}/cancel",
        json={"reason": "Wilhelmine Zauberstein wrote to cancel"},
        headers=key,
    )
    assert canceled.status_code == 200, canceled.text
    await api.until(key, order_id, lambda o: o["status"] == "canceled")
    await api.temporal.get_workflow_handle(order_id).result()
    return order_id


async def test_no_personal_data_reaches_temporal_and_the_keys_read_it_back(
    api: Api, dev_env: WorkflowEnvironment
) -> None:
    assert api.settings.payload_keys is not None, "the suite runs with PRINTFLOW_PAYLOAD_KEYS"
    order_id = await _an_order_with_its_changes(api)

    # What anyone with access to Temporal (and no keys) gets: the raw history and description.
    raw = Client(
        dev_env.client.service_client,
        namespace=dev_env.client.namespace,
        data_converter=pydantic_data_converter,
    )
    handle = raw.get_workflow_handle(order_id)
    history = await handle.fetch_history()
    description = await handle.describe()
    blobs = [event.SerializeToString() for event in history.events]
    blobs.append(description.raw_description.SerializeToString())
    found = {word for blob in blobs for word in personal_data_in(blob)}
    assert not found, f"personal data in Temporal's copy of order {order_id}: {sorted(found)}"

    payloads = [p for event in history.events for p in payloads_in(event)]
    payloads += list(payloads_in(description.raw_description))
    assert len(payloads) > 10
    # The SDK writes its patch markers ({"id", "deprecated"}) itself, past the codec.
    plain = [p for p in payloads if p.metadata.get("encoding") != ENCODING and not _patch_marker(p)]
    assert not plain, f"payloads left unencrypted: {plain[:3]}"
    assert description.raw_description.execution_config.user_metadata.HasField("summary")

    # With the keys: the same bytes hold the customer, summaries included.
    codec = EncryptionCodec(keys(api.settings.payload_keys.get_secret_value()))
    decoded = b"".join(p.SerializeToString() for p in await codec.decode(payloads))
    assert {"Zauberstein", "Quellenbrink", "Kastanienallee"} <= set(personal_data_in(decoded))
    summary = await (await api.temporal.get_workflow_handle(order_id).describe()).static_summary()
    assert summary and summary.encode() not in b"".join(blobs)  # readable only with the keys
    state = await api.temporal.get_workflow_handle(order_id).query(OrderWorkflow.order)
    assert state.shipping_address.last_name == "Quellenbrink"

    # Rotation: a history written with key A replays with keys "B,A", not without A.
    await _replays(history, f"{TEST_KEY_B},{api.settings.payload_keys.get_secret_value()}")
    with pytest.raises(Exception, match="PayloadDecryptError"):
        await _replays(history, TEST_KEY_B)


async def _replays(history: WorkflowHistory, payload_keys: str) -> None:
    replayer = Replayer(
        workflows=list(WORKFLOWS),
        workflow_runner=WORKFLOW_RUNNER,
        data_converter=data_converter(keys(payload_keys)),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is not None:
        raise result.replay_failure

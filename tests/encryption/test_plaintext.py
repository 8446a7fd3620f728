"""Plaintext sent straight to Temporal: with payload keys set, a worker refuses any payload that
was not encrypted (workflows/codec.py). A signal or an Update someone sends from Temporal's
frontend without the keys changes nothing, and the order goes on: the next encrypted signal and
Update are applied as usual. The operators' ``/codec`` endpoint still shows plaintext as it is.

Time-skipping test server, the order workflow with recording activities, the suite's keys.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from contracts.orders import ProductionSignal
from domain.orders import CancelRequest, ProductionEventIn, Status
from tests.helpers.keys import keys
from tests.helpers.workflows import (
    Recorder,
    clear_of_a_cutoff,
    order_input,
    order_worker,
    start,
    state_of,
)
from workflows.client import data_converter
from workflows.codec import REFUSED_ENCODING, EncryptionCodec
from workflows.orders import OrderWorkflow


def _report(order_id: str) -> ProductionSignal:
    event = ProductionEventIn(
        event_id="evt-" + uuid.uuid4().hex,
        order_id=order_id,
        type="issue",
        issue={"kind": "other", "description": "forged"},  # type: ignore[arg-type]
    )
    return ProductionSignal(event=event, received_at=datetime(2026, 1, 1, tzinfo=UTC))


async def test_a_plaintext_signal_or_update_changes_nothing_and_the_order_goes_on(
    env: WorkflowEnvironment,
) -> None:
    assert isinstance(env.client.data_converter.payload_codec, EncryptionCodec), "suite keys"
    recorder = Recorder()
    async with order_worker(env.client, recorder) as task_queue:
        now = await clear_of_a_cutoff(env)
        handle = await start(env.client, task_queue, order_input(now))
        before = await state_of(handle)
        assert before.status is Status.SCHEDULED

        # Someone with access to the frontend, without the keys.
        plain = Client(
            env.client.service_client,
            namespace=env.client.namespace,
            data_converter=pydantic_data_converter,
        ).get_workflow_handle(handle.id)
        await plain.signal(OrderWorkflow.facility_event, _report(handle.id))
        with pytest.raises(WorkflowUpdateFailedError):
            await plain.execute_update(OrderWorkflow.cancel, CancelRequest(reason="forged"))
        after = await state_of(handle)
        assert after.model_dump() == before.model_dump(), "the order did not change"

        # The same signal and Update, encrypted: applied as ever.
        report = _report(handle.id)
        await handle.signal(OrderWorkflow.facility_event, report)
        reported = await state_of(handle)
        assert reported.seen_event_ids == [report.event.event_id]
        assert reported.version > before.version
        canceled = await handle.execute_update(OrderWorkflow.cancel, CancelRequest(reason="ok"))
        assert canceled.status is Status.CANCELED


async def test_decode_refuses_plaintext_unless_asked_to_show_it() -> None:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"reason": "forged"}')
    [refused] = await EncryptionCodec(keys()).decode([plain])
    assert refused.metadata["encoding"] == REFUSED_ENCODING
    assert refused.data == b"", "nothing of the plaintext is passed on"
    with pytest.raises(Exception, match="refused-plaintext"):
        await data_converter(keys()).decode([plain], [dict])
    shown = EncryptionCodec(keys(), accept_plaintext=True)
    assert await shown.decode([plain]) == [plain]
    # Encrypted payloads decode either way.
    [sealed] = await EncryptionCodec(keys()).encode([plain])
    assert await EncryptionCodec(keys()).decode([sealed]) == [plain]

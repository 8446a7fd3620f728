"""How the API and the worker reach Temporal: one client (over TLS or mutual TLS when
``PRINTFLOW_TEMPORAL_TLS_*`` is set), pydantic payloads (encrypted when ``PRINTFLOW_PAYLOAD_KEYS``
is set), and the client-side calls both make (search attributes, queuing webhooks, a
workflow's status)."""

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import IndexedValueType, WorkflowExecutionStatus
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
)
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from contracts.webhooks import (
    ENQUEUE_SIGNAL,
    EnqueueWebhooks,
    WebhookDeliveryInput,
    delivery_workflow_id,
)
from runtime.settings import Settings
from workflows import search_attributes
from workflows.codec import EncryptionCodec
from workflows.webhooks import WebhookDeliveryWorkflow

log = logging.getLogger("printflow.temporal")


_PYDANTIC_PARTS = tuple(PydanticPayloadConverter().converters.values())


class SharedPydanticPayloadConverter(PydanticPayloadConverter):
    """The SDK's pydantic payload converter, its parts built once per process.

    The SDK builds a payload converter for every workflow it runs: each new order, and each
    order replayed after its eviction from the cache. The pydantic one then starts with a cache
    of pydantic ``TypeAdapter``s of its own, so every workflow built one for each type it
    decodes (six over an order's life) and kept them for as long as it stayed cached.
    Its parts keep nothing of a workflow (the adapters depend on the type alone, and workflows
    decode passed-through types, the same objects in every sandbox), so every converter of the
    process shares one set: about 20 objects fewer per cached workflow for the garbage
    collector's full rounds (docs/performance.md, "What a full collection spends")."""

    def __init__(self) -> None:
        CompositePayloadConverter.__init__(self, *_PYDANTIC_PARTS)


_PLAIN = DataConverter(payload_converter_class=SharedPydanticPayloadConverter)


def data_converter(keys: Sequence[tuple[str, bytes]] = ()) -> DataConverter:
    """Pydantic payloads (``SharedPydanticPayloadConverter``); with ``keys``
    (``Settings.payload_key_list``) every payload, memo and summary is AES-GCM encrypted and
    failure messages and stack traces travel inside an encrypted payload too
    (workflows/codec.py). The one converter of API, worker and tests."""
    if not keys:
        return _PLAIN
    return dataclasses.replace(
        _PLAIN,
        payload_codec=EncryptionCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS to Temporal's frontend from ``PRINTFLOW_TEMPORAL_TLS_*``: False when none is set;
    with a client certificate and key, mutual TLS (docs/deploying.md "Temporal with mTLS")."""
    if not settings.temporal_tls_on():
        return False

    def read(path: Path | None) -> bytes | None:
        return path.read_bytes() if path is not None else None

    return TLSConfig(
        server_root_ca_cert=read(settings.temporal_tls_ca),
        domain=settings.temporal_tls_server_name,
        client_cert=read(settings.temporal_tls_cert),
        client_private_key=read(settings.temporal_tls_key),
    )


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """``runtime``: the process's SDK runtime (metrics, log forwarding); None for the default."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings.payload_key_list()),
        runtime=runtime,
        tls=tls_config(settings),
    )


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Registers the order search attributes that the namespace lacks (idempotent)."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        known = set(existing.custom_attributes) | set(existing.system_attributes)
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:  # the time-skipping test server
            raise
        known = set()
    missing = {
        key.name: _indexed_type(key) for key in search_attributes.ALL if key.name not in known
    }
    if not missing:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:  # another worker was quicker
            raise
    log.info("registered search attributes: %s", ", ".join(sorted(missing)))


def _indexed_type(key: SearchAttributeKey[Any]) -> IndexedValueType.ValueType:
    return IndexedValueType.ValueType(key.indexed_value_type)


async def enqueue_deliveries(
    client: Client,
    task_queue: str,
    order_id: str,
    event_ids: list[str],
    *,
    redeliver: bool = False,
) -> None:
    """Signal-with-start: queues the ids on the order's delivery workflow, starting it if idle."""
    await client.start_workflow(
        WebhookDeliveryWorkflow.run,
        WebhookDeliveryInput(order_id=order_id),
        id=delivery_workflow_id(order_id),
        task_queue=task_queue,
        start_signal=ENQUEUE_SIGNAL,
        start_signal_args=[EnqueueWebhooks(event_ids=event_ids, redeliver=redeliver)],
        static_summary=f"Webhooks of order {order_id}, delivered in order",
    )


async def workflow_status(
    client: Client, workflow_id: str
) -> WorkflowExecutionStatus.ValueType | None:
    """The status of the workflow's latest run; None when it never started. The raw
    description: nothing in it is decoded (no payload, no search attribute)."""
    try:
        described = await client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
            )
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return described.workflow_execution_info.status

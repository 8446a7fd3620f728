"""A Temporal namespace that has never seen printflow: the API alone gets orders going."""

from __future__ import annotations

import uuid
from pathlib import Path

from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.conftest import suite_converter
from tests.helpers.api import Api, order_json, running_api, started
from workflows import search_attributes


async def test_the_api_registers_the_search_attributes_it_starts_orders_with(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    namespace = "fresh-" + uuid.uuid4().hex[:8]
    await dev_env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    client = await Client.connect(
        dev_env.client.service_client.config.target_host,
        namespace=namespace,
        data_converter=suite_converter(),
    )
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    async with running_api(client, url, tmp_path, temporal_namespace=namespace) as api:
        key = Api.auth(await api.merchant())
        created = await api.client.post("/v1/orders", json=order_json("FRESH-1"), headers=key)
        assert created.status_code == 201, created.text
        # The answer does not wait for Temporal: the workflow starts right after it.
        handle = client.get_workflow_handle(created.json()["id"])
        described = await started(handle)
        status = described.typed_search_attributes.get(search_attributes.ORDER_STATUS)
        assert status == "scheduled"

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.conftest import TEMPORAL_TEST_SERVER
from workflows.client import ensure_search_attributes


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server per test: time only moves forward, each test moves it its way."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=TEMPORAL_TEST_SERVER, data_converter=pydantic_data_converter
    )
    await ensure_search_attributes(env.client, "default")
    try:
        yield env
    finally:
        await env.shutdown()

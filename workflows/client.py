"""How the API and the worker reach Temporal: one client, pydantic payloads."""

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from settings import Settings


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """``runtime``: the process's SDK runtime (metrics, log forwarding); None for the default."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )

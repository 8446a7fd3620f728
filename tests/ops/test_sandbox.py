"""The worker's workflow sandbox (``worker.SandboxRunner``): the SDK's, with each of the code
strings it crosses into the sandbox with compiled once instead of at every activation and every
payload encoded or decoded."""

from __future__ import annotations

import inspect
from datetime import timedelta

from temporalio.testing import WorkflowEnvironment
from temporalio.worker.workflow_sandbox import _runner as sandbox_runner

from domain.orders import Status
from tests.helpers.workflows import (
    Recorder,
    order_input,
    order_worker,
    sleep_until,
    state_of,
    until_status,
)
from worker import WORKFLOW_RUNNER, SandboxRunner, _compiled
from workflows.orders import OrderWorkflow


def test_the_sdk_instance_still_has_the_shape_the_runner_relies_on() -> None:
    # An SDK upgrade that renames or reshapes these fails here, not in a worker.
    parameters = inspect.signature(sandbox_runner._Instance._run_code).parameters
    assert list(parameters) == ["self", "code", "extra_globals"]
    assert parameters["extra_globals"].kind is inspect.Parameter.VAR_KEYWORD
    assert list(inspect.signature(sandbox_runner._Instance.__init__).parameters) == [
        "self",
        "instance_details",
        "runner_class",
        "restrictions",
    ]


async def test_an_order_to_production_compiles_the_sandbox_code_a_few_times(
    env: WorkflowEnvironment,
) -> None:
    _compiled.cache_clear()
    async with order_worker(env.client, Recorder()) as task_queue:
        inp = order_input(await env.get_current_time())
        handle = await env.client.start_workflow(
            OrderWorkflow.run, inp, id=inp.order_id, task_queue=task_queue
        )
        state = await state_of(handle)
        assert state.cutoff_at is not None
        await sleep_until(env, state.cutoff_at + timedelta(seconds=5))
        await until_status(handle, Status.IN_PRODUCTION)
    compiled = _compiled.cache_info()
    # The SDK's strings: importing the workflow class, creating the instance, activating it,
    # and the payloads' serialization context; every other crossing reuses them.
    assert compiled.misses <= 6, compiled
    assert compiled.hits >= 5 * compiled.misses, compiled
    assert isinstance(WORKFLOW_RUNNER, SandboxRunner)

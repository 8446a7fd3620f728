"""The worker's workflow sandbox (``worker.SandboxRunner``): the SDK's, with each of the code
strings it crosses into the sandbox with compiled once instead of at every activation, no
crossing for each payload's contexts, and each workflow module's code read once instead of for
every workflow the sandbox builds."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from temporalio import workflow
from temporalio.converter import ActivitySerializationContext, WorkflowSerializationContext
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
from worker import WORKFLOW_RUNNER, WORKFLOWS, SandboxRunner, _compiled
from workflows.client import data_converter
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
    for crossing in ("get_serialization_context", "get_external_store_context"):
        method = getattr(sandbox_runner._Instance, crossing)
        assert list(inspect.signature(method).parameters) == ["self", "command_info"]


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_payloads_are_the_same_whatever_their_context(encrypted: bool) -> None:
    """What lets the sandbox skip asking for each payload's contexts: with a converter that
    takes one (per-workflow keys, say), ``worker._Instance`` must ask again."""
    converter = data_converter([("k1", bytes(32))] if encrypted else [])
    contexts = [
        WorkflowSerializationContext(namespace="default", workflow_id="ord_1"),
        ActivitySerializationContext(
            namespace="default",
            activity_id="1",
            activity_type="submit_print_job",
            activity_task_queue="printflow",
            workflow_id="ord_1",
            workflow_type="OrderWorkflow",
            is_local=False,
        ),
    ]
    assert all(converter.with_context(context) is converter for context in contexts)
    assert converter.external_storage is None


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
    # The SDK's strings: importing the workflow class, creating the instance, activating it;
    # every other activation reuses them, and no payload crosses in for its contexts.
    assert compiled.misses == 3, compiled
    assert compiled.hits >= 2 * compiled.misses, compiled
    assert isinstance(WORKFLOW_RUNNER, SandboxRunner)


@contextmanager
def _modules_run() -> Iterator[list[str]]:
    """The files whose module code runs meanwhile, in this thread."""
    ran: list[str] = []

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_name == "<module>":
            ran.append(frame.f_code.co_filename)

    sys.setprofile(profile)
    try:
        yield ran
    finally:
        sys.setprofile(None)


def _ours(files: list[str]) -> set[str]:
    root = Path(__file__).resolve().parents[2]
    return {str(Path(f).relative_to(root)) for f in files if Path(f).is_relative_to(root)}


@pytest.mark.parametrize("cls", WORKFLOWS, ids=lambda cls: cls.__name__)
async def test_a_workflow_built_in_the_sandbox_runs_only_its_own_module_again(cls: type) -> None:
    """What its module imports for workflows is passed through, shared with every other
    workflow; only the module itself (and its package's, empty) runs for each."""
    defn = workflow._Definition.must_from_class(cls)
    WORKFLOW_RUNNER.prepare_workflow(defn)
    with _modules_run() as ran:
        WORKFLOW_RUNNER.prepare_workflow(defn)  # builds one, as for a new run or a replay
    module = cls.__module__.replace(".", "/") + ".py"
    assert _ours(ran) == {"workflows/__init__.py", module}


async def test_the_workflow_modules_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    defn = workflow._Definition.must_from_class(OrderWorkflow)
    WORKFLOW_RUNNER.prepare_workflow(defn)
    read: list[str] = []
    get_data = SourceFileLoader.get_data

    def counted(loader: SourceFileLoader, path: str) -> bytes:
        read.append(path)
        return get_data(loader, path)

    monkeypatch.setattr(SourceFileLoader, "get_data", counted)
    with _modules_run() as ran:
        WORKFLOW_RUNNER.prepare_workflow(defn)
    assert "workflows/orders.py" in _ours(ran), "the module ran"
    assert not [p for p in read if "workflows" in Path(p).parts], read

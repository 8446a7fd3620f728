"""The relay from committed support cases to running workflows (``api.services.starts``): a case
is answered 201 without waiting for Temporal, and a message, assignment, resolve or close made
before its workflow runs goes as update-with-start."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import WithStartWorkflowOperation

from api.services import starts
from api.services.starts import Options, Relay, WorkflowStarter, workflow_options
from contracts.cases import CaseInput
from db.models import SupportCase, SupportCaseStart
from domain.cases import CaseState
from runtime.settings import Settings
from workflows.cases import SupportCaseWorkflow, case_search_attributes


def _case_options(settings: Settings, case: SupportCase, start: SupportCaseStart) -> Options:
    inp = CaseInput.model_validate(case.workflow_input)
    state = CaseState.model_validate(case.state)
    return inp, workflow_options(
        settings, case.id, case_search_attributes(state), static_summary=start.static_summary
    )


CASES = Relay(
    "case",
    SupportCaseStart,
    SupportCaseStart.case_id,
    SupportCase,
    SupportCaseWorkflow.run,
    _case_options,
)


async def start_operation(
    session: AsyncSession, settings: Settings, case: SupportCase
) -> WithStartWorkflowOperation[Any, Any] | None:
    """The start to send with an Update, while the case's workflow may not be running yet."""
    return await starts.start_operation(session, settings, case, CASES)


class CaseStarter(WorkflowStarter):
    relay = CASES

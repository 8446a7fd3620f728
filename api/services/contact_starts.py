"""The relay from committed customer contacts to running workflows (``api.services.starts``): a
contact is answered 201 without waiting for Temporal, and a message added before its workflow
runs goes as update-with-start."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import WithStartWorkflowOperation

from api.services import starts
from api.services.starts import Options, Relay, WorkflowStarter, workflow_options
from contracts.contacts import ContactInput
from db.models import CustomerContact, CustomerContactStart
from domain.contacts import ContactState
from runtime.settings import Settings
from workflows.contacts import CustomerContactWorkflow, contact_search_attributes


def _contact_options(
    settings: Settings, contact: CustomerContact, start: CustomerContactStart
) -> Options:
    inp = ContactInput.model_validate(contact.workflow_input)
    state = ContactState.model_validate(contact.state)
    return inp, workflow_options(
        settings,
        contact.id,
        contact_search_attributes(state),
        static_summary=start.static_summary,
    )


CONTACTS = Relay(
    "contact",
    CustomerContactStart,
    CustomerContactStart.contact_id,
    CustomerContact,
    CustomerContactWorkflow.run,
    _contact_options,
)


async def start_operation(
    session: AsyncSession, settings: Settings, contact: CustomerContact
) -> WithStartWorkflowOperation[Any, Any] | None:
    """The start to send with an Update, while the contact's workflow may not be running yet."""
    return await starts.start_operation(session, settings, contact, CONTACTS)


class ContactStarter(WorkflowStarter):
    relay = CONTACTS

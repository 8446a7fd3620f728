"""FastAPI dependencies: the database session, the Temporal client, who is calling (a merchant,
a facility, an operator, an agent of the support team)."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy import or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api.errors import Forbidden, Unauthorized
from api.services import merchants
from api.services.case_starts import CaseStarter
from api.services.contact_starts import ContactStarter
from api.services.credentials import hash_credential
from api.services.starts import OrderStarter
from db.models import Agent, Merchant
from domain.facilities import Facilities, Facility
from domain.support import SupportConfig
from runtime.settings import Settings


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


def _temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _facilities(request: Request) -> Facilities:
    facilities: Facilities = request.app.state.facilities
    return facilities


def _starter(request: Request) -> OrderStarter:
    starter: OrderStarter = request.app.state.starter
    return starter


def _idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            pattern=r"^[\x21-\x7e]+$",
            description="makes a retry of this write return the first outcome and apply once",
        ),
    ] = None,
) -> str | None:
    return idempotency_key


SessionDep = Annotated[AsyncSession, Depends(_session)]
StarterDep = Annotated[OrderStarter, Depends(_starter)]
IdempotencyKeyDep = Annotated[str | None, Depends(_idempotency_key)]
TemporalDep = Annotated[Client, Depends(_temporal)]
SettingsDep = Annotated[Settings, Depends(_settings)]
FacilitiesDep = Annotated[Facilities, Depends(_facilities)]


async def _merchant(
    request: Request, session: SessionDep, x_api_key: Annotated[str | None, Header()] = None
) -> Merchant:
    if not x_api_key:
        raise Unauthorized("send your API key in the X-API-Key header")
    digest = hash_credential(x_api_key)
    merchant = (
        await session.exec(
            select(Merchant).where(
                or_(
                    col(Merchant.api_key_hash) == digest,
                    col(Merchant.previous_api_key_hash) == digest,
                )
            )
        )
    ).first()
    if merchant is None or not merchants.accepts_key(merchant, digest):
        raise Unauthorized("unknown API key")
    # For the failed-request log (api.request_ids): whose request this was.
    request.state.merchant_id = merchant.id
    return merchant


MerchantDep = Annotated[Merchant, Depends(_merchant)]


def _admin(settings: SettingsDep, x_admin_token: Annotated[str | None, Header()] = None) -> None:
    expected = settings.admin_token
    if expected is None:
        raise Forbidden(
            "the admin API is disabled: no PRINTFLOW_ADMIN_TOKEN is set", code="admin_disabled"
        )
    if not x_admin_token or not hmac.compare_digest(
        x_admin_token.encode(), expected.get_secret_value().encode()
    ):
        raise Forbidden("wrong or missing X-Admin-Token", code="forbidden")


AdminDep = Depends(_admin)


def _facility(
    facilities: FacilitiesDep, authorization: Annotated[str | None, Header()] = None
) -> Facility:
    """The facility whose token the request carries; runs before the body is validated."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the facility's API token as 'Authorization: Bearer <token>'")
    return _match_token(facilities, token.strip())


def _match_token(facilities: Facilities, token: str) -> Facility:
    found: Facility | None = None
    given = token.encode()
    # Compare against every facility, without stopping early, so timing tells nothing.
    for facility in facilities:
        if hmac.compare_digest(given, facility.api_token.get_secret_value().encode()):
            found = facility
    if found is None:
        raise Unauthorized("unknown facility token")
    return found


FacilityDep = Annotated[Facility, Depends(_facility)]


async def _agent(
    session: SessionDep, x_agent_token: Annotated[str | None, Header()] = None
) -> Agent:
    """The active agent whose token the request carries (``X-Agent-Token``), else 401."""
    if not x_agent_token:
        raise Unauthorized("send your agent token in the X-Agent-Token header")
    agent = (
        await session.exec(select(Agent).where(Agent.token_hash == hash_credential(x_agent_token)))
    ).first()
    if agent is None or not agent.active:
        raise Unauthorized("unknown agent token")
    return agent


AgentDep = Annotated[Agent, Depends(_agent)]


def _case_starter(request: Request) -> CaseStarter:
    starter: CaseStarter = request.app.state.case_starter
    return starter


def _support(request: Request) -> SupportConfig:
    support: SupportConfig = request.app.state.support
    return support


CaseStarterDep = Annotated[CaseStarter, Depends(_case_starter)]
SupportDep = Annotated[SupportConfig, Depends(_support)]


def _contact_starter(request: Request) -> ContactStarter:
    starter: ContactStarter = request.app.state.contact_starter
    return starter


ContactStarterDep = Annotated[ContactStarter, Depends(_contact_starter)]

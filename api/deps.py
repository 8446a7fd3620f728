"""FastAPI dependencies: the database session, the Temporal client, who is calling (a merchant,
a facility, an operator, an agent of the support team), and ``caller``: the same checks outside
a route, for the idempotency middleware (``api.idempotency``), which claims a key only for a
caller whose credential is valid.

Every dependency is ``async def``, even a plain lookup: FastAPI runs a ``def`` on a thread of its
pool, a hand-off there and back per request (tests/ops/test_async_routes.py)."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy import bindparam, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.datastructures import Headers
from temporalio.client import Client

from api.errors import Forbidden, Unauthorized
from api.perimeter import failed_authentication
from api.relay import CaseStarter, ContactStarter, OrderStarter
from api.services import merchants, personalization
from api.services.credentials import hash_credential
from db.models import Agent, Merchant
from domain.facilities import Facilities, Facility
from domain.support import SupportConfig
from runtime.settings import Settings


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


async def _temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _facilities(request: Request) -> Facilities:
    facilities: Facilities = request.app.state.facilities
    return facilities


async def _starter(request: Request) -> OrderStarter:
    starter: OrderStarter = request.app.state.starter
    return starter


async def _idempotency_key(
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
    merchant = await _merchant_of(session, x_api_key)
    if merchant is None:
        raise Unauthorized("unknown API key")
    # For the failed-request log (api.request_ids): whose request this was.
    request.state.merchant_id = merchant.id
    return merchant


# Built once: SQLAlchemy would otherwise build the statement again for every request.
_BY_KEY = select(Merchant).where(
    or_(
        col(Merchant.api_key_hash) == bindparam("digest"),
        col(Merchant.previous_api_key_hash) == bindparam("digest"),
    )
)


async def _merchant_of(session: AsyncSession, api_key: str) -> Merchant | None:
    digest = hash_credential(api_key)
    merchant = (await session.exec(_BY_KEY, params={"digest": digest})).first()
    return merchant if merchant is not None and merchants.accepts_key(merchant, digest) else None


MerchantDep = Annotated[Merchant, Depends(_merchant)]


async def _admin(
    request: Request, settings: SettingsDep, x_admin_token: Annotated[str | None, Header()] = None
) -> None:
    expected = settings.admin_token
    if expected is None:
        raise Forbidden(
            "the admin API is disabled: no PRINTFLOW_ADMIN_TOKEN is set", code="admin_disabled"
        )
    if not _admin_token_ok(settings, x_admin_token):
        failed_authentication(request)  # a 403, counted like a 401 (api.perimeter)
        raise Forbidden("wrong or missing X-Admin-Token", code="forbidden")


def _admin_token_ok(settings: Settings, given: str | None) -> bool:
    expected = settings.admin_token
    return (
        expected is not None
        and bool(given)
        and hmac.compare_digest((given or "").encode(), expected.get_secret_value().encode())
    )


AdminDep = Depends(_admin)


async def _facility(
    facilities: FacilitiesDep, authorization: Annotated[str | None, Header()] = None
) -> Facility:
    """The facility whose token the request carries; runs before the body is validated."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the facility's API token as 'Authorization: Bearer <token>'")
    return _match_token(facilities, token.strip())


def _match_token(facilities: Facilities, token: str) -> Facility:
    found = _facility_of(facilities, token)
    if found is None:
        raise Unauthorized("unknown facility token")
    return found


def _facility_of(facilities: Facilities, token: str) -> Facility | None:
    found: Facility | None = None
    given = token.encode()
    # Compare against every facility, without stopping early, so timing tells nothing.
    for facility in facilities:
        if hmac.compare_digest(given, facility.api_token.get_secret_value().encode()):
            found = facility
    return found


FacilityDep = Annotated[Facility, Depends(_facility)]


async def _agent(
    session: SessionDep, x_agent_token: Annotated[str | None, Header()] = None
) -> Agent:
    """The active agent whose token the request carries (``X-Agent-Token``), else 401."""
    if not x_agent_token:
        raise Unauthorized("send your agent token in the X-Agent-Token header")
    agent = await _active_agent(session, x_agent_token)
    if agent is None:
        raise Unauthorized("unknown agent token")
    return agent


async def _active_agent(session: AsyncSession, token: str) -> Agent | None:
    found = await session.exec(select(Agent).where(Agent.token_hash == hash_credential(token)))
    agent = found.first()
    return agent if agent is not None and agent.active else None


AgentDep = Annotated[Agent, Depends(_agent)]


async def _case_starter(request: Request) -> CaseStarter:
    starter: CaseStarter = request.app.state.case_starter
    return starter


async def _support(request: Request) -> SupportConfig:
    support: SupportConfig = request.app.state.support
    return support


CaseStarterDep = Annotated[CaseStarter, Depends(_case_starter)]
SupportDep = Annotated[SupportConfig, Depends(_support)]


async def _contact_starter(request: Request) -> ContactStarter:
    starter: ContactStarter = request.app.state.contact_starter
    return starter


ContactStarterDep = Annotated[ContactStarter, Depends(_contact_starter)]


# ---------------------------------------------------------------------------- outside a route


async def _idempotency_ref(request: Request) -> str | None:
    """The request's ``Idempotency-Key`` hashed with its caller's credential (set by
    ``api.idempotency``), for the rows a write creates: a retry finds what the first run made."""
    ref: str | None = getattr(request.state, "idempotency_ref", None)
    return ref


IdempotencyRefDep = Annotated[str | None, Depends(_idempotency_ref)]


async def caller(state: Any, headers: Headers, path: str) -> bytes | None:
    """The credential that authenticates a request to ``path`` as its route would check it
    (``header-name:value``, or ``path:`` and the path when the path's token is the credential),
    or None when it carries no valid one. The admin API wants ``X-Admin-Token``, the agents'
    ``X-Agent-Token``, the facilities' their bearer token, a personalization link its token in
    the path, and the rest a merchant's ``X-API-Key``."""
    settings: Settings = state.settings
    if path.startswith("/v1/admin/"):
        token = headers.get("x-admin-token")
        if token is None or not _admin_token_ok(settings, token):
            return None
        return b"x-admin-token:" + token.encode("latin-1")
    if path.startswith("/v1/production/"):
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or _facility_of(state.facilities, token.strip()) is None:
            return None
        return b"authorization:" + headers["authorization"].encode("latin-1")
    if path.startswith("/v1/personalization/"):
        token = path.removeprefix("/v1/personalization/")
        async with state.sessions() as session:
            known = await personalization.known_token(session, token)
        return b"path:" + path.encode() if known else None
    header = "x-agent-token" if path.startswith("/v1/agent/") else "x-api-key"
    value = headers.get(header)
    if not value:
        return None
    async with state.sessions() as session:
        if header == "x-agent-token":
            valid = await _active_agent(session, value) is not None
        else:
            valid = await _merchant_of(session, value) is not None
    return header.encode() + b":" + value.encode("latin-1") if valid else None

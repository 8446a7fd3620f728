"""Support plans on merchants, the support team's agents, and what a merchant's plan includes.

Against the running API (real Temporal dev server, SQLite and PostgreSQL): operators create and
change merchants and agents with the admin token; merchants read their plan with their key;
agents prove who they are with their token.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import func, select

from db.models import Agent, IdempotentRequest, Merchant
from tests.helpers.api import ADMIN_TOKEN, Api

ADMIN = {"X-Admin-Token": ADMIN_TOKEN}
FREE_INCLUDES = {"ticket": True, "chat": True, "priority": False, "callback": False, "csm": False}


def _merchant_body(**fields: Any) -> dict[str, Any]:
    return {"name": "Mug Shop", "support_email": "help@mugs.example.com", **fields}


async def _create(api: Api, **fields: Any) -> dict[str, Any]:
    response = await api.client.post(
        "/v1/admin/merchants", json=_merchant_body(**fields), headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _agent(api: Api, role: str = "csm", name: str = "Cora Success") -> dict[str, Any]:
    response = await api.client.post(
        "/v1/admin/agents",
        json={"name": name, "email": f"{name.split()[0].lower()}@printflow.example", "role": role},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _plan(api: Api, merchant: dict[str, Any]) -> dict[str, Any]:
    response = await api.client.get("/v1/support/plan", headers=Api.auth(merchant))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _row(api: Api, merchant_id: str) -> Merchant:
    async with api.app.state.sessions() as session:
        row = await session.get(Merchant, merchant_id)
    assert row is not None
    return row


async def _merchant_count(api: Api) -> int:
    async with api.app.state.sessions() as session:
        return int((await session.exec(select(func.count()).select_from(Merchant))).one())


async def test_a_new_merchant_is_on_the_free_plan_in_utc_unless_told(api: Api) -> None:
    merchant = await _create(api)
    assert (merchant["plan"], merchant["timezone"], merchant["country"]) == ("free", "UTC", None)
    assert merchant["csm_agent_id"] is None
    assert await _plan(api, merchant) == {"plan": "free", "includes": FREE_INCLUDES}

    placed = await _create(api, plan="growth", timezone="Europe/Oslo", country="no")
    assert (placed["plan"], placed["timezone"], placed["country"]) == (
        "growth",
        "Europe/Oslo",
        "NO",
    )
    row = await _row(api, placed["id"])
    assert (row.plan, row.timezone, row.country) == ("growth", "Europe/Oslo", "NO")
    assert await _plan(api, placed) == {
        "plan": "growth",
        "includes": FREE_INCLUDES | {"priority": True},
    }


@pytest.mark.parametrize(
    ("legacy", "plan"),
    [
        ("essential", "free"),
        ("small_shop", "lite"),
        ("large_shop", "growth"),
        ("business", "premium"),
    ],
)
async def test_legacy_plan_names_are_stored_and_answered_as_the_new_ones(
    api: Api, legacy: str, plan: str
) -> None:
    merchant = await _create(api, plan=legacy)
    assert merchant["plan"] == plan
    assert (await _row(api, merchant["id"])).plan == plan
    assert (await _plan(api, merchant))["plan"] == plan


async def test_premium_shows_its_csm_once_one_is_assigned(api: Api) -> None:
    merchant = await _create(api, plan="business")
    assert await _plan(api, merchant) == {
        "plan": "premium",
        "includes": {"ticket": True, "chat": True, "priority": True, "callback": True, "csm": True},
    }, "no csm key until one is assigned"

    csm = await _agent(api, role="csm", name="Cora Success")
    patched = await api.client.patch(
        f"/v1/admin/merchants/{merchant['id']}", json={"csm_agent_id": csm["id"]}, headers=ADMIN
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["csm_agent_id"] == csm["id"]
    assert "api_key" not in patched.json() and "webhook_secret" not in patched.json()
    shown = await _plan(api, merchant)
    assert shown["csm"] == {"name": "Cora Success", "email": "cora@printflow.example"}

    # A plan without a CSM does not show the one still on file.
    down = await api.client.patch(
        f"/v1/admin/merchants/{merchant['id']}", json={"plan": "large_shop"}, headers=ADMIN
    )
    assert down.status_code == 200, down.text
    assert down.json()["plan"] == "growth" and down.json()["csm_agent_id"] == csm["id"]
    assert "csm" not in await _plan(api, merchant)

    # Back on premium, and then the CSM leaves the team: nobody is shown.
    up = await api.client.patch(
        f"/v1/admin/merchants/{merchant['id']}", json={"plan": "premium"}, headers=ADMIN
    )
    assert up.status_code == 200 and "csm" in await _plan(api, merchant)
    gone = await api.client.post(f"/v1/admin/agents/{csm['id']}/deactivate", headers=ADMIN)
    assert gone.status_code == 200 and gone.json()["active"] is False
    assert "csm" not in await _plan(api, merchant)

    cleared = await api.client.patch(
        f"/v1/admin/merchants/{merchant['id']}", json={"csm_agent_id": None}, headers=ADMIN
    )
    assert cleared.status_code == 200 and cleared.json()["csm_agent_id"] is None


async def test_patch_changes_only_what_it_sends(api: Api) -> None:
    merchant = await _create(api, plan="lite", timezone="Europe/Berlin", country="DE")
    patched = await api.client.patch(
        f"/v1/admin/merchants/{merchant['id']}",
        json={"timezone": "America/New_York"},
        headers=ADMIN,
    )
    assert patched.status_code == 200, patched.text
    assert {k: patched.json()[k] for k in ("plan", "timezone", "country")} == {
        "plan": "lite",
        "timezone": "America/New_York",
        "country": "DE",
    }
    cleared = await api.client.patch(
        f"/v1/admin/merchants/{merchant['id']}", json={"country": None}, headers=ADMIN
    )
    assert cleared.status_code == 200 and cleared.json()["country"] is None
    row = await _row(api, merchant["id"])
    assert (row.plan, row.timezone, row.country) == ("lite", "America/New_York", None)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("plan", "gold"),
        ("plan", "premium\n"),
        ("plan", 3),
        ("timezone", "Mars/Olympus_Mons"),
        ("timezone", "Europe/Oslo\x00"),
        ("timezone", "../../etc/passwd"),
        ("timezone", "localtime"),
        ("timezone", ""),
        ("country", "XX"),
        ("country", "Germany"),
        ("country", "D\tE"),
        ("name", "Mug\rShop"),
    ],
)
async def test_hostile_input_on_create_is_a_422_naming_the_field_and_creates_nothing(
    api: Api, field: str, value: object
) -> None:
    before = await _merchant_count(api)
    response = await api.client.post(
        "/v1/admin/merchants", json=_merchant_body(**{field: value}), headers=ADMIN
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == [field], error
    assert error["message"].startswith(f"{field}: ")
    assert await _merchant_count(api) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"plan": "platinum"}, "plan"),
        ({"plan": None}, "plan"),
        ({"timezone": "Europe/Atlantis", "plan": "premium"}, "timezone"),
        ({"timezone": None}, "timezone"),
        ({"country": "zz", "plan": "premium"}, "country"),
        ({"csm_agent_id": "agt_nobody", "plan": "premium"}, "csm_agent_id"),
        ({"csm_agent_id": "agt_\x1b[31m"}, "csm_agent_id"),
        ({"billing": "monthly"}, "billing"),
    ],
)
async def test_hostile_input_on_patch_is_a_422_naming_the_field_and_changes_nothing(
    api: Api, body: dict[str, Any], field: str
) -> None:
    merchant = await _create(api, plan="lite", timezone="Europe/Berlin", country="DE")
    before = (await _row(api, merchant["id"])).model_dump()
    response = await api.client.patch(
        f"/v1/admin/merchants/{merchant['id']}", json=body, headers=ADMIN
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [d["field"] for d in error["details"]], error
    assert (await _row(api, merchant["id"])).model_dump() == before


async def test_only_an_active_csm_can_be_a_merchants_csm(api: Api) -> None:
    merchant = await _create(api, plan="premium")
    agent = await _agent(api, role="agent", name="Andy Agent")
    csm = await _agent(api, role="csm", name="Cora Success")
    await api.client.post(f"/v1/admin/agents/{csm['id']}/deactivate", headers=ADMIN)
    for candidate in (agent["id"], csm["id"]):
        response = await api.client.patch(
            f"/v1/admin/merchants/{merchant['id']}",
            json={"csm_agent_id": candidate},
            headers=ADMIN,
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["field"] == "csm_agent_id"
    assert (await _row(api, merchant["id"])).csm_agent_id is None


async def test_patching_needs_the_admin_token_and_an_existing_merchant(api: Api) -> None:
    merchant = await _create(api)
    path = f"/v1/admin/merchants/{merchant['id']}"
    refused = await api.client.patch(path, json={"plan": "premium"}, headers=Api.auth(merchant))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    wrong = await api.client.patch(path, json={"plan": "premium"}, headers={"X-Admin-Token": "x"})
    assert wrong.status_code == 403
    assert (await _row(api, merchant["id"])).plan == "free"
    unknown = await api.client.patch(
        "/v1/admin/merchants/mer_nope", json={"plan": "premium"}, headers=ADMIN
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


async def test_the_plan_needs_a_merchants_key(api: Api) -> None:
    missing = await api.client.get("/v1/support/plan")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    unknown = await api.client.get("/v1/support/plan", headers={"X-API-Key": "pf_nope"})
    assert unknown.status_code == 401


async def test_an_agents_token_is_shown_once_kept_hashed_and_identifies_them(api: Api) -> None:
    created = await _agent(api, role="agent", name="Andy Agent")
    token = created["token"]
    assert created["id"].startswith("agt_") and token.startswith("pfagt_")
    assert len(token) >= 6 + 43, "256 random bits"
    assert token.startswith(created["token_prefix"]) and len(created["token_prefix"]) < 16
    assert (created["role"], created["active"]) == ("agent", True)
    async with api.app.state.sessions() as session:
        row = await session.get(Agent, created["id"])
    assert row is not None and token not in row.model_dump_json()

    me = await api.client.get("/v1/agent/me", headers={"X-Agent-Token": token})
    assert me.status_code == 200, me.text
    assert me.json()["id"] == created["id"] and "token" not in me.json()

    listed = await api.client.get("/v1/admin/agents", headers=ADMIN)
    assert listed.status_code == 200, listed.text
    assert [a["id"] for a in listed.json()["data"]] == [created["id"]]
    assert token not in listed.text

    for headers in ({}, {"X-Agent-Token": token[:-1]}, {"X-API-Key": token}):
        refused = await api.client.get("/v1/agent/me", headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "unauthorized"

    off = await api.client.post(f"/v1/admin/agents/{created['id']}/deactivate", headers=ADMIN)
    assert off.status_code == 200, off.text
    after = await api.client.get("/v1/agent/me", headers={"X-Agent-Token": token})
    assert after.status_code == 401
    unknown = await api.client.post("/v1/admin/agents/agt_nope/deactivate", headers=ADMIN)
    assert unknown.status_code == 404


async def test_agents_are_the_operators_business(api: Api) -> None:
    body = {"name": "Eve", "email": "eve@example.com", "role": "csm"}
    assert (await api.client.post("/v1/admin/agents", json=body)).status_code == 403
    assert (await api.client.get("/v1/admin/agents")).status_code == 403
    bad_role = await api.client.post(
        "/v1/admin/agents", json=body | {"role": "admin"}, headers=ADMIN
    )
    assert bad_role.status_code == 422
    assert bad_role.json()["error"]["details"][0]["field"] == "role"
    bad_name = await api.client.post(
        "/v1/admin/agents", json=body | {"name": "Eve\nBcc: x"}, headers=ADMIN
    )
    assert bad_name.status_code == 422
    assert bad_name.json()["error"]["details"][0]["field"] == "name"
    async with api.app.state.sessions() as session:
        assert (await session.exec(select(func.count()).select_from(Agent))).one() == 0


async def test_a_replayed_agent_creation_never_shows_or_keeps_the_token(api: Api) -> None:
    headers = ADMIN | {"Idempotency-Key": "hire-cora"}
    body = {"name": "Cora", "email": "cora@printflow.example", "role": "csm"}
    first = await api.client.post("/v1/admin/agents", json=body, headers=headers)
    again = await api.client.post("/v1/admin/agents", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201), (first.text, again.text)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["token"] not in again.text and "shown once" in again.json()["token"]
    async with api.app.state.sessions() as session:
        stored = (await session.exec(select(IdempotentRequest))).all()
        agents = (await session.exec(select(Agent))).all()
    assert stored and all(first.json()["token"] not in (r.response_body or "") for r in stored)
    assert len(agents) == 1

"""``/support``: the support team's console in the browser (queue, case page, reply).

Plain HTML forms, no JavaScript, nothing loaded from elsewhere; the same headers and CSP as the
customer's pages. An agent signs in with their agent token and gets a signed session cookie
(``api.services.console``); every form carries a CSRF token tied to that session. Changes go
through the same services (and so the same workflow Updates) as ``/v1/agent/cases``, then
redirect back to the page (POST/redirect/GET). A refusal is the page again, saying what
happened, with the status code the API would answer.

Every form of a case page also carries a nonce, new with each page shown: it is the Update's
id (as an ``Idempotency-Key`` is on the API), so a form sent twice (a double click, a resend
after "the change may not have been made") changes the case once. A page shown again after a
failure keeps the nonce of the form that failed.
"""

from __future__ import annotations

import logging
import re
import secrets
from datetime import tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.datastructures import FormData

from api.deps import SessionDep, SettingsDep, SupportDep, TemporalDep
from api.errors import ApiError
from api.pages import html
from api.pages.html import render, secure, set_cookie, when
from api.services import cases, console
from api.services.sessions import Session, Signer
from db.engine import utcnow
from db.models import Agent
from domain.cases import AgentMessageCreate, Queue, SlaState
from runtime.settings import Settings

log = logging.getLogger("printflow.console")

router = APIRouter(prefix="/support", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")

COOKIE = "pf_support"
LOGIN_COOKIE = "pf_support_login"
LOGIN_PATH = "/support/login"
# Where a sign-in may send the agent on: console pages only, never another site.
_NEXT = re.compile(r"^/support(/cases/[A-Za-z0-9_-]{1,60})?$")
# A form's nonce (secrets.token_urlsafe(16) makes 22 characters).
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")

SLA_WORDS = {
    SlaState.ON_TRACK: "On track",
    SlaState.AT_RISK: "At risk",
    SlaState.BREACHED: "Breached",
    SlaState.MET: "Met",
    SlaState.PAUSED: "Paused",
}
QUEUES = {"": "All queues", "support": "Support", "csm": "Customer success", "mine": "Mine"}
DONE = {
    "replied": "Your reply was sent to the merchant.",
    "assigned": "The case is assigned to you.",
    "resolved": "The case is resolved.",
}


def signer(request: Request) -> Signer:
    """The console's signer: keyed by ``SESSION_SECRET`` itself (``html.signer``)."""
    return html.signer(request, "console_signer", lambda secret: secret)


# ---------------------------------------------------------------------------- sign-in


async def _signed_in(request: Request, db: SessionDep) -> tuple[Session, Agent] | None:
    session = signer(request).read(request.cookies.get(COOKIE), utcnow())
    if session is None:
        return None
    agent = await console.active_agent(db, session.subject)
    return (session, agent) if agent is not None else None


def _to_login(request: Request) -> Response:
    path = request.url.path.rstrip("/") or "/support"
    query = urlencode({"next": path}) if _NEXT.match(path) and path != "/support" else ""
    return secure(RedirectResponse(LOGIN_PATH + (f"?{query}" if query else ""), 303))


def _safe_next(value: Any) -> str:
    return value if isinstance(value, str) and _NEXT.match(value) else "/support"


@router.get("/login", response_class=HTMLResponse)
async def login_form(
    request: Request, db: SessionDep, settings: SettingsDep, next: str = ""
) -> Response:
    if await _signed_in(request, db) is not None:
        return secure(RedirectResponse(_safe_next(next), 303))
    signed_out = request.query_params.get("signed_out") == "1"
    return _login_page(request, settings, None, _safe_next(next), signed_out=signed_out)


def _login_page(
    request: Request,
    settings: Settings,
    error: str | None,
    next_path: str,
    *,
    status_code: int = 200,
    signed_out: bool = False,
) -> Response:
    sign = signer(request)
    session = sign.read(request.cookies.get(LOGIN_COOKIE), utcnow())
    value = None
    if session is None or session.subject != console.ANONYMOUS:
        value, session = sign.issue(console.ANONYMOUS, utcnow(), console.LOGIN_LIFETIME)
    response = render(
        templates,
        request,
        "console_login.html",
        {
            "csrf": sign.csrf(session),
            "error": error,
            "next": next_path,
            "signed_out": signed_out,
        },
        status_code,
    )
    if value is not None:
        set_cookie(response, settings, LOGIN_COOKIE, value, LOGIN_PATH, console.LOGIN_LIFETIME)
    return response


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, db: SessionDep, settings: SettingsDep) -> Response:
    form = await request.form()
    sign = signer(request)
    session = sign.read(request.cookies.get(LOGIN_COOKIE), utcnow())
    if (
        session is None
        or session.subject != console.ANONYMOUS
        or not sign.csrf_ok(session, _text(form, "csrf"))
    ):
        return _forbidden(request, signed_in=False)
    next_path = _safe_next(_text(form, "next"))
    agent = await console.agent_by_token(db, _text(form, "token") or "")
    if agent is None:
        return _login_page(
            request,
            settings,
            "That agent token is not valid, or its agent is no longer active. Check that you "
            "pasted the whole token (it starts with pfagt_).",
            next_path,
            status_code=401,
        )
    value, _ = sign.issue(agent.id, utcnow(), console.SESSION_LIFETIME)
    response = secure(RedirectResponse(next_path, 303))
    set_cookie(response, settings, COOKIE, value, "/support", console.SESSION_LIFETIME)
    response.delete_cookie(LOGIN_COOKIE, path=LOGIN_PATH)
    log.info("agent %s signed in to the console", agent.id)
    return response


@router.post("/logout")
async def logout(request: Request, db: SessionDep) -> Response:
    who = await _signed_in(request, db)
    if who is None:
        return _to_login(request)
    form = await request.form()
    if not signer(request).csrf_ok(who[0], _text(form, "csrf")):
        return _forbidden(request, signed_in=True)
    response = secure(RedirectResponse(f"{LOGIN_PATH}?signed_out=1", 303))
    response.delete_cookie(COOKIE, path="/support")
    return response


# ---------------------------------------------------------------------------- the queue


@router.get("", response_class=HTMLResponse)
async def queue_page(request: Request, db: SessionDep, support: SupportDep) -> Response:
    who = await _signed_in(request, db)
    if who is None:
        return _to_login(request)
    session, agent = who
    params = request.query_params
    queue_name = params.get("queue", "")
    sla_name = params.get("sla_state", "")
    cursor = params.get("cursor") or None
    limit = params.get("limit", "")
    page_size = int(limit) if limit.isdigit() and 1 <= int(limit) <= 100 else console.PAGE_SIZE
    if queue_name not in QUEUES or (sla_name and sla_name not in set(SlaState)):
        return _message(
            request,
            session,
            agent,
            400,
            "Unknown filter",
            ["This queue or SLA state does not exist. Choose one from the lists."],
        )
    try:
        page = await console.queue(
            db,
            agent,
            queue=Queue(queue_name) if queue_name in ("support", "csm") else None,
            mine=queue_name == "mine",
            sla_state=SlaState(sla_name) if sla_name else None,
            cursor=cursor,
            limit=page_size,
        )
    except ApiError as err:  # a cursor this console did not make
        return _message(
            request, session, agent, err.status_code, "Cannot show this page", [err.message]
        )
    zone = _zone(support)
    now = utcnow()
    rows = [
        {
            "id": r.case.id,
            "number": r.case.number,
            "subject": r.case.subject,
            "merchant": r.merchant_name,
            "plan": r.plan,
            "priority": r.case.priority.value,
            "status": r.case.status.value,
            "sla": _sla(r.case.sla.state),
            "due": when(r.due_at, now, zone),
            "assignee": r.assignee_name,
        }
        for r in page.rows
    ]
    shown = {"queue": queue_name, "sla_state": sla_name, "limit": str(page_size) if limit else ""}
    filters = {k: v for k, v in shown.items() if v}
    first_url = "/support" + (f"?{urlencode(filters)}" if filters else "")
    next_url = None
    if page.next_cursor:
        next_url = "/support?" + urlencode({**filters, "cursor": page.next_cursor})
    return _page(
        request,
        session,
        agent,
        "console_queue.html",
        {
            "rows": rows,
            "queues": QUEUES,
            "queue": queue_name,
            "sla_states": {s.value: SLA_WORDS[s] for s in SlaState},
            "sla_state": sla_name,
            "next_url": next_url,
            "first_url": first_url,
            "paged": cursor is not None,
            "zone": _zone_name(support),
        },
        200,
    )


# ---------------------------------------------------------------------------- one case


@router.get("/cases/{case_id}", response_class=HTMLResponse)
async def case_page(
    request: Request, case_id: str, db: SessionDep, support: SupportDep
) -> Response:
    who = await _signed_in(request, db)
    if who is None:
        return _to_login(request)
    session, agent = who
    try:
        view = await console.case_view(db, case_id)
    except ApiError as err:
        return _not_found(request, session, agent, err)
    notice = DONE.get(request.query_params.get("done", ""))
    return _case(request, session, agent, support, view, 200, notice=notice)


# The console's three forms, by the last part of their path, and what the page then says.
ACTIONS = {"reply": "replied", "assign": "assigned", "resolve": "resolved"}


@router.post("/cases/{case_id}/{action}", response_class=HTMLResponse)
async def change(
    request: Request,
    case_id: str,
    action: str,
    db: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    support: SupportDep,
) -> Response:
    """Reply (optionally waiting on the merchant), assign to me, or resolve."""
    if action not in ACTIONS:
        return _message(
            request, None, None, 404, "Page not found", ["The console has no such form."]
        )
    return await _change(request, case_id, db, temporal, settings, support, ACTIONS[action])


async def _change(
    request: Request,
    case_id: str,
    db: SessionDep,
    temporal: TemporalDep,
    settings: Settings,
    support: SupportDep,
    done: str,
) -> Response:
    """Checks session and CSRF token, runs the change as the agents' API does, redirects back."""
    who = await _signed_in(request, db)
    if who is None:
        return _to_login(request)
    session, agent = who
    form = await request.form()
    if not signer(request).csrf_ok(session, _text(form, "csrf")):
        return _forbidden(request, signed_in=True, session=session, agent=agent)
    try:
        row = await cases.case_row(db, case_id, None)
    except ApiError as err:
        return _not_found(request, session, agent, err)
    body = _text(form, "body") or ""
    waiting = _text(form, "waiting_on_merchant") == "yes"
    nonce = _nonce(form)
    key = f"console-{nonce}" if nonce else None  # the Update's id: one change per form sent
    try:
        if done == "replied":
            try:
                message = AgentMessageCreate(body=body, waiting_on_merchant=waiting)
            except ValidationError as err:
                raise cases.Invalid(_first_error(err), code="validation_error") from err
            await cases.agent_message(
                db, temporal, settings, row, agent, message.body, message.waiting_on_merchant, key
            )
        elif done == "assigned":
            await cases.assign(db, temporal, settings, row, agent, agent.id, key)
        else:
            await cases.resolve(db, temporal, settings, row, agent, key)
    except ApiError as err:
        problem, status = err.message, err.status_code
    except Exception:
        log.exception("the console's %s of case %s failed", done, case_id)
        problem = (
            "The case did not answer just now, so the change may not have been made: "
            "check the case, then try again."
        )
        status = 503
    else:
        return secure(RedirectResponse(f"/support/cases/{case_id}?done={done}", 303))
    await db.rollback()  # which expires what was loaded: read the agent and the case again
    await db.refresh(agent)
    view = await console.view_of(db, await cases.case_row(db, case_id, None))
    replied = done == "replied"  # keep what was typed, so sending again is one click
    return _case(
        request,
        session,
        agent,
        support,
        view,
        status,
        problem=problem,
        body=body if replied else "",
        waiting=waiting and replied,
        # Sent again, the same form is the same change; after a refusal, a new one.
        nonce=nonce if status >= 500 else None,
    )


def _nonce(form: FormData) -> str | None:
    value = _text(form, "nonce")
    return value if value is not None and _NONCE.fullmatch(value) else None


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") in ("string_too_short", "missing"):
        return "Write a reply before sending it."
    return f"The reply: {message}"


def _case(
    request: Request,
    session: Session,
    agent: Agent,
    support: SupportDep,
    view: console.CaseView,
    status_code: int,
    *,
    notice: str | None = None,
    problem: str | None = None,
    body: str = "",
    waiting: bool = False,
    nonce: str | None = None,
) -> Response:
    zone, now, case = _zone(support), utcnow(), view.case
    messages = [
        {
            "kind": m.author_kind,
            "author": (
                f"{view.merchant_name} (merchant)"
                if m.author_kind == "merchant"
                else f"{m.author_name or m.author_id or 'An agent'} (support team)"
                if m.author_kind == "agent"
                else "printflow (system)"
            ),
            "at": when(m.created_at, now, zone),
            "body": m.body,
            "attachments": m.attachments,
        }
        for m in case.messages
    ]
    requests = [
        {
            "id": r.request_id,
            "method": r.method,
            "route": r.route,
            "status": r.status,
            "error_code": r.error_code or "–",
            "at": when(r.created_at, now, zone),
        }
        for r in case.requests
    ]
    return _page(
        request,
        session,
        agent,
        "console_case.html",
        {
            "case": case,
            "view": view,
            "sla": _sla(case.sla.state),
            "due": when(view.due_at, now, zone),
            "first_due": when(case.sla.first_response_due_at, now, zone),
            "next_due": when(case.sla.next_response_due_at, now, zone),
            "created": when(case.created_at, now, zone),
            "messages": messages,
            "requests": requests,
            "notice": notice,
            "problem": problem,
            # A refusal changed nothing; an answer that never came (503) may still change it.
            "problem_title": (
                "The change may not have been made" if status_code >= 500 else "Nothing was changed"
            ),
            "body": body,
            "waiting": waiting,
            "form_nonce": nonce or secrets.token_urlsafe(16),
            "mine": case.assignee == agent.id,
            "can_resolve": case.status.value in ("open", "waiting_on_merchant"),
            "zone": _zone_name(support),
        },
        status_code,
    )


# ---------------------------------------------------------------------------- pages


def _page(
    request: Request,
    session: Session,
    agent: Agent,
    template: str,
    context: dict[str, Any],
    status_code: int,
) -> HTMLResponse:
    context = {**context, "agent": agent, "csrf": signer(request).csrf(session)}
    return render(templates, request, template, context, status_code)


def _message(
    request: Request,
    session: Session | None,
    agent: Agent | None,
    status_code: int,
    heading: str,
    paragraphs: list[str],
) -> HTMLResponse:
    context: dict[str, Any] = {"heading": heading, "paragraphs": paragraphs, "agent": agent}
    if session is not None and agent is not None:
        context["csrf"] = signer(request).csrf(session)
    return render(templates, request, "console_message.html", context, status_code)


def _forbidden(
    request: Request,
    *,
    signed_in: bool,
    session: Session | None = None,
    agent: Agent | None = None,
) -> HTMLResponse:
    again = (
        "Go back, reload the page and send it again."
        if signed_in
        else ("Open the sign-in page again and sign in from there.")
    )
    return _message(
        request,
        session,
        agent,
        403,
        "This form could not be accepted",
        [
            "It did not carry this console's security token, or the token belongs to another "
            "session. Nothing was changed.",
            again,
        ],
    )


def _not_found(request: Request, session: Session, agent: Agent, err: ApiError) -> HTMLResponse:
    return _message(request, session, agent, err.status_code, "Case not found", [err.message])


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


# ---------------------------------------------------------------------------- time in words


def _zone(support: SupportDep) -> tzinfo:
    return ZoneInfo(support.calendar.timezone)


def _zone_name(support: SupportDep) -> str:
    return support.calendar.timezone


def _sla(state: SlaState) -> dict[str, str]:
    return {"state": state.value, "word": SLA_WORDS[state]}

"""Portal pages: developers (docs/portal.md), for owners and developers.

- ``GET /portal/developers``: the API key (its prefix, and until when the one before it still
  works), the webhook URL and secret, the webhook events with their deliveries (cursor pages,
  "Redeliver"), and the failed requests (cursor pages, ``?request_id=`` finds one by its
  ``X-Request-Id``).
- ``POST /portal/developers/rotate-key`` and ``…/rotate-webhook-secret``: the admin API's
  rotations (``api.services.merchants``); the answer itself shows the new key or secret, once,
  and is never a redirect.
- ``POST /portal/developers/webhook-url``: set (checked as the API checks it) or clear it.
- ``POST /portal/developers/deliveries/{event_id}/redeliver``: the API's redelivery.

A rotation cannot be undone, and sent twice it would retire the key the shop still uses: each
rotation form names the key (its prefix) or secret (a fingerprint) it was shown with, and the
rotation happens only while that is still the current one. The check is a conditional UPDATE
in the rotation's own transaction, so two sends at the same moment rotate once as well: the
second is told the key was already rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import case, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from api.deps import SessionDep, SettingsDep, TemporalDep
from api.errors import ApiError, NotFound
from api.pages.html import span
from api.pages.portal import common
from api.pruning import KEEP
from api.request_ids import valid_request_id
from api.schemas import RequestLogEntry, WebhookEventPublic
from api.services import merchants, request_log, webhooks
from api.services.portal import Visitor
from db.engine import utcnow
from db.models import Merchant, RequestLog, WebhookDelivery
from domain.portal import Right
from runtime.settings import Settings

log = logging.getLogger("printflow.portal")

router = APIRouter(prefix="/portal", include_in_schema=False)

PATH = "/portal/developers"
EVENTS_SHOWN = 20
REQUESTS_SHOWN = 25
# Hex characters of the secret's sha256 that the page shows and the rotation form carries.
FINGERPRINT_LENGTH = 16

DONE = {
    "webhook_url_set": "The webhook URL is saved: events are sent there from now on.",
    "webhook_url_cleared": "Webhooks are off: with no webhook URL, no events are sent until "
    "you set one again.",
    "redelivered": "The event is queued to be sent again, with the same id and body. Its "
    "attempt shows here once it was made.",
}

# An event's state, by its latest delivery row (``api.services.webhooks``' outcomes).
OUTCOME_WORDS = {
    "succeeded": "Delivered",
    "failed": "Failed, will be retried",
    "given_up": "Given up after 25 hours of retries",
    "waiting": "Waiting to be sent",
}

ALREADY_ROTATED = "Already rotated"


# ---------------------------------------------------------------------------- the page


@router.get("/developers", response_class=HTMLResponse)
async def developers_page(request: Request, db: SessionDep, settings: SettingsDep) -> Response:
    visitor = await common.enter(request, db, Right.DEVELOPERS)
    if isinstance(visitor, Response):
        return visitor
    query = request.query_params
    return await _developers(
        request,
        db,
        settings,
        visitor,
        200,
        notice=common.notice(request, DONE),
        events_cursor=query.get("events_cursor") or None,
        requests_cursor=query.get("requests_cursor") or None,
        request_id=query.get("request_id"),
    )


async def _developers(
    request: Request,
    db: AsyncSession,
    settings: Settings,
    visitor: Visitor,
    status_code: int,
    *,
    notice: str | None = None,
    problem: str | None = None,
    problem_title: str | None = None,
    field: str | None = None,
    typed_url: str | None = None,
    shown: dict[str, Any] | None = None,
    events_cursor: str | None = None,
    requests_cursor: str | None = None,
    request_id: str | None = None,
) -> Response:
    merchant = visitor.merchant
    now = utcnow()

    def problem_of(status: int, text: str) -> None:
        # A page read with a bad cursor or search still shows, saying what was wrong.
        nonlocal status_code, problem, problem_title
        if problem is None:
            status_code, problem, problem_title = status, text, "Cannot show all of this page"

    try:
        events = await webhooks.list_events(
            db, merchant, order_id=None, limit=EVENTS_SHOWN, cursor=events_cursor
        )
    except ApiError:
        problem_of(400, "That page of webhook events does not exist: here is the first one.")
        events_cursor = None
        events = await webhooks.list_events(
            db, merchant, order_id=None, limit=EVENTS_SHOWN, cursor=None
        )

    searched = (request_id or "").strip()
    search: dict[str, Any] | None = None
    requests: list[RequestLogEntry] = []
    next_requests: str | None = None
    if searched and not valid_request_id(searched.encode()):
        problem_of(
            422,
            "An X-Request-Id is 1 to 100 characters: letters, digits, dots, underscores and "
            "hyphens. Copy it from the X-Request-Id header of the answer.",
        )
        searched = searched[:100]
    elif searched:
        found = await request_log.requests_for(db, merchant.id, [searched])
        requests = found[::-1]
        search = {"request_id": searched, "found": bool(found)}
    if search is None:
        try:
            requests, next_requests = await _failed_requests(db, merchant.id, requests_cursor)
        except ValueError:
            problem_of(400, "That page of failed requests does not exist: here is the first one.")
            requests_cursor = None
            requests, next_requests = await _failed_requests(db, merchant.id, None)

    previous_key_until = merchant.previous_api_key_valid_until
    previous_secret_until = merchant.previous_webhook_secret_valid_until
    context: dict[str, Any] = {
        "notice": notice,
        "problem": problem,
        "problem_title": problem_title,
        "field": field,
        "shown": shown,
        "overlap": _overlap(settings.key_rotation_overlap),
        "key": {
            "prefix": merchant.api_key_prefix,
            "previous_until": (
                common.at(visitor, previous_key_until)
                if previous_key_until is not None and previous_key_until > now
                else None
            ),
        },
        "webhook": {
            "url": merchant.webhook_url,
            "typed": (merchant.webhook_url or "") if typed_url is None else typed_url,
            "fingerprint": fingerprint(merchant.webhook_secret),
            "previous_until": (
                common.at(visitor, previous_secret_until)
                if previous_secret_until is not None and previous_secret_until > now
                else None
            ),
        },
        "events": await _event_rows(db, visitor, events.data),
        "events_paged": events_cursor is not None,
        "events_next": (
            f"{PATH}?events_cursor={events.next_cursor}#deliveries" if events.next_cursor else None
        ),
        "requests": [_request_row(visitor, r) for r in requests],
        "requests_paged": requests_cursor is not None and search is None,
        "requests_next": (
            f"{PATH}?requests_cursor={next_requests}#requests" if next_requests else None
        ),
        "search": search,
        "searched": searched,
        "keep_days": KEEP.days,
        "form_nonce": common.new_nonce(),
    }
    return common.page(request, visitor, "portal/developers.html", context, status_code)


def fingerprint(secret: str) -> str:
    """What the page shows of the webhook secret, and what its rotation form names it by: the
    start of its sha256 (``printf %s "$SECRET" | sha256sum`` tells a copy apart)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:FINGERPRINT_LENGTH]


def _overlap(overlap: timedelta) -> str:
    hours = overlap.total_seconds() / 3600
    if hours == int(hours) and hours >= 1:
        return f"{int(hours)} hour{'' if hours == 1 else 's'}"
    return span(overlap)


async def _failed_requests(
    db: AsyncSession, merchant_id: str, cursor: str | None
) -> tuple[list[RequestLogEntry], str | None]:
    """One page of the merchant's failed requests, newest first; ids grow with every row, so
    the last one shown is the next page's cursor. ``ValueError`` for a cursor that is not one."""
    query = select(RequestLog).where(RequestLog.merchant_id == merchant_id)
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 18:
            raise ValueError(cursor)
        query = query.where(col(RequestLog.id) < int(cursor))
    query = query.order_by(col(RequestLog.id).desc()).limit(REQUESTS_SHOWN + 1)
    rows = list((await db.exec(query)).all())
    page = rows[:REQUESTS_SHOWN]
    more = len(rows) > REQUESTS_SHOWN
    entries = [RequestLogEntry.model_validate(r, from_attributes=True) for r in page]
    return entries, (str(page[-1].id) if more else None)


def _request_row(visitor: Visitor, entry: RequestLogEntry) -> dict[str, Any]:
    return {
        "request_id": entry.request_id,
        "method": entry.method,
        "route": entry.route,
        "status": entry.status,
        "error_code": entry.error_code,
        "at": common.at(visitor, entry.created_at),
    }


async def _event_rows(
    db: AsyncSession, visitor: Visitor, events: list[WebhookEventPublic]
) -> list[dict[str, Any]]:
    """Each event with its deliveries summed up: attempts made, the latest row's outcome,
    answer and time (a row of attempt 0 marks the end of the retries)."""
    ids = [e.id for e in events]
    latest: dict[str, WebhookDelivery] = {}
    attempts: dict[str, int] = {}
    if ids:
        summed = await db.exec(
            select(
                WebhookDelivery.event_id,
                func.sum(case((col(WebhookDelivery.attempt) > 0, 1), else_=0)),
                func.max(WebhookDelivery.id),
            )
            .where(
                WebhookDelivery.merchant_id == visitor.merchant.id,
                col(WebhookDelivery.event_id).in_(ids),
            )
            .group_by(col(WebhookDelivery.event_id))
        )
        last_ids = []
        for event_id, made, last_id in summed.all():
            attempts[event_id] = int(made or 0)
            last_ids.append(last_id)
        if last_ids:
            rows = await db.exec(
                select(WebhookDelivery).where(col(WebhookDelivery.id).in_(last_ids))
            )
            latest = {row.event_id: row for row in rows.all()}
    found = []
    for event in events:
        last = latest.get(event.id)
        if last is None:
            outcome = "waiting"
        elif last.succeeded:
            outcome = "succeeded"
        else:
            outcome = "given_up" if last.attempt == 0 else "failed"
        if last is None:
            answer = "none yet"
        elif last.status_code is not None:
            answer = f"HTTP {last.status_code}"
        else:
            answer = last.error or "no answer"
        found.append(
            {
                "id": event.id,
                "type": event.type,
                "order_id": event.order_id,
                "outcome": outcome,
                "outcome_words": OUTCOME_WORDS[outcome],
                "attempts": attempts.get(event.id, 0),
                "answer": answer,
                "at": common.at(visitor, last.at if last is not None else event.created_at),
                "tried": last is not None,
            }
        )
    return found


# ---------------------------------------------------------------------------- rotations


@router.post("/developers/rotate-key", response_class=HTMLResponse)
async def rotate_key(request: Request, db: SessionDep, settings: SettingsDep) -> Response:
    return await _rotate(request, db, settings, "key")


@router.post("/developers/rotate-webhook-secret", response_class=HTMLResponse)
async def rotate_webhook_secret(
    request: Request, db: SessionDep, settings: SettingsDep
) -> Response:
    return await _rotate(request, db, settings, "secret")


async def _rotate(request: Request, db: AsyncSession, settings: Settings, what: str) -> Response:
    """Rotates the API key (``what`` is "key") or the webhook secret ("secret"), while the one
    the form was shown with is still the current one; the answer shows the new one, once."""
    entered = await common.enter_form(request, db, Right.DEVELOPERS)
    if isinstance(entered, Response):
        return entered
    visitor, form = entered
    merchant = visitor.merchant
    key = what == "key"
    # The form names the key by its prefix, the secret by its fingerprint.
    if key:
        expected = (common.text(form, "expected_prefix") or "")[:40]
        column, current = Merchant.api_key_prefix, merchant.api_key_prefix
        named = current
    else:
        expected = (common.text(form, "expected_secret") or "")[:FINGERPRINT_LENGTH]
        column, current = Merchant.webhook_secret, merchant.webhook_secret
        named = fingerprint(current)
    if not expected:
        return await _developers(request, db, settings, visitor, 422, problem=_unnamed(what))
    claimed = hmac.compare_digest(named.encode(), expected.encode()) and (
        await _claim(
            db,
            update(Merchant)
            .where(col(Merchant.id) == merchant.id, col(column) == current)
            .values({column: col(column)}),
        )
    )
    if not claimed:
        await common.recover(db, visitor)
        return await _developers(
            request,
            db,
            settings,
            visitor,
            409,
            problem=_already(visitor, what, expected),
            problem_title=ALREADY_ROTATED,
        )
    await db.refresh(merchant)
    overlap = settings.key_rotation_overlap
    if key:
        new_key = await merchants.rotate_api_key(db, merchant.id, overlap)
        value, until = new_key.api_key, new_key.previous_valid_until
    else:
        new_secret = await merchants.rotate_webhook_secret(db, merchant.id, overlap)
        value, until = new_secret.webhook_secret, new_secret.previous_valid_until
    log.info("portal user %s rotated the %s of %s", visitor.user.id, _NAMES[what], merchant.id)
    shown = {"what": what, "value": value, "until": common.at(visitor, until), "old": expected}
    return await _developers(request, db, settings, visitor, 200, shown=shown)


# What a rotation rotates, in words.
_NAMES = {"key": "API key", "secret": "webhook secret"}


def _unnamed(what: str) -> str:
    return (
        f"The form did not say which {'key' if what == 'key' else 'webhook secret'} it was "
        "shown with, so nothing was rotated: reload this page and rotate from there."
    )


def _already(visitor: Visitor, what: str, expected: str) -> str:
    """The 409 of a rotation sent again: the one it named was rotated already."""
    if what == "key":
        said = (
            f"Already rotated: the key this form was shown with ({expected}…) is no longer the "
            "current one, so it was not rotated again. The new key was shown once, in the "
            "answer to the first rotation; printflow keeps only its hash."
        )
    else:
        said = (
            f"Already rotated: the webhook secret this form was shown with (fingerprint "
            f"{expected}) is no longer the current one, so it was not rotated again. The new "
            "secret was shown once, in the answer to the first rotation."
        )
    return said + _again(visitor, what)


def _again(visitor: Visitor, what: str) -> str:
    """What rotating again would do while the one before the current key still works."""
    merchant = visitor.merchant
    until = (
        merchant.previous_api_key_valid_until
        if what == "key"
        else merchant.previous_webhook_secret_valid_until
    )
    if until is None or until <= utcnow():
        return " If nobody copied it, rotate again."
    thing = "key" if what == "key" else "secret"
    return (
        f" If nobody copied it, you can rotate again, but that ends the {thing} before the "
        f"current one at once: only the current {thing} and the one just before it ever work."
    )


async def _claim(db: AsyncSession, guard: Any) -> bool:
    """Runs the conditional UPDATE that starts a rotation's transaction: True when it matched
    (the row is then locked until the rotation commits), False when the key or secret changed."""
    result = await db.exec(guard)
    return bool(result.rowcount == 1)


# ---------------------------------------------------------------------------- webhooks


@router.post("/developers/webhook-url", response_class=HTMLResponse)
async def set_webhook_url(request: Request, db: SessionDep, settings: SettingsDep) -> Response:
    entered = await common.enter_form(request, db, Right.DEVELOPERS)
    if isinstance(entered, Response):
        return entered
    visitor, form = entered
    clear = common.text(form, "action") == "clear"
    typed = "" if clear else (common.text(form, "webhook_url") or "").strip()
    if not clear and not typed:
        return await _developers(
            request,
            db,
            settings,
            visitor,
            422,
            problem="Type the webhook URL, or choose “Stop sending webhooks” to have none.",
            field="webhook_url",
            typed_url="",
        )
    try:
        await merchants.set_webhook_url(
            db, visitor.merchant.id, typed or None, allow_private=settings.webhook_allow_private
        )
    except RequestValidationError as err:
        await common.recover(db, visitor)
        return await _developers(
            request,
            db,
            settings,
            visitor,
            422,
            problem=_url_problem(err),
            field="webhook_url",
            typed_url=typed,
        )
    log.info(
        "portal user %s %s the webhook URL of %s",
        visitor.user.id,
        "cleared" if clear else "set",
        visitor.merchant.id,
    )
    return common.done(PATH, "webhook_url_cleared" if clear else "webhook_url_set")


def _url_problem(err: RequestValidationError) -> str:
    """The API's words for a refused ``webhook_url``, as a sentence."""
    errors = err.errors()
    message = str(errors[0].get("msg", "is not valid")) if errors else "is not valid"
    return f"The webhook URL {message.rstrip('.')}."


@router.post("/developers/deliveries/{event_id}/redeliver", response_class=HTMLResponse)
async def redeliver(
    request: Request,
    event_id: str,
    db: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> Response:
    entered = await common.enter_form(request, db, Right.DEVELOPERS)
    if isinstance(entered, Response):
        return entered
    visitor, _ = entered

    async def run() -> Response:
        try:
            await webhooks.redeliver(db, temporal, settings, visitor.merchant, event_id)
        except NotFound:
            return common.not_found(request, visitor, "Webhook event")
        log.info("portal user %s redelivered %s", visitor.user.id, event_id)
        return common.done(PATH, "redelivered")

    failed = await common.attempt(
        db,
        visitor,
        f"redelivery of {event_id}",
        run,
        unanswered=(
            "The delivery queue did not answer just now, so the event may not have been queued "
            "again: look at its attempts below, then try again."
        ),
        words=_redelivery_refused,
    )
    if isinstance(failed, Response):
        return failed
    return await _developers(
        request,
        db,
        settings,
        visitor,
        failed.status,
        problem=failed.problem,
        problem_title="The event may not have been queued" if failed.status >= 500 else None,
    )


def _redelivery_refused(err: ApiError) -> str:
    if err.code == "webhook_not_configured":
        return (
            "Your shop has no webhook URL, so there is nowhere to send the event: set the URL "
            "above, then redeliver."
        )
    return common.refused(err)

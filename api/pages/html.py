"""What every HTML page of printflow sends: a fresh CSP nonce for its inline style, and headers
that keep it from loading anything else, being framed, cached, indexed or leaking its URL; and
the signed session a signed-in page keeps in its cookie."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from api.services.sessions import Signer
from runtime.settings import Settings


def page_headers(nonce: str | None) -> dict[str, str]:
    style = f"'nonce-{nonce}'" if nonce else "'none'"
    return {
        # Nothing but our own inline style and forms posting back here; never framed.
        "Content-Security-Policy": f"default-src 'none'; style-src {style}; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        # URLs may carry a credential (/p/{token}): no Referer anywhere, no cached copy, no index.
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Robots-Tag": "noindex, nofollow",
        "X-Content-Type-Options": "nosniff",
    }


def render(
    templates: Jinja2Templates,
    request: Request,
    template: str,
    context: dict[str, Any],
    status_code: int,
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    response = templates.TemplateResponse(
        request, template, {**context, "nonce": nonce}, status_code=status_code
    )
    response.headers.update(page_headers(nonce))
    return response


def secure(response: Response) -> Response:
    """The same headers on an answer without a page (a redirect)."""
    response.headers.update(page_headers(None))
    return response


def signer(request: Request, name: str, key: Callable[[bytes], bytes]) -> Signer:
    """The app's signer ``name``, made once: its key is ``key`` of ``SESSION_SECRET``, or of a
    random secret made once per process."""
    state = request.app.state
    found: Signer | None = getattr(state, name, None)
    if found is None:
        settings: Settings = state.settings
        secret = (
            settings.session_secret.get_secret_value().encode()
            if settings.session_secret
            else secrets.token_bytes(32)
        )
        found = Signer(key(secret))
        setattr(state, name, found)
    return found


def set_cookie(
    response: Response, settings: Settings, name: str, value: str, path: str, life: timedelta
) -> None:
    """A session's cookie: for ``path`` only, never read by scripts or sent from another site,
    and over https only when the site is."""
    response.set_cookie(
        name,
        value,
        max_age=int(life.total_seconds()),
        path=path,
        secure=settings.public_base_url.lower().startswith("https://"),
        httponly=True,
        samesite="strict",
    )


def when(at: datetime | None, now: datetime, zone: tzinfo) -> dict[str, str] | None:
    """A time as ``<time>`` shows it: ISO for machines, words relative to now, and absolute in
    ``zone``."""
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    local = at.astimezone(zone)
    delta = at - now
    if abs(delta) < timedelta(minutes=1):
        relative = "now"
    elif delta > timedelta(0):
        relative = f"in {span(delta)}"
    else:
        relative = f"{span(-delta)} ago"
    return {
        "iso": at.isoformat(),
        "relative": relative,
        "absolute": local.strftime("%a %d %b %Y, %H:%M ") + (local.tzname() or ""),
    }


def span(delta: timedelta) -> str:
    """The two largest units: "2 days 3 hours", "4 hours 10 minutes", "25 minutes"."""
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [(days, "day"), (hours, "hour"), (minutes, "minute")]
    words = [f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in parts if n]
    return " ".join(words[:2]) or "less than a minute"

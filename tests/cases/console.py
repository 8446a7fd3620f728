"""The support console (``/support``) as a browser without JavaScript uses it: a cookie jar of
its own per agent, forms posted with the CSRF token the page carries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from tests.helpers.api import Api

CSRF = re.compile(r'<input type="hidden" name="csrf" value="([^"]+)">')


def csrf_of(html: str) -> str:
    tokens = set(CSRF.findall(html))
    assert len(tokens) == 1, f"expected one CSRF token on the page, found {tokens}"
    return tokens.pop()


def assert_page_headers(response: httpx.Response) -> None:
    """What every console answer carries, pages and redirects alike."""
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp and "unsafe-inline" not in csp
    if response.headers.get("content-type", "").startswith("text/html"):
        nonce = re.search(r"style-src 'nonce-([^']+)'", csp)
        assert nonce and f'<style nonce="{nonce.group(1)}">' in response.text
        assert "<script" not in response.text.lower()
        assert "<link" not in response.text.lower()


@dataclass
class Console:
    """One agent's browser: its own cookies, talking to the API's app over ASGI."""

    http: httpx.AsyncClient

    @classmethod
    def of(cls, api: Api) -> Console:
        return cls(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=api.app),
                base_url=api.settings.public_base_url,
            )
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def sign_in(self, token: str) -> httpx.Response:
        form = await self.http.get("/support/login")
        assert form.status_code == 200, form.text
        return await self.http.post(
            "/support/login", data={"csrf": csrf_of(form.text), "token": token}
        )

    async def page(self, path: str, status: int = 200) -> httpx.Response:
        response = await self.http.get(path)
        assert response.status_code == status, (response.status_code, response.text)
        assert_page_headers(response)
        return response

    async def submit(
        self, page_path: str, action: str, fields: dict[str, Any] | None = None
    ) -> httpx.Response:
        """Posts the form at ``action`` with the CSRF token of the page at ``page_path``."""
        page = await self.page(page_path)
        data = {"csrf": csrf_of(page.text), **(fields or {})}
        response = await self.http.post(action, data=data)
        assert_page_headers(response)
        return response

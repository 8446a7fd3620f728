"""Merchants' print files, downloaded by URL for the preflight check: ``FileFetcher.fetch``.

A print file comes from wherever the merchant's URL points, so every request is treated like a
webhook's: the URL is checked before and after DNS with the rules of ``domain.webhook_urls``
(https, public addresses only, no credentials in the URL) and the request goes to the address
that was checked (``integrations.webhooks.pinned_request``), so a second DNS answer cannot
send it elsewhere. Redirects are followed here, never by httpx: at most ``max_redirects``, each
new URL checked exactly like the first.

The body is streamed to a file of the caller's ``directory`` and hashed as it comes; a
``Content-Length`` above ``max_bytes`` is refused before reading, and reading stops as soon as
the body passes ``max_bytes`` (the partial file is deleted). ``timeout`` bounds the whole fetch,
DNS and every hop included, not only each read.

Failures raise ``FetchFailed`` with a code, one sentence for the merchant and whether asking
again later may help (``transient``): 5xx, 408, 429, time-outs, refused or broken connections
and DNS failures may; any other 4xx, a refused URL or address, too many redirects, a TLS
certificate not valid for the name and a file over the limit do not. Of an error answer only
its status code is kept: its body is not read.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from integrations.webhooks import Refused, Resolver, pinned_request

log = logging.getLogger("printflow.files")

UNREACHABLE = "file_unreachable"
TOO_LARGE = "file_too_large"
USER_AGENT = "printflow-preflight/1"
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
NOT_MODIFIED = 304


@dataclass(frozen=True)
class Fetched:
    """A downloaded print file: ``path`` is the caller's to read and delete."""

    path: Path
    sha256: str  # hex
    bytes: int
    content_type: str | None
    etag: str | None
    last_modified: str | None
    url: str  # the URL the file came from, after redirects


class FetchFailed(Exception):
    """The file could not be fetched. ``code``: ``file_unreachable`` or ``file_too_large``;
    ``message``: one sentence for the merchant; ``transient``: a later attempt may work."""

    def __init__(self, code: str, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient


@dataclass(frozen=True)
class Hop:
    """One request's checked destination: ``target`` is ``url`` with the checked address in
    place of its name; ``host`` (the ``Host`` header) and ``extensions`` (TLS to the name)
    keep the name."""

    url: str
    target: httpx.URL
    host: str
    extensions: dict[str, Any]


def _unreachable(message: str, *, transient: bool) -> FetchFailed:
    return FetchFailed(UNREACHABLE, message, transient=transient)


async def check_hop(url: str, *, allow_private: bool, resolve: Resolver | None = None) -> Hop:
    """Where a request for ``url`` may go, checked as a webhook's URL is (before and after
    DNS, see ``pinned_request``) and without credentials; raises ``FetchFailed`` otherwise."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise _unreachable("The print file's URL is not a valid URL.", transient=False) from None
    if parsed.userinfo:
        raise _unreachable(
            "The print file's URL must not contain a user name or password.", transient=False
        )
    try:
        target, extensions = await pinned_request(
            url, allow_private=allow_private, resolver=resolve
        )
    except Refused as refused:
        if refused.kind == "dns_error":
            raise _unreachable(
                f"The print file's server {parsed.host} could not be found (DNS).",
                transient=True,
            ) from None
        raise _unreachable(f"The print file's URL {refused}.", transient=False) from None
    return Hop(url, target, parsed.netloc.decode("ascii"), extensions)


def _status(code: int) -> str:
    reason = httpx.codes.get_reason_phrase(code)
    return f"{code} {reason}" if reason else str(code)


def _refused_answer(code: int) -> FetchFailed:
    """Any answer but a file or a redirect: 5xx, 408 and 429 may pass, others will not."""
    transient = code >= 500 or code in (408, 429)
    later = " (it may work later)" if transient else ""
    return _unreachable(
        f"The print file's server answered {_status(code)}{later}.", transient=transient
    )


def _no_answer(exc: httpx.HTTPError) -> FetchFailed:
    """A request that got no (whole) answer: a time-out, a refused or broken connection may
    pass; a certificate not valid for the URL's name and a body that cannot be decoded will
    not (the merchant's server has to change)."""
    if _caused_by(exc, ssl.SSLCertVerificationError):
        return _unreachable(
            "The print file's server has a TLS certificate that is not valid for its name.",
            transient=False,
        )
    if isinstance(exc, httpx.TimeoutException):
        return _unreachable("The print file's server did not answer in time.", transient=True)
    if isinstance(exc, httpx.ConnectError):
        return _unreachable("The print file's server could not be connected to.", transient=True)
    if isinstance(exc, httpx.TransportError):
        return _unreachable(
            "The connection to the print file's server broke off before the file was complete.",
            transient=True,
        )
    return _unreachable(
        "The print file's server sent an answer that could not be read.", transient=False
    )


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``exc`` or what it was raised from (httpx wraps httpcore wraps ssl) is a
    ``kind``."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _size(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f}".removesuffix(".0") + " MB"
    return f"{count:,} bytes"


def _declared_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class FileFetcher:
    """Downloads print files over ``http`` (see the module docstring).

    ``allow_private`` (development and tests only): http URLs and private addresses are
    allowed. ``resolve`` turns a name and port into addresses (the system's DNS when None).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        allow_private: bool,
        max_bytes: int,
        timeout: timedelta,
        max_redirects: int = 3,
        resolve: Resolver | None = None,
    ) -> None:
        self._http = http
        self._allow_private = allow_private
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._max_redirects = max_redirects
        self._resolve = resolve

    async def fetch(self, url: str, directory: Path) -> Fetched:
        """Downloads ``url`` into a new file of ``directory``; raises ``FetchFailed``."""
        fetched = await self._fetch(url, directory, {})
        assert fetched is not None  # no validators sent: never 304
        return fetched

    async def fetch_if_changed(
        self, url: str, directory: Path, *, etag: str | None, last_modified: str | None
    ) -> Fetched | None:
        """Like ``fetch``, unless the server says the file is the one those validators name
        (``304 Not Modified``): then None, and nothing is downloaded."""
        validators = {}
        if etag:
            validators["If-None-Match"] = etag
        if last_modified:
            validators["If-Modified-Since"] = last_modified
        return await self._fetch(url, directory, validators)

    async def _fetch(self, url: str, directory: Path, validators: dict[str, str]) -> Fetched | None:
        seconds = self._timeout.total_seconds()
        try:
            async with asyncio.timeout(seconds):
                return await self._follow(url, directory, seconds, validators)
        except TimeoutError:
            log.info("print file not fetched: no whole answer within %ss", seconds)
            raise _unreachable(
                f"The print file did not download within {seconds:g} seconds.", transient=True
            ) from None
        except FetchFailed as failed:
            log.info("print file not fetched: %s", failed.message)
            raise

    async def _follow(
        self, url: str, directory: Path, seconds: float, validators: dict[str, str]
    ) -> Fetched | None:
        current = url
        for _ in range(self._max_redirects + 1):
            hop = await check_hop(current, allow_private=self._allow_private, resolve=self._resolve)
            # Built here, not by the client: none of its default headers, cookies or
            # credentials go to the merchant's server.
            request = httpx.Request(
                "GET",
                hop.target,
                headers={
                    "Host": hop.host,
                    "User-Agent": USER_AGENT,
                    # The file's own bytes: nothing for a small answer to inflate.
                    "Accept-Encoding": "identity",
                    **validators,
                },
                extensions={**hop.extensions, "timeout": httpx.Timeout(seconds).as_dict()},
            )
            try:
                response = await self._http.send(
                    request, stream=True, follow_redirects=False, auth=None
                )
                try:
                    location = response.headers.get("location")
                    if response.status_code in REDIRECT_CODES and location:
                        current = _redirected(current, location)
                        continue
                    if response.status_code == NOT_MODIFIED and validators:
                        return None
                    if not response.is_success:
                        raise _refused_answer(response.status_code)
                    return await self._save(response, current, directory)
                finally:
                    # Unread bodies (error answers, redirects) are dropped with the connection.
                    await response.aclose()
            except httpx.HTTPError as exc:
                raise _no_answer(exc) from None
        raise _unreachable(
            f"The print file's URL redirects more than {self._max_redirects} times.",
            transient=False,
        )

    async def _save(self, response: httpx.Response, url: str, directory: Path) -> Fetched:
        declared = _declared_length(response)
        if declared is not None and declared > self._max_bytes:
            raise self._too_large()
        handle, name = tempfile.mkstemp(prefix="print-file-", dir=directory)
        path = Path(name)
        digest = hashlib.sha256()
        count = 0
        try:
            # Each write is one network read's worth, to local disk: short enough for the loop.
            with os.fdopen(handle, "wb") as out:
                async for chunk in response.aiter_bytes():
                    count += len(chunk)
                    if count > self._max_bytes:
                        raise self._too_large()
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:  # a time-out's cancellation too: no partial file stays
            os.unlink(name)
            raise
        headers = response.headers
        return Fetched(
            path=path,
            sha256=digest.hexdigest(),
            bytes=count,
            content_type=headers.get("content-type"),
            etag=headers.get("etag"),
            last_modified=headers.get("last-modified"),
            url=url,
        )

    def _too_large(self) -> FetchFailed:
        return FetchFailed(
            TOO_LARGE,
            f"The print file is larger than the limit of {_size(self._max_bytes)}.",
            transient=False,
        )


def _redirected(current: str, location: str) -> str:
    """The URL a redirect from ``current`` points to (``Location`` may be relative)."""
    try:
        return str(httpx.URL(current).join(location))
    except httpx.InvalidURL:
        raise _unreachable(
            "The print file's URL redirects to an invalid URL.", transient=False
        ) from None

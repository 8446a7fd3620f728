"""The preflight check of one print file (docs/preflight.md): fetch it safely
(``integrations.files``), look at it (``activities.print_files.inspect``, in a thread), and judge
it against its product's print area (``domain.preflight.judge``).

A file server that does not answer, or answers 5xx, 408 or 429, is a retryable failure: Temporal
asks again with back-off until the order's ``preflight_give_up``. An answer that no retry
changes (a 404, a refused address, a file over ``MAX_FILE_BYTES``) is the check's result: the
file failed.

The same file is not fetched a thousand times: what inspecting a URL found is kept in this
process for ``PREFLIGHT_CACHE_TTL`` with the server's validators (ETag, Last-Modified), and a
later check asks the server only whether the file changed (a conditional GET: one download for
one design on many orders, per worker process). A server without validators is downloaded again,
and the bytes' sha256 decides whether the last inspection still holds. Checks of one URL wait
for each other, so orders that arrive together fetch it once.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.print_files import DEFAULT_MAX_PIXELS, inspect
from contracts.orders import FileCheck
from domain.catalog import Catalog
from domain.preflight import Check, CheckCode, FileFacts, FilePreflight, judge
from integrations.files import Fetched, FetchFailed, FileFetcher

log = logging.getLogger("printflow.preflight")

# URLs whose inspection one process keeps (the oldest go first).
CACHE_ENTRIES = 10_000


@dataclass(frozen=True)
class Seen:
    """What inspecting the bytes at a URL found, and how to ask the server if they changed."""

    facts: FileFacts
    sha256: str
    bytes: int
    etag: str | None
    last_modified: str | None
    until: float  # monotonic seconds


class PreflightActivities:
    def __init__(
        self,
        fetcher: FileFetcher,
        catalog: Catalog,
        *,
        cache_ttl: timedelta,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self._fetcher = fetcher
        self._catalog = catalog
        self._ttl = cache_ttl.total_seconds()
        self._max_pixels = max_pixels
        self._seen: OrderedDict[str, Seen] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    @activity.defn
    async def check_print_file(self, check: FileCheck) -> FilePreflight:
        try:
            seen = await self.look(check.url)
        except FetchFailed as err:
            if err.transient:
                # Retried by Temporal, with back-off, until the order gives up on the file.
                raise ApplicationError(err.message) from None
            return FilePreflight(
                status="failed", checks=[Check(code=CheckCode(err.code), message=err.message)]
            )
        product = None if check.product_uid is None else self._catalog.product(check.product_uid)
        checks = judge(seen.facts, product, check.area)
        log.info(
            "order %s item %s file %d: %s",
            check.order_id,
            check.item_reference_id,
            check.index + 1,
            ", ".join(c.code for c in checks) or "passed",
        )
        return FilePreflight(
            status="failed" if checks else "passed",
            checks=checks,
            sha256=seen.sha256,
            bytes=seen.bytes,
            type=seen.facts.type,
            pixels=seen.facts.pixels,
            dpi=seen.facts.dpi,
        )

    async def look(self, url: str) -> Seen:
        """What the bytes at ``url`` are: from this process's cache while the server says they
        have not changed, else downloaded and inspected."""
        if len(self._locks) > CACHE_ENTRIES:
            self._locks = {u: lock for u, lock in self._locks.items() if lock.locked()}
        async with self._locks.setdefault(url, asyncio.Lock()):
            return await self._look(url)

    async def _look(self, url: str) -> Seen:
        known = self._seen.get(url)
        if known is not None and known.until < time.monotonic():
            known = None
        with tempfile.TemporaryDirectory(prefix="printflow-preflight-") as workdir:
            if known is not None and (known.etag or known.last_modified):
                fetched = await self._fetcher.fetch_if_changed(
                    url, Path(workdir), etag=known.etag, last_modified=known.last_modified
                )
                if fetched is None:  # 304: the bytes inspected before
                    return known
            else:
                fetched = await self._fetcher.fetch(url, Path(workdir))
            if known is not None and fetched.sha256 == known.sha256:
                facts = known.facts
            else:
                facts = await asyncio.to_thread(inspect, fetched.path, max_pixels=self._max_pixels)
        return self._keep(url, fetched, facts)

    def _keep(self, url: str, fetched: Fetched, facts: FileFacts) -> Seen:
        seen = Seen(
            facts=facts,
            sha256=fetched.sha256,
            bytes=fetched.bytes,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
            until=time.monotonic() + self._ttl,
        )
        self._seen[url] = seen
        self._seen.move_to_end(url)
        while len(self._seen) > CACHE_ENTRIES:
            self._seen.popitem(last=False)
        return seen

"""The print files' checks of one order, held by ``OrderWorkflow`` (docs/preflight.md).

Every file whose ``preflight`` is ``pending`` (and every customer image, an ``image_url``
personalization value, whose check is) is checked by an activity on the preflight task
queue, all of them at once and beside whatever the order waits for (personalization, approval,
the cutoff). A check that cannot fetch its file is retried with back-off by Temporal for
``preflight_give_up``; then the file fails with ``file_unreachable``. When the last running
check ends, ``on_settled`` hears of it once: the workflow records that every file passed, or
puts the order on hold.

The checks run in the workflow's own tasks; a new run (continue-as-new) starts again those still
pending, whose results the worker's cache makes cheap. A result for a file that was replaced
meanwhile (``resolve-hold`` ``replace_files``) is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.preflight import PreflightActivities
    from contracts.orders import FileCheck
    from domain.orders import ItemState, OrderState
    from domain.preflight import Check, CheckCode, FilePreflight

# One attempt: the download (PREFLIGHT_FETCH_TIMEOUT bounds it in the activity) and the look.
ATTEMPT_TIMEOUT = timedelta(minutes=10)
# A file server that is down or rate-limits is asked again, less and less often.
CHECK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=0,
)
# What an order's hold description may say of its files' problems.
PROBLEMS_MAX_CHARS = 1500


@dataclass(frozen=True)
class Target:
    """One thing an order checks: a print file (``key`` its place in the item's files) or a
    customer's image (``key`` its personalization field)."""

    item: ItemState
    key: int | str
    url: str
    area: str
    preflight: FilePreflight | None

    @property
    def label(self) -> str:
        """``file 2``, ``customer image 'photo'``."""
        if isinstance(self.key, int):
            return f"file {self.key + 1}"
        return f"customer image {self.key!r}"

    @property
    def name(self) -> str:
        """The label, with the file's area and URL."""
        if isinstance(self.key, int):
            return f"{self.label} ({self.area}, {_short(self.url)})"
        return f"{self.label} ({_short(self.url)})"

    def set(self, result: FilePreflight) -> None:
        """Records ``result``, unless the file was replaced (or the value changed) meanwhile."""
        if isinstance(self.key, int):
            files = self.item.files
            if self.key < len(files) and files[self.key].url == self.url:
                files[self.key] = files[self.key].model_copy(update={"preflight": result})
        elif (self.item.personalization_values or {}).get(self.key) == self.url:
            self.item.image_checks = {**self.item.image_checks, self.key: result}


class FileChecks:
    def __init__(
        self,
        state: OrderState,
        *,
        task_queue: str | None,
        give_up: timedelta,
        on_settled: Callable[[], Awaitable[None]],
    ) -> None:
        self._state = state
        self._task_queue = task_queue
        self._give_up = give_up
        self._on_settled = on_settled
        # (item_reference_id, key, url) of the checks running in this run.
        self._running: set[tuple[str, int | str, str]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pending(self) -> bool:
        """Some file or customer image is not checked yet."""
        return any(_status(t) == "pending" for t in self._targets())

    def blocking(self) -> list[Target]:
        """What failed and the merchant has not said to print as it is."""
        return [t for t in self._targets() if t.preflight is not None and t.preflight.blocks]

    def start(self) -> None:
        """Starts a check for everything pending that has none running."""
        state = self._state
        for target in self._targets():
            item = target.item
            key = (item.item_reference_id, target.key, target.url)
            if _status(target) != "pending" or key in self._running:
                continue
            self._running.add(key)
            check = FileCheck(
                order_id=state.order_id,
                item_reference_id=item.item_reference_id,
                index=target.key if isinstance(target.key, int) else -1,
                url=target.url,
                product_uid=item.product_uid if isinstance(target.key, int) else None,
                area=target.area,
            )
            self._tasks.append(asyncio.create_task(self._check(key, target, check)))

    def proceed(self) -> None:
        """The merchant said to print what failed as it is."""
        for target in self.blocking():
            assert target.preflight is not None
            target.set(target.preflight.model_copy(update={"proceeded": True}))

    def problems(self) -> str:
        """What failed and each of its problems, in words, for the hold."""
        lines = []
        for target in self.blocking():
            assert target.preflight is not None
            what = "; ".join(c.message for c in target.preflight.checks) or "it failed its check"
            lines.append(f"item {target.item.item_reference_id}, {target.name}: {what}")
        text = "\n".join(lines)
        if len(text) > PROBLEMS_MAX_CHARS:
            text = text[: PROBLEMS_MAX_CHARS - 1] + "…"
        return text

    async def _check(
        self, key: tuple[str, int | str, str], target: Target, check: FileCheck
    ) -> None:
        what = f"file {check.index + 1}" if check.index >= 0 else f"image {check.area}"
        try:
            result: FilePreflight = await workflow.execute_activity_method(
                PreflightActivities.check_print_file,
                check,
                task_queue=self._task_queue,
                start_to_close_timeout=ATTEMPT_TIMEOUT,
                schedule_to_close_timeout=self._give_up,
                retry_policy=CHECK_RETRY,
                summary=f"check {check.item_reference_id} {what}",
            )
        except ActivityError as err:
            # Given up (``preflight_give_up``): the last attempt's failure says why.
            why = _last_reason(err)
            message = f"the file could not be fetched within {_duration(self._give_up)}"
            result = FilePreflight(
                status="failed",
                checks=[
                    Check(
                        code=CheckCode.FILE_UNREACHABLE,
                        message=(f"{message}: {why}" if why else message)[:500],
                    )
                ],
            )
        self._running.discard(key)
        target.set(result)
        if not self._running and not self.pending:
            await self._on_settled()

    def _targets(self) -> list[Target]:
        out = []
        for item in self._state.items:
            for index, file in enumerate(item.files):
                out.append(Target(item, index, file.url, file.type, file.preflight))
            values = item.personalization_values or {}
            for name, check in item.image_checks.items():
                if name in values:
                    out.append(Target(item, name, values[name], name, check))
        return out


def _last_reason(err: BaseException) -> str | None:
    """The message of the innermost application failure under ``err`` (an activity's last
    attempt, under the time-out that ended its retries)."""
    reason, cause = None, err.__cause__ or getattr(err, "cause", None)
    while cause is not None:
        if isinstance(cause, ApplicationError):
            reason = cause.message
        cause = cause.__cause__ or getattr(cause, "cause", None)
    return reason


def _status(target: Target) -> str | None:
    return target.preflight.status if target.preflight is not None else None


def _short(url: str, limit: int = 80) -> str:
    return url if len(url) <= limit else url[: limit - 1] + "…"


def _duration(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    if minutes >= 120 and minutes % 60 == 0:
        return f"{minutes // 60} hours"
    return f"{minutes} minutes" if minutes != 1 else "1 minute"

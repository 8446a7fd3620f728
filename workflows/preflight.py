"""The print files' checks of one order, held by ``OrderWorkflow`` (docs/preflight.md).

Every file whose ``preflight`` is ``pending`` is checked by an activity on the preflight task
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
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.preflight import PreflightActivities
    from contracts.orders import FileCheck
    from domain.orders import FileState, OrderState
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
        # (item_reference_id, index, url) of the checks running in this run.
        self._running: set[tuple[str, int, str]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pending(self) -> bool:
        """Some file is not checked yet."""
        return any(_status(f) == "pending" for _, _, f in self._files())

    def blocking(self) -> list[tuple[str, int, FileState]]:
        """The files that failed and that the merchant has not said to print as they are."""
        return [(ref, i, f) for ref, i, f in self._files() if f.preflight and f.preflight.blocks]

    def start(self) -> None:
        """Starts a check for every pending file that has none running."""
        state = self._state
        for item in state.items:
            for index, file in enumerate(item.files):
                key = (item.item_reference_id, index, file.url)
                if _status(file) != "pending" or key in self._running:
                    continue
                self._running.add(key)
                check = FileCheck(
                    order_id=state.order_id,
                    item_reference_id=item.item_reference_id,
                    index=index,
                    url=file.url,
                    product_uid=item.product_uid,
                    area=file.type,
                )
                self._tasks.append(asyncio.create_task(self._check(key, check)))

    def proceed(self) -> None:
        """The merchant said to print the failed files as they are."""
        for _, _, file in self.blocking():
            assert file.preflight is not None
            file.preflight = file.preflight.model_copy(update={"proceeded": True})

    def problems(self) -> str:
        """The failed files and each of their problems, in words, for the hold."""
        lines = []
        for ref, index, file in self.blocking():
            assert file.preflight is not None
            what = "; ".join(c.message for c in file.preflight.checks) or "it failed its check"
            lines.append(f"item {ref}, file {index + 1} ({file.type}, {_short(file.url)}): {what}")
        text = "\n".join(lines)
        if len(text) > PROBLEMS_MAX_CHARS:
            text = text[: PROBLEMS_MAX_CHARS - 1] + "…"
        return text

    async def _check(self, key: tuple[str, int, str], check: FileCheck) -> None:
        try:
            result: FilePreflight = await workflow.execute_activity_method(
                PreflightActivities.check_print_file,
                check,
                task_queue=self._task_queue,
                start_to_close_timeout=ATTEMPT_TIMEOUT,
                schedule_to_close_timeout=self._give_up,
                retry_policy=CHECK_RETRY,
                summary=f"check {check.item_reference_id} file {check.index + 1}",
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
        self._apply(key, result)
        if not self._running and not self.pending:
            await self._on_settled()

    def _apply(self, key: tuple[str, int, str], result: FilePreflight) -> None:
        ref, index, url = key
        for item in self._state.items:
            if item.item_reference_id != ref or index >= len(item.files):
                continue
            file = item.files[index]
            if file.url == url and _status(file) == "pending":
                item.files[index] = file.model_copy(update={"preflight": result})

    def _files(self) -> list[tuple[str, int, FileState]]:
        return [
            (item.item_reference_id, index, file)
            for item in self._state.items
            for index, file in enumerate(item.files)
        ]


def _last_reason(err: BaseException) -> str | None:
    """The message of the innermost application failure under ``err`` (an activity's last
    attempt, under the time-out that ended its retries)."""
    reason, cause = None, err.__cause__ or getattr(err, "cause", None)
    while cause is not None:
        if isinstance(cause, ApplicationError):
            reason = cause.message
        cause = cause.__cause__ or getattr(cause, "cause", None)
    return reason


def _status(file: FileState) -> str | None:
    return file.preflight.status if file.preflight is not None else None


def _short(url: str, limit: int = 80) -> str:
    return url if len(url) <= limit else url[: limit - 1] + "…"


def _duration(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    if minutes >= 120 and minutes % 60 == 0:
        return f"{minutes // 60} hours"
    return f"{minutes} minutes" if minutes != 1 else "1 minute"

"""Activities that keep failing are named, so a person looks before the retries go on for days.

An attempt that fails at or beyond ``threshold`` logs one warning (activity, workflow, attempt,
error type) and counts ``printflow_activity_failing_attempts`` on the worker's metrics endpoint,
labelled by activity type. Failures that retrying cannot fix are non-retryable where they are
raised (the order goes on hold for a person); this watches the ones that might still recover.
"""

from __future__ import annotations

import logging
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

log = logging.getLogger("printflow.activities")

METRIC = "printflow_activity_failing_attempts"


class AttemptsAlert(Interceptor):
    def __init__(self, threshold: int) -> None:
        self._threshold = threshold

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self._threshold)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, threshold: int) -> None:
        super().__init__(next)
        self._threshold = threshold

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except Exception as err:
            info = activity.info()
            if info.attempt >= self._threshold:
                log.warning(
                    "activity %s of %s failed attempt %d (%s); it keeps being retried",
                    info.activity_type,
                    info.workflow_id,
                    info.attempt,
                    type(err).__name__,
                )
                activity.metric_meter().create_counter(
                    METRIC, "activity attempts that failed at or past the alert threshold"
                ).add(1, {"activity_type": info.activity_type})
            raise

"""printflow's settings: one ``BaseSettings`` read by the API, the worker and the dev tools.

Every variable carries the ``PRINTFLOW_`` prefix (``PRINTFLOW_DATABASE_URL`` …). Durations accept
seconds (``900``) or ISO 8601 (``PT15M``, ``P7D``).
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _seconds_or_iso(value: Any) -> Any:
    """``900`` and ``900.5`` are seconds; anything else goes to pydantic (ISO 8601, ``PT15M``)."""
    if isinstance(value, str):
        try:
            return timedelta(seconds=float(value))
        except ValueError:
            return value
    return value


Duration = Annotated[timedelta, BeforeValidator(_seconds_or_iso)]

BUNDLED_FACILITIES = Path(__file__).resolve().parent / "domain" / "facilities.json"
BUNDLED_SUPPORT_FILE = Path(__file__).resolve().parent / "domain" / "support.json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRINTFLOW_", extra="ignore")

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "printflow"
    database_url: str = "sqlite:///.data/printflow.db"
    public_base_url: str = "http://localhost:8000"
    admin_token: SecretStr | None = None
    # Signs the support console's session cookies (``/support``). Unset: a random secret per
    # API process, so sessions end when it restarts and work only on the process that made
    # them; set it (the same value everywhere) when more than one API process serves.
    session_secret: SecretStr | None = None

    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    mail_from: str = "printflow@localhost"

    personalization_email_delay: Duration = timedelta(minutes=15)
    personalization_link_ttl: Duration = timedelta(days=7)
    facilities_file: Path = BUNDLED_FACILITIES
    # The support desk: calendar, response targets, addresses (DESIGN.md "Support").
    support_file: Path = BUNDLED_SUPPORT_FILE
    # How long a write waits for the order's workflow before answering 503 order_busy.
    update_timeout: Duration = timedelta(seconds=10)

    # The perimeter (docs/api.md "Limits", docs/deploying.md): larger bodies are a 413 before
    # they are read; each credential gets RATE_LIMIT with bursts up to RATE_LIMIT_BURST ("off":
    # no limit), per API process. A rotated API key or webhook secret keeps working this long.
    max_body_bytes: int = 1048576
    rate_limit: Annotated[
        str, Field(pattern=r"(?i)^\s*(off|0|\d+\s*/\s*(s|sec|second|m|min|minute|h|hour))\s*$")
    ] = "20/s"
    rate_limit_burst: int = 40
    key_rotation_overlap: Duration = timedelta(hours=24)
    # ``GET /metrics`` wants ``Authorization: Bearer <METRICS_TOKEN>``; unset, it answers 403.
    # Open orders by status are counted in the background at most this often, never per scrape.
    metrics_token: SecretStr | None = None
    metrics_refresh_interval: Duration = timedelta(seconds=15)

    # Not in the public contract; operational knobs with safe defaults.
    print_submit_timeout: Duration = timedelta(seconds=30)
    hold_reminder_interval: Duration = timedelta(days=1)
    hold_timeout: Duration = timedelta(days=7)
    # An order shipped this long ago with no delivery event is closed as shipped.
    delivery_timeout: Duration = timedelta(days=30)
    # A created order whose workflow has not started after this long is started by the
    # relay's sweep (normally the request that created it starts it at once).
    start_sweep_after: Duration = timedelta(seconds=10)
    # How long a worker may take over one workflow task before the server gives it to another.
    workflow_task_timeout: Duration = timedelta(seconds=10)
    # An activity failing this many attempts in a row is logged and counted, by name.
    activity_attempts_alert: int = 5

    # Running it (docs/deploying.md). Production refuses to start without an admin token.
    env: Literal["development", "production"] = "development"
    log_format: Literal["text", "json"] = "text"
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"],
        BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
    ] = "INFO"
    # The worker's Prometheus endpoint (Temporal SDK metrics) on 0.0.0.0; 0 turns it off.
    worker_metrics_port: int = 9464
    # Concurrency of one worker process; the sticky cache keeps this many workflows in memory
    # (about 240 KB each: 500 keep a worker under 300 MB however many orders wait).
    worker_max_concurrent_activities: int = 100
    worker_max_concurrent_workflow_tasks: int = 100
    worker_max_cached_workflows: int = 500
    # On SIGTERM in-flight activities get this long to finish; at least print_submit_timeout.
    worker_shutdown_grace: Duration = timedelta(seconds=30)


@lru_cache
def get_settings() -> Settings:
    return Settings()

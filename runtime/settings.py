"""printflow's settings: one ``BaseSettings`` read by the API, the worker and the dev tools.

Every variable carries the ``PRINTFLOW_`` prefix (``PRINTFLOW_DATABASE_URL`` …). Durations accept
seconds (``900``) or ISO 8601 (``PT15M``, ``P7D``).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
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

PAYLOAD_KEY_BYTES = 32
# The personalization link secret makes 256-bit tokens: no shorter.
MIN_LINK_SECRET_BYTES = 32
# The console's session secret: shorter cannot sign (every console page would fail);
# production wants a full 256 bits.
MIN_SESSION_SECRET_BYTES = 16
MIN_PRODUCTION_SESSION_SECRET_BYTES = 32


def parse_payload_keys(value: str) -> list[tuple[str, bytes]]:
    """``id:base64key,...`` → ``[(id, key), ...]``, the encrypting key first.

    Ids are letters, digits, ``.``, ``_`` and ``-``; keys are 256 bits in standard or URL-safe
    base64 (``openssl rand -base64 32``). Errors name the entry, never the key.
    """
    keys: list[tuple[str, bytes]] = []
    for n, entry in enumerate(value.split(","), 1):
        key_id, sep, encoded = entry.strip().partition(":")
        key_id = key_id.strip()
        if not sep or not key_id or not re.fullmatch(r"[A-Za-z0-9._-]+", key_id):
            raise ValueError(
                f"entry {n} is not 'id:base64key' (ids: letters, digits, '.', '_', '-'); "
                "expected e.g. k1:$(openssl rand -base64 32)"
            )
        try:
            encoded = encoded.strip()
            key = base64.b64decode(
                encoded.replace("-", "+").replace("_", "/") + "=" * (-len(encoded) % 4),
                validate=True,
            )
        except (binascii.Error, ValueError):
            raise ValueError(f"key {key_id!r} is not base64") from None
        if len(key) != PAYLOAD_KEY_BYTES:
            raise ValueError(
                f"key {key_id!r} has {len(key) * 8} bits; AES-256 needs {PAYLOAD_KEY_BYTES * 8}"
            )
        if any(key_id == known for known, _ in keys):
            raise ValueError(f"key id {key_id!r} appears twice")
        keys.append((key_id, key))
    return keys


BUNDLED_FACILITIES = Path(__file__).resolve().parents[1] / "domain" / "facilities.json"
BUNDLED_SUPPORT_FILE = Path(__file__).resolve().parents[1] / "domain" / "support.json"
BUNDLED_CATALOG = Path(__file__).resolve().parents[1] / "domain" / "catalog.json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRINTFLOW_", extra="ignore")

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    # TLS to Temporal's frontend (docs/deploying.md "Temporal with mTLS"): the client
    # certificate and key (PEM files) make it mutual TLS; the CA verifies the server (unset:
    # the system's CAs); the server name overrides the one the certificate is checked against.
    # Any of them turns TLS on; ``temporal_tls`` turns it on with none of them.
    temporal_tls: bool = False
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_tls_server_name: str | None = None
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
    # Makes personalization link tokens from the links' ids (HMAC), so a retried e-mail sends
    # the same link. The same value on every worker; unset: a random one per worker process.
    link_secret: SecretStr | None = None

    personalization_email_delay: Duration = timedelta(minutes=15)
    personalization_link_ttl: Duration = timedelta(days=7)
    facilities_file: Path = BUNDLED_FACILITIES
    # Products, prices and shipping methods (docs/catalog.md, "The catalog file").
    catalog_file: Path = BUNDLED_CATALOG
    # The support desk: calendar, response targets, addresses (docs/support.md, "The support file").
    support_file: Path = BUNDLED_SUPPORT_FILE
    # How long a write waits for the order's workflow before answering 503 order_busy: longer
    # than WORKFLOW_TASK_TIMEOUT, so one stalled workflow task (given to another worker after
    # that long) does not already answer 503.
    update_timeout: Duration = timedelta(seconds=15)
    # Encrypts every payload sent to Temporal: ``id:base64key,...``, the first encrypts
    # (``parse_payload_keys``; docs/deploying.md "Encrypted payloads"). Unset: plain payloads.
    payload_keys: SecretStr | None = None
    # Origins (comma-separated) of Temporal Web UIs allowed to call ``/codec`` from a browser.
    codec_cors_origins: str = ""
    # Webhooks may go to http and to private addresses (make run, tests); never in production.
    webhook_allow_private: bool = False

    # Print files are checked before the cutoff (docs/preflight.md): ``off`` marks them
    # ``skipped``, for platforms that check files upstream. Files are fetched over https from
    # public addresses only (``PREFLIGHT_ALLOW_PRIVATE``: http and private ones too, for
    # development and tests; never in production), at most MAX_FILE_BYTES each; a file still
    # unreachable after PREFLIGHT_GIVE_UP holds its order; a file's inspection is reused for
    # PREFLIGHT_CACHE_TTL while its server says it has not changed.
    preflight: Literal["on", "off"] = "on"
    preflight_allow_private: bool = False
    preflight_concurrency: int = Field(default=8, ge=1, le=256)
    preflight_give_up: Duration = timedelta(minutes=30)
    preflight_cache_ttl: Duration = timedelta(hours=24)
    max_file_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    # One download of one file, connect to last byte.
    preflight_fetch_timeout: Duration = timedelta(minutes=5)

    # The perimeter (docs/api.md "Limits", docs/deploying.md): larger bodies are a 413 before
    # they are read; each credential gets RATE_LIMIT with bursts up to RATE_LIMIT_BURST ("off":
    # no limit), per API process. A rotated API key or webhook secret keeps working this long.
    max_body_bytes: int = 1048576
    rate_limit: Annotated[
        str, Field(pattern=r"(?i)^\s*(off|0|\d+\s*/\s*(s|sec|second|m|min|minute|h|hour))\s*$")
    ] = "20/s"
    rate_limit_burst: int = 40
    # Where the limits count: "memory://" (each API process alone) or "redis://host:6379"
    # (every API process on that Redis together).
    rate_limit_storage: Annotated[
        str, Field(pattern=r"^(memory://|(redis|rediss|redis\+unix)://\S+)$")
    ] = "memory://"
    # Failed authentications (a 401, a wrong admin token, an unknown link token) per client
    # address: beyond this, failures are answered 429; a valid credential is never refused.
    auth_failure_limit: Annotated[
        str, Field(pattern=r"(?i)^\s*(off|0|\d+\s*/\s*(s|sec|second|m|min|minute|h|hour))\s*$")
    ] = "20/minute"
    key_rotation_overlap: Duration = timedelta(hours=24)
    # Idempotency-Key answers (``idempotent_requests``) and the outbox rows of started workflows
    # are deleted this long after they were made; answers over IDEMPOTENCY_MAX_ANSWER_BYTES are
    # not kept at all (a retry runs again, and finds what the first run created).
    idempotency_ttl: Duration = timedelta(hours=24)
    idempotency_max_answer_bytes: int = 65536
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
    # An order in production (or printed) with no report from its facility for this long is
    # alerted and its facility asked for the job's state (docs/facility-api.md).
    production_report_timeout: Duration = timedelta(days=3)
    # At most one e-mail to a merchant about a contact's customer messages this often (the
    # first at once, the next ones counted in one e-mail); carried in new contacts' input.
    contact_notify_interval: Duration = timedelta(minutes=15)
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
    # Workflow tasks run on the process's CPU: beyond a few per core they only wait there, with
    # the task timeout running (docs/performance.md, "Workflow tasks per worker").
    worker_max_concurrent_workflow_tasks: int = 10
    worker_max_cached_workflows: int = 500
    # On SIGTERM in-flight activities get this long to finish; at least print_submit_timeout.
    worker_shutdown_grace: Duration = timedelta(seconds=30)

    @field_validator("session_secret")
    @classmethod
    def _check_session_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None  # unset: a random secret per API process
        if len(value.get_secret_value().encode()) < MIN_SESSION_SECRET_BYTES:
            raise ValueError(
                f"needs at least {MIN_SESSION_SECRET_BYTES} bytes (production: "
                f"{MIN_PRODUCTION_SESSION_SECRET_BYTES}); e.g. openssl rand -hex 32"
            )
        return value

    @model_validator(mode="after")
    def _check_temporal_tls(self) -> Settings:
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError(
                "PRINTFLOW_TEMPORAL_TLS_CERT and PRINTFLOW_TEMPORAL_TLS_KEY go together "
                "(the client certificate and its key)"
            )
        return self

    def temporal_tls_on(self) -> bool:
        return self.temporal_tls or any(
            v is not None
            for v in (
                self.temporal_tls_cert,
                self.temporal_tls_ca,
                self.temporal_tls_server_name,
            )
        )

    @field_validator("link_secret")
    @classmethod
    def _check_link_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None  # unset: a random secret per worker process
        if len(value.get_secret_value().encode()) < MIN_LINK_SECRET_BYTES:
            raise ValueError(
                f"needs at least {MIN_LINK_SECRET_BYTES} bytes; e.g. openssl rand -hex 32"
            )
        return value

    @field_validator("payload_keys")
    @classmethod
    def _check_payload_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            parse_payload_keys(value.get_secret_value())
            return value
        return None

    def payload_key_list(self) -> list[tuple[str, bytes]]:
        """The parsed ``payload_keys`` (empty: no encryption)."""
        if self.payload_keys is None:
            return []
        return parse_payload_keys(self.payload_keys.get_secret_value())

    def codec_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.codec_cors_origins.split(",") if o.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()

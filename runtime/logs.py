"""Process logging for the API and the worker: text for people, JSON for machines, no secrets.

``configure_logging(settings)`` is called once per process (worker ``main()``, the API app that
uvicorn loads, ``python migrate.py``); tests never call it, so pytest's capture stays as is.

- ``PRINTFLOW_LOG_FORMAT=json``: one JSON object a line, on stderr. Lines logged from order work
  (``workflow.logger``, ``activity.logger`` and the SDK's own lines about a task) carry
  ``workflow_id``/``order_id`` and ``run_id`` as fields, taken from the ``temporal_workflow`` /
  ``temporal_activity`` dicts the Temporal SDK puts on the record.
- ``text`` (default): one line per record; the SDK appends the same details to the message.

Secrets are not logged in the first place (workflow inputs carry no facility token, keys are
stored hashed, the access log shows route templates such as ``/p/{token}``). As a safety net,
``RedactingFilter`` masks anything that looks like one of ours in every line before it is
written: merchant API keys (``pf_…``), agent tokens (``pfagt_…``), webhook secrets
(``whsec_…``), the token in every token-bearing path (``TOKEN_PATH_PREFIXES``: ``/p/…``,
``/v1/personalization/…``, ``/c/…``, the portal's ``/portal/invite/…`` and ``/portal/reset/…``),
bearer tokens, passwords in URLs, and the configured
secrets themselves (admin token, SMTP password, facility API tokens). Code that logs a request's
path masks it itself too (``mask_token_path``), so no handler depends on the filter alone.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from runtime.settings import Settings

REDACTED = "[redacted]"

_TOKEN = r"[A-Za-z0-9_\-]{16,}"

# Every path whose first segment after the prefix is a token that alone grants access (a link
# in an e-mail): the personalization page, its JSON, the customer's conversation page. A new
# route of that kind adds its prefix here; tests/ops/test_logging.py checks the app's routes.
TOKEN_PATH_PREFIXES = ("/p/", "/v1/personalization/", "/c/", "/portal/invite/", "/portal/reset/")
# The segment whatever its length or spelling (a 404 for a mistyped token shows it too), but
# not a route template's ``{token}``.
_TOKEN_PATH = re.compile(
    "(" + "|".join(re.escape(p) for p in TOKEN_PATH_PREFIXES) + r")(?!\{)[^/\s\"'?#<>]+"
)


def mask_token_path(path: str) -> str:
    """``path`` (or any text holding paths) with the token of every token-bearing path masked:
    ``/c/abc…/`` becomes ``/c/[redacted]/``."""
    return _TOKEN_PATH.sub(rf"\1{REDACTED}", path)


_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"\bpf_{_TOKEN}"), f"pf_{REDACTED}"),
    (re.compile(rf"\bpfagt_{_TOKEN}"), f"pfagt_{REDACTED}"),
    (re.compile(rf"\bwhsec_{_TOKEN}"), f"whsec_{REDACTED}"),
    (_TOKEN_PATH, rf"\1{REDACTED}"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), rf"\1{REDACTED}"),
    (
        re.compile(
            r"(?i)\b(x-api-key|x-admin-token|x-agent-token)([\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+"
        ),
        rf"\1\2{REDACTED}",
    ),
    # user:password@host in any URL (database URLs above all).
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^:/@\s]+:)[^@\s]+@"), rf"\1{REDACTED}@"),
)

# Literal secrets shorter than this are not masked: "a" or "1234" would wreck every line.
_MIN_SECRET = 8

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_literal: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears in a log line from now on."""
    global _literal
    if not value or len(value) < _MIN_SECRET:
        return
    with _secrets_lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret that contains another is masked whole.
        alternatives = sorted(_secrets, key=len, reverse=True)
        _literal = re.compile("|".join(re.escape(s) for s in alternatives))


def register_settings_secrets(settings: Settings) -> None:
    # Not the database password: it only ever shows inside its URL, which the URL pattern masks,
    # and a short one ("printflow") would mask every logger name.
    for secret in (settings.admin_token, settings.smtp_password):
        if secret is not None:
            register_secret(secret.get_secret_value())


def redact(text: str) -> str:
    """``text`` with every secret we know of, or that looks like one of ours, masked."""
    literal = _literal
    if literal is not None:
        text = literal.sub(REDACTED, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# Not copied into JSON: the SDK's context dicts (turned into fields below), uvicorn's ANSI copy.
_SKIP = frozenset(
    {"temporal_workflow", "temporal_activity", "workflow_info", "activity_info", "color_message"}
)


def first_line(err: BaseException) -> str:
    """An error in one line, for a log or a probe's answer; secrets masked."""
    cause = getattr(err, "orig", None) or err  # SQLAlchemy wraps the driver's error
    lines = str(cause).strip().splitlines()
    # Driver messages may quote a connection string.
    return redact(lines[0][:200]) if lines else type(cause).__name__


class RedactingFilter(logging.Filter):
    """Rewrites each record with its secrets masked, before any formatter sees it."""

    _exceptions = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logging's to report
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exceptions.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


def temporal_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The order (workflow) and run a record belongs to, from the SDK's ``extra`` dicts."""
    fields: dict[str, Any] = {}
    workflow = getattr(record, "temporal_workflow", None)
    activity = getattr(record, "temporal_activity", None)
    if isinstance(workflow, dict):
        fields["workflow_id"] = workflow.get("workflow_id")
        fields["run_id"] = workflow.get("run_id")
        fields["workflow_type"] = workflow.get("workflow_type")
        if "update_name" in workflow:
            fields["update"] = workflow["update_name"]
    if isinstance(activity, dict):
        fields["workflow_id"] = activity.get("workflow_id")
        fields["run_id"] = activity.get("workflow_run_id")
        fields["workflow_type"] = activity.get("workflow_type")
        fields["activity"] = activity.get("activity_type")
        fields["attempt"] = activity.get("attempt")
    if fields.get("workflow_type") == "OrderWorkflow":
        # Workflow id = order id: the field an operator greps for.
        fields["order_id"] = fields["workflow_id"]
    return {k: v for k, v in fields.items() if v is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, order/run ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update(temporal_fields(record))
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _SKIP and not key.startswith("_"):
                doc.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        return json.dumps(doc, default=str, ensure_ascii=False)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the call, not at construction."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


_OURS = "_printflow_handler"


def build_handler(log_format: str) -> logging.Handler:
    handler = _Stderr()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    setattr(handler, _OURS, True)
    return handler


def configure_logging(settings: Settings, extra_secrets: Iterable[str] = ()) -> None:
    """Sends every logger of this process through one redacting handler; safe to call again."""
    from temporalio import activity, workflow

    register_settings_secrets(settings)
    for secret in extra_secrets:
        register_secret(secret)

    root = logging.getLogger()
    for handler in list(root.handlers):
        # Ours from an earlier call, or logging.basicConfig's; never a test runner's.
        if getattr(handler, _OURS, False) or type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    root.addHandler(build_handler(settings.log_format))
    root.setLevel(settings.log_level)

    # uvicorn installs handlers of its own before it loads the app: route its lines through
    # ours. Its access log shows raw paths (personalization tokens); api.metrics writes one
    # with route templates instead.
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
    # One line per outgoing HTTP request is noise; failures are logged by whoever called.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    # Alembic narrates every start ("Context impl …"); db.migrate logs what changed instead.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)

    # In JSON the ids are fields; text lines keep the SDK's "({'workflow_id': …})" suffix.
    text = settings.log_format == "text"
    workflow.logger.workflow_info_on_message = text
    activity.logger.activity_info_on_message = text

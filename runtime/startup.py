"""How a printflow process starts, and how it refuses a broken configuration.

A process (the API that uvicorn loads, ``python worker.py``, ``python migrate.py``) reads its
settings, configures logging and checks what it depends on before doing anything else. A broken
configuration stops it with one line on stderr and status 1, never a traceback::

    printflow: configuration error: facilities file x.json: facility 'oslo': unknown time zone …

What is checked (``check_config``):
- the settings themselves parse (``PRINTFLOW_ENV=prod`` names the variable and what it allows);
- the facilities file loads (every facility, time zone and country);
- the catalog file loads (every product, price and shipping method), and the facilities name
  only products and shipping methods it has, and holiday countries ``holidays`` knows;
- every facility has its own ``api_token`` (in any environment);
- the TLS files for Temporal (``PRINTFLOW_TEMPORAL_TLS_*``), when set, read as PEM;
- production (``PRINTFLOW_ENV=production``, ``check_production``) has an admin token of at
  least 16 characters, a facilities file of its own, payload keys, a session secret of at
  least 32 bytes and an https ``PUBLIC_BASE_URL``, sends SMTP credentials only over STARTTLS
  and does not allow webhooks to private addresses;
- the database answers ``SELECT 1`` and the Temporal frontend accepts a connection, each within a
  few seconds.

uvicorn runs the API's start-up inside its lifespan protocol, where an exception would be printed
with its traceback; ``StartupGate`` runs the checks there and reports a failure as a plain
``lifespan.startup.failed``, after which uvicorn exits with its start-up failure status (3).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from db.engine import async_url, create_engine, ping
from domain.catalog import CatalogError, load_catalog
from domain.facilities import Facilities, FacilitiesError, load_facilities
from domain.quotes import check_offers
from runtime.logs import configure_logging, first_line, redact, register_secret
from runtime.settings import (
    BUNDLED_FACILITIES,
    MIN_PRODUCTION_SESSION_SECRET_BYTES,
    Settings,
    get_settings,
)

log = logging.getLogger("printflow.startup")

REACH_TIMEOUT = 5.0
MIN_ADMIN_TOKEN = 16

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ConfigError(Exception):
    """A configuration this process cannot run with; the message is one line naming the cause."""

    def report(self) -> None:
        print(f"printflow: configuration error: {redact(str(self))}", file=sys.stderr, flush=True)

    def exit(self) -> int:
        """Reports the error; returns the exit status for ``sys.exit``."""
        self.report()
        return 1


def load_settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as err:
        raise ConfigError(_settings_problems(err)) from None


def _settings_problems(err: ValidationError) -> str:
    """``PRINTFLOW_ENV: Input should be …`` for each problem; never the value (it may be secret)."""
    problems = []
    for item in err.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        name = f"PRINTFLOW_{field.upper()}" if field else "settings"
        problems.append(f"{name}: {str(item['msg']).removeprefix('Value error, ')}")
    return "; ".join(problems)


def configure_process() -> Settings:
    """Settings and logging for this process; ``ConfigError`` when the settings do not parse."""
    cap_malloc_arenas()
    settings = load_settings()
    configure_logging(settings)
    return settings


# glibc's malloc.h: the mallopt() parameter that caps the number of arenas.
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Lets glibc's malloc use at most ``arenas`` arenas in this process, as
    ``MALLOC_ARENA_MAX=2`` would, unless ``MALLOC_ARENA_MAX`` is set (then it already decided).

    glibc gives each new thread that allocates an arena of its own, up to eight per core. The
    API starts threads all the time (aiosqlite's, one per connection; the executor's), and the
    free pieces left between live allocations across many arenas cannot be handed back: its
    resident memory climbed about 0.4 MB a minute for as long as a soak ran. With two arenas
    it stays flat (docs/performance.md, "What grows in the API"). Called before the process
    starts any thread; a no-op where the C library is not glibc. Returns whether it capped.
    """
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl): nothing to cap
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


def freeze_startup_heap() -> int:
    """Takes what this process holds once it has started (its modules, classes, routes, models,
    pools: some 200,000 objects in the API, 165,000 in the worker) out of the cyclic garbage
    collector's rounds for good; returns how many objects that is.

    A full collection visits every object the collector tracks, and every request and workflow
    task of the process waits meanwhile (it holds the interpreter lock): 90 to 120 ms in a
    started API on this machine, each time. What start-up made lives as long as the process, so
    visiting it again never frees anything. Frozen (``gc.freeze``), it is not visited any more:
    a full collection visits what the process made since. The price: a start-up object that
    becomes garbage in a reference cycle later is never freed. Called once, when start-up is
    done, after a collection that frees what start-up left behind (docs/performance.md,
    "Garbage collection").
    """
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("started: %d objects kept out of the garbage collector's rounds", frozen)
    return frozen


def check_static(settings: Settings) -> Facilities:
    """What can be checked without the network; returns the loaded facilities."""
    try:
        facilities = load_facilities(settings.facilities_file)
    except FacilitiesError as err:
        raise ConfigError(str(err)) from None
    check_catalog(settings, facilities)
    for facility in facilities:
        register_secret(facility.api_token.get_secret_value())
    if settings.env == "production":
        check_production(settings)
    check_temporal_tls(settings)
    try:
        async_url(settings.database_url)
    except Exception as err:  # noqa: BLE001 - any unparsable URL is the same mistake
        raise ConfigError(f"PRINTFLOW_DATABASE_URL: {err}") from None
    return facilities


def check_catalog(settings: Settings, facilities: Facilities) -> None:
    """The catalog file loads and the facilities file fits it, or one line names the fault
    (``facilities file x.json: facility 'oslo': products: 'mug' is not in the catalog``)."""
    try:
        catalog = load_catalog(settings.catalog_file)
    except CatalogError as err:
        raise ConfigError(str(err)) from None
    try:
        check_offers(catalog, facilities)
    except CatalogError as err:
        raise ConfigError(
            f"facilities file {settings.facilities_file}: {err} "
            f"(catalog file {settings.catalog_file})"
        ) from None


def check_production(settings: Settings) -> None:
    """Production refuses what only development may use: the bundled facilities, missing or
    short secrets, links over http, mail credentials in clear text, webhooks to private
    addresses."""
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if not token:
        raise ConfigError(
            "PRINTFLOW_ADMIN_TOKEN is required when PRINTFLOW_ENV=production "
            "(it guards /v1/admin/*); set it to a long random string"
        )
    if len(token) < MIN_ADMIN_TOKEN:
        raise ConfigError(
            f"PRINTFLOW_ADMIN_TOKEN has {len(token)} characters; production needs at least "
            f"{MIN_ADMIN_TOKEN} (e.g. openssl rand -hex 32)"
        )
    if settings.facilities_file.resolve() == BUNDLED_FACILITIES:
        raise ConfigError(
            "PRINTFLOW_FACILITIES_FILE is required when PRINTFLOW_ENV=production: the bundled "
            "facilities file is for development (its tokens are public)"
        )
    if not settings.payload_keys or not settings.payload_keys.get_secret_value():
        raise ConfigError(
            "PRINTFLOW_PAYLOAD_KEYS is required when PRINTFLOW_ENV=production "
            "(it encrypts what the workflows store in Temporal)"
        )
    if not settings.session_secret or not settings.session_secret.get_secret_value():
        raise ConfigError(
            "PRINTFLOW_SESSION_SECRET is required when PRINTFLOW_ENV=production "
            "(it signs the support console's cookies); set it to a long random string"
        )
    secret_bytes = len(settings.session_secret.get_secret_value().encode())
    if secret_bytes < MIN_PRODUCTION_SESSION_SECRET_BYTES:
        raise ConfigError(
            f"PRINTFLOW_SESSION_SECRET has {secret_bytes} bytes; production needs at least "
            f"{MIN_PRODUCTION_SESSION_SECRET_BYTES} (e.g. openssl rand -hex 32)"
        )
    if not settings.link_secret:
        raise ConfigError(
            "PRINTFLOW_LINK_SECRET is required when PRINTFLOW_ENV=production (the personalization "
            "links are derived from it; the same value on every worker, or a retried e-mail "
            "sends a new link and the one the merchant forwarded stops working)"
        )
    if urlsplit(settings.public_base_url).scheme != "https":
        raise ConfigError(
            f"PRINTFLOW_PUBLIC_BASE_URL must be an https:// address when PRINTFLOW_ENV=production "
            f"(got {settings.public_base_url!r}): the links in e-mails carry tokens, and the "
            "console's cookies are Secure only over https"
        )
    if (settings.smtp_username or settings.smtp_password) and not settings.smtp_starttls:
        raise ConfigError(
            "PRINTFLOW_SMTP_USERNAME/PASSWORD are set without PRINTFLOW_SMTP_STARTTLS=true: "
            "production does not send mail credentials in clear text"
        )
    if settings.webhook_allow_private:
        raise ConfigError(
            "PRINTFLOW_WEBHOOK_ALLOW_PRIVATE=true is for development only: production sends "
            "webhooks only to public https addresses"
        )
    if settings.preflight_allow_private:
        raise ConfigError(
            "PRINTFLOW_PREFLIGHT_ALLOW_PRIVATE=true is for development only: production fetches "
            "print files only from public https addresses"
        )


def check_temporal_tls(settings: Settings) -> None:
    """The TLS files for Temporal exist and read as PEM, so a typo stops the process here with
    the setting's name rather than in the middle of a handshake."""
    for name, path in (
        ("PRINTFLOW_TEMPORAL_TLS_CERT", settings.temporal_tls_cert),
        ("PRINTFLOW_TEMPORAL_TLS_KEY", settings.temporal_tls_key),
        ("PRINTFLOW_TEMPORAL_TLS_CA", settings.temporal_tls_ca),
    ):
        if path is None:
            continue
        try:
            text = path.read_bytes()
        except OSError as err:
            raise ConfigError(f"{name}: cannot read {path}: {err.strerror or err}") from None
        if b"-----BEGIN " not in text:
            raise ConfigError(f"{name}: {path} is not a PEM file")


async def check_reachable(settings: Settings, timeout: float = REACH_TIMEOUT) -> None:  # noqa: ASYNC109
    """The database answers a query and Temporal's frontend accepts a connection."""
    await check_database(settings.database_url, timeout)
    await check_temporal(settings.temporal_address, timeout)


async def check_database(url: str, timeout: float = REACH_TIMEOUT) -> None:  # noqa: ASYNC109
    shown = make_url(url).render_as_string(hide_password=True)
    engine = create_engine(url)
    try:
        await ping(engine, timeout)
    except TimeoutError:
        raise ConfigError(f"database {shown} did not answer within {timeout:g}s") from None
    except Exception as err:  # noqa: BLE001 - driver errors differ per backend
        raise ConfigError(f"database {shown} is unreachable: {first_line(err)}") from None
    finally:
        await engine.dispose()


async def check_temporal(address: str, timeout: float = REACH_TIMEOUT) -> None:  # noqa: ASYNC109
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"PRINTFLOW_TEMPORAL_ADDRESS must be host:port, got {address!r}")
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    except TimeoutError:
        raise ConfigError(f"Temporal at {address} did not answer within {timeout:g}s") from None
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise ConfigError(f"cannot reach Temporal at {address}: {reason}") from None
    writer.close()
    await writer.wait_closed()


async def check_config(settings: Settings) -> Facilities:
    """Every start-up check; ``ConfigError`` names the first that fails."""
    facilities = check_static(settings)
    await check_reachable(settings)
    return facilities


def temporal_runtime(metrics_port: int | None = None) -> Runtime:
    """The SDK runtime: its core's log lines through Python logging (so JSON and redaction apply
    to them too) and, for a worker, its Prometheus metrics on ``0.0.0.0:metrics_port``.

    A taken metrics port is logged and the worker runs without metrics: on one machine with
    several workers only the first can have the port, and losing metrics beats not working.
    """
    logging_config = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )
    if metrics_port:
        try:
            return Runtime(
                telemetry=TelemetryConfig(
                    logging=logging_config,
                    metrics=PrometheusConfig(bind_address=f"0.0.0.0:{metrics_port}"),
                )
            )
        except ValueError as err:
            log.warning(
                "worker metrics are off: cannot serve them on port %d: %s", metrics_port, err
            )
    return Runtime(telemetry=TelemetryConfig(logging=logging_config))


class StartupGate:
    """ASGI middleware: runs ``check_reachable`` when the server starts the app's lifespan.

    On failure it prints the one line and answers ``lifespan.startup.failed`` without a message
    (uvicorn would print a message, and Starlette's is a traceback); the app's own lifespan
    never runs. Everything else passes through untouched.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        first = await receive()
        if first["type"] == "lifespan.startup":
            try:
                await check_reachable(self.settings)
            except ConfigError as err:
                err.report()
                await send({"type": "lifespan.startup.failed", "message": ""})
                return
        pending = [first]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

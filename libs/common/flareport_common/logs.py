"""One logging setup for every process: structlog, JSON in production, console for humans.

Context (agent_id, stream, msg_id, target) is bound with ``structlog.contextvars`` so every line a handler
logs carries the message it is working on without passing loggers around.

No secret reaches a log line, in either format:

* Tracebacks are plain text without local variables. The console renderer would otherwise show every frame's
  locals (with ``rich`` installed it does by default), and a settings struct or a Redis URL in a local is a
  master key or a password on the terminal and in whatever collects it.
* Every rendered value, traceback text included, passes ``redact``: each secret the process was configured with
  (``setup_logging(secrets=...)``) or learnt later (``add_secret``: an agent's tunnel token, say) is replaced by
  ``[redacted]``, so a secret inside an exception message or a URL is caught too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


REDACTED = "[redacted]"
_MIN_SECRET = 6  # shorter values would redact ordinary words; every secret setting is longer than this
_secrets: set[str] = set()


def add_secret(value: str | None) -> None:
    """From now on ``value`` is replaced by ``[redacted]`` wherever it appears in a log line."""
    if value and len(value) >= _MIN_SECRET:
        _secrets.add(value)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for secret in sorted(_secrets, key=len, reverse=True):  # longest first: a secret containing another
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if _secrets and not isinstance(value, int | float | bool | None):
        return _scrub(str(value))  # an object's str() may carry a secret (an exception, a URL object)
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: every known secret in any value becomes ``[redacted]``."""
    if not _secrets:
        return event_dict
    for key, value in event_dict.items():
        event_dict[key] = _scrub(value)
    return event_dict


def setup_logging(
    level: str = "info", fmt: str = "auto", *, service: str | None = None, secrets: Iterable[str] = ()
) -> None:
    """Configure structlog and the stdlib root logger (libraries such as aiohttp log through it)."""
    for secret in secrets:
        add_secret(secret)
    numeric = _LEVELS.get(level.lower(), logging.INFO)
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=True, exception_formatter=structlog.dev.plain_traceback)
        if console
        else structlog.processors.JSONRenderer()
    )
    # Tracebacks become text here (never with locals), so that ``redact`` sees them before any renderer does.
    finish: list[Any] = [structlog.processors.StackInfoRenderer(), structlog.processors.format_exc_info, redact]
    structlog.configure(
        processors=[*shared, *finish, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finish, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries are chatty at debug level; keep them at warning unless debugging.
    root.setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    if service:
        structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name) if name else structlog.get_logger()

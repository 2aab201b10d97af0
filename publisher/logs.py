"""structlog set-up: stable event names with fields, JSON lines for the journal or a console view."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_CURRENT: dict[str, Any] = {"json": True, "level": logging.INFO}


def current_logging() -> dict[str, Any]:
    """The arguments `configure_logging` was last called with (a child process logs the same way)."""
    return dict(_CURRENT)


def configure_logging(json: bool = True, level: int = logging.INFO) -> None:
    """structlog: stable event names with fields; JSON lines for the journal, or a console view."""
    _CURRENT.update(json=json, level=level)
    renderer: Any = structlog.processors.JSONRenderer(ensure_ascii=False) if json else structlog.dev.ConsoleRenderer()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines carry URLs, and URLs can carry tokens
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


__all__ = ["configure_logging", "current_logging"]

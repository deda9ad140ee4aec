"""Operational logging: one line per event, as text or JSON, set up in one place.

Modules log through `logging.getLogger("shirushi.<part>")` with a short event message and their
data as `extra` fields (`log.info("crl published", extra={"issuer": ..., "number": ...})`).
`configure()` is called once by the long-running commands (`serve`, `responder`); elsewhere the
package's NullHandler keeps library logs out of CLI output, which has its own one-line errors.
Values logged are never secrets: callers pass serials, names, counts and times only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import traceback
from collections.abc import Callable
from typing import IO, Any

LOGGER = "shirushi"
FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
# Attributes every LogRecord has; anything else on a record came in through `extra`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_HANDLER_MARK = "_shirushi_handler"


def fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


def _value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return f"{v.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}"
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    if isinstance(v, list | tuple):
        return [_value(x) for x in v]
    return str(v)


def _error(record: logging.LogRecord, with_traceback: bool) -> str | None:
    if not record.exc_info or record.exc_info[1] is None:
        return None
    exc = record.exc_info[1]
    if with_traceback:
        return "".join(traceback.format_exception(exc)).rstrip()
    return f"{type(exc).__name__}: {exc}"


class TextFormatter(logging.Formatter):
    """`shirushi: [warning: ]event key=value ...` on one line (a traceback only at debug level)."""

    def __init__(self, with_traceback: bool = False) -> None:
        super().__init__()
        self.with_traceback = with_traceback

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        parts = [f"shirushi: {level}{record.getMessage()}"]
        data = {k: _value(v) for k, v in fields(record).items()}
        error = _error(record, self.with_traceback)
        if error is not None:
            data["error"] = error
        for key, value in data.items():
            text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
            parts.append(f"{key}={json.dumps(text) if (' ' in text or not text) else text}")
        return " ".join(parts)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, event, then the event's fields."""

    def __init__(self, with_traceback: bool = False) -> None:
        super().__init__()
        self.with_traceback = with_traceback

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "event": record.getMessage(),
        }
        for key, value in fields(record).items():
            out.setdefault(key, _value(value))
        error = _error(record, self.with_traceback)
        if error is not None:
            out["error"] = error
        return json.dumps(out, ensure_ascii=False)


def configure(log_format: str = "text", level: str = "info", stream: IO[str] | None = None) -> None:
    """Send the `shirushi.*` loggers to `stream` (stderr) in `log_format`; safe to call again."""
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    debug = level == "debug"
    handler.setFormatter(JSONFormatter(debug) if log_format == "json" else TextFormatter(debug))
    setattr(handler, _HANDLER_MARK, True)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    # One line per event: not again through a root handler someone else configured.
    logger.propagate = False


def say_via(logger: logging.Logger) -> Callable[[str], None]:
    """A `say(line)` for code that reports in lines: "warning: ..." and "error: ..." set the level."""

    def say(line: str) -> None:
        for prefix, level in (("warning: ", logging.WARNING), ("error: ", logging.ERROR)):
            if line.startswith(prefix):
                logger.log(level, line[len(prefix) :])
                return
        logger.info(line)

    return say

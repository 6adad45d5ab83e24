"""Log lines as text or as one JSON object each (``USERPORTRAIT_LOG_FORMAT``, docs/operations.md).

``configure`` puts one handler on the root logger; uvicorn's loggers reach it too (``serve``
runs uvicorn without its own logging config). A record may carry ``fields`` (a dict, e.g.
the access log's rid, method, path, status, ms) and a ``summary``: the JSON form puts the
fields beside time, level, logger and message, so an access line is one object, not JSON
inside JSON; the text form prints the message as before.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, Final, TextIO

FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message; rid when
    the record has one; its ``fields``; the exception's traceback as ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        out: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": getattr(record, "summary", None) or record.getMessage(),
        }
        rid = getattr(record, "rid", None)
        if rid is not None:
            out["rid"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update({k: v for k, v in fields.items() if k not in out or k == "rid"})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class _Stderr(logging.StreamHandler[TextIO]):
    """A handler writing to whatever ``sys.stderr`` is at the time (as ``logging.lastResort``),
    so a test runner's swapped stream is never written after it is closed."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure(fmt: str, level: int = logging.INFO) -> None:
    """The root logger's one handler in format ``fmt`` (``text`` or ``json``) at ``level``;
    called again, it replaces the handler it put there before."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: expected text or json")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(old)
    handler = _Stderr()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)

"""Structured JSON logs with the current call's request id on every line.

Records are formatted and written on a background thread: JSON encoding and the write to stderr
cost about 0.1 ms a call, which the event loop would otherwise spend between a request and its
answer. The request id is captured when the record is made, since the context variable that
holds it is the calling task's.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
import time
from contextvars import ContextVar
from typing import TextIO

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
            "msg": record.getMessage(),
        }
        for key in ("method", "code", "reviews", "latency_ms", "peer"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class DeferredHandler(logging.handlers.QueueHandler):
    """Queues records as they are, for the listener thread to format; only the request id is taken now."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return record


_listener: logging.handlers.QueueListener | None = None


def stop() -> None:
    """Write out what is queued, stop the writer thread and write directly from now on (also run at exit)."""
    global _listener
    if _listener is None:
        return
    _listener.stop()
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, DeferredHandler)] + list(_listener.handlers)
    _listener = None


def configure(level: str, stream: TextIO | None = None) -> None:
    global _listener
    stop()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(records, handler)
    _listener.start()
    root = logging.getLogger()
    root.handlers[:] = [DeferredHandler(records)]
    root.setLevel(level.upper())


atexit.register(stop)

"""Logs that stay readable under faults: one line per record, rate-limited (issue 15 item 12).

While Redis was down every vote logged a full traceback (1,035 in 20 s), and every 403 logged a
~50-line traceback. `OneLine`, a logging filter set on those loggers in settings' LOGGING:

- replaces the traceback of a record below `below` (a level name) with one line, the
  exception's type and message; records at or above it (a 500 in django.request) keep theirs;
- lets through at most `burst` records of the same kind (logger, level, message template,
  exception type) every `every_s` seconds; the next one let through says how many were dropped.
"""

from __future__ import annotations

import logging
import threading
import time


class OneLine(logging.Filter):
    def __init__(self, below: str = "CRITICAL", every_s: float = 60.0, burst: int = 5):
        super().__init__()
        self.below = logging.getLevelName(below) if isinstance(below, str) else int(below)
        self.every_s, self.burst = float(every_s), int(burst)
        self._lock = threading.Lock()
        self._windows: dict[tuple, list] = {}  # kind -> [window start, let through, dropped]

    def _kind(self, record: logging.LogRecord) -> tuple:
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        return (record.name, record.levelno, template, exc)

    def _admit(self, kind: tuple) -> int | None:
        """None to drop the record, else how many of its kind were dropped before it."""
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(kind, [now, 0, 0])
            if now - window[0] >= self.every_s:
                window[0], window[1] = now, 0
            if window[1] >= self.burst:
                window[2] += 1
                return None
            window[1] += 1
            dropped, window[2] = window[2], 0
            return dropped

    def filter(self, record: logging.LogRecord) -> bool:
        dropped = self._admit(self._kind(record))
        if dropped is None:
            return False
        message = record.getMessage()
        if record.exc_info and record.levelno < self.below:
            exc = record.exc_info[1]
            first = str(exc).splitlines()[0] if str(exc) else ""
            message = f"{message} ({type(exc).__name__}: {first})" if exc else message
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        if dropped:
            message = f"{message} [{dropped} more like this not logged]"
        record.msg, record.args = message, None
        return True

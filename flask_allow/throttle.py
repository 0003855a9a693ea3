"""Warnings about what requests bring, logged at once and then at most once a minute with a count."""

from __future__ import annotations

import logging
import time
from typing import Any

from .live.locks import LEAF, ForkSafeLock


class Throttle:
    """Log a warning at once, then at most once a minute with a count (headers are client input)."""

    INTERVAL = 60.0

    def __init__(self) -> None:
        self._lock = ForkSafeLock(LEAF)
        self._next = 0.0
        self._suppressed = 0

    def warn(self, logger: logging.Logger, message: str, *args: Any) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._next = now + self.INTERVAL
        more = f" ({suppressed} more since the last such warning)" if suppressed else ""
        logger.warning("flask_allow: " + message + more, *args)

"""The shrink limit: an automatic update must not empty a list, or cut most of it, at once.

A half-written or emptied DENY list would open the door. So an automatic rebuild (a watched
file changed, a feed was fetched) whose list holds fewer than ``ALLOW_LIST_SHRINK_LIMIT`` of the
entries the running rules have from it, or none, is refused (held back). ``reload()`` applies
it; so does the watcher once the held-back version has stayed the same for
``ALLOW_LIST_SHRINK_HOLD`` seconds, with a warning, so that a list that really shrank is not stuck.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from .locks import LEAF, ForkSafeLock
from .stamp import Stamp, stamp

#: The key of the app's ``ShrinkGuard`` in ``AppState.shared`` (kept across rebuilds).
SHARED_KEY = "flask_allow.live.shrink"


def too_small(count: int, last: int | None, limit: float) -> bool:
    """Whether ``count`` entries, after ``last`` good ones, is a shrink to hold back."""
    return limit > 0 and bool(last) and (count == 0 or count < limit * last)  # type: ignore[operator]


def shrink_message(where: str, last: int, count: int, limit: float) -> str:
    return f"{where} would shrink from {last} to {count} entries (below {limit:g} of the last good list)"


class ShrinkRefused(ValueError):
    """An automatic update held back by the shrink limit (the rule's error at that rebuild)."""


@dataclass
class Source:
    """One list a rule was built from: what ``flask allow rules`` shows and the shrink limit counts."""

    location: str
    path: str
    entries: int
    #: Wall-clock time these entries were read.
    loaded_at: float
    #: ``"file"``, or ``"feed"`` (``path`` is then the feed's cached copy).
    kind: str = "file"
    url: str | None = None


class ShrinkGuard:
    """The last good entry count of every (rule location, file), and the shrinks held back."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        #: path -> (the stamp of the held-back version, monotonic time first refused, retry at).
        self.held: dict[str, tuple[Stamp, float, float]] = {}
        self._lock = ForkSafeLock(LEAF)

    @classmethod
    def of(cls, shared: dict[str, Any]) -> ShrinkGuard:
        return shared.setdefault(SHARED_KEY, cls())

    def check(self, location: str, path: str, count: int, limit: float, hold: float, logger: logging.Logger) -> None:
        """Raise ``ShrinkRefused`` when ``count`` entries from ``path`` are too few to apply now."""
        with self._lock:
            last = self.counts.get((location, path))
            if not too_small(count, last, limit):
                self.held.pop(path, None)
                return
            assert last is not None
            now_stamp, now = stamp(path), time.monotonic()
            held = self.held.get(path)
            message = shrink_message("the list", last, count, limit)
            if held is not None and held[0] == now_stamp:
                if now >= held[2]:
                    del self.held[path]
                    held_for = "applied, as it stayed the same for %g s"
                    logger.warning("flask_allow: %s: %s: %s; " + held_for, location, path, message, hold)
                    return
            else:
                held = self.held[path] = (now_stamp, now, now + hold)
            raise ShrinkRefused(f"{message}: held back; applied by reload(), or by itself if unchanged for {hold:g} s")

    def retry_at(self, path: str, seen: Stamp) -> float | None:
        """When the held-back version ``seen`` of ``path`` is to be tried again (monotonic), or None."""
        held = self.held.get(path)
        return held[2] if held is not None and held[0] == seen else None

    def commit(self, sources: dict[tuple[str, str], Source]) -> None:
        """Take the entry counts of rules just put in force as the last good ones."""
        with self._lock:
            for key, source in sources.items():
                self.counts[key] = source.entries

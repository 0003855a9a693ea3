"""The files one app's rules were built from, watched by a background thread of each process.

A matcher that reads a file calls ``MatcherContext.watch(path)`` before reading it; the stamp
taken then is what the file is compared with. A changed stamp is only acted on once it has
stayed the same for ``SETTLE`` seconds (a file being written changes from one look to the
next), and then the whole rule set is rebuilt and swapped in (``swap.swap_state``). A rebuild
that fails keeps the running rules; that version of the file is tried again when it changes,
or, when it was held back by the shrink limit, once it has stayed the same for the hold time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .locks import LEAF, ForkSafeLock
from .stamp import Stamp, stamp
from .tasks import BackgroundTask

#: Seconds a changed file must keep the same stamp before it is read.
SETTLE = 0.25


class Watcher:
    """Watch files; call ``rebuild(paths)`` when some changed and settled.

    ``rebuild`` builds and swaps in new rules, or raises (``ConfigError``) to keep the old ones;
    it is then not called again for the same stamps, unless ``retry_at(path, stamp)`` gives a
    (monotonic) time to try again (a version held back by the shrink limit). ``interval`` 0
    watches nothing.
    """

    def __init__(
        self,
        interval: float,
        rebuild: Callable[[list[str]], None],
        logger: logging.Logger,
        settle: float = SETTLE,
        retry_at: Callable[[str, Stamp], float | None] | None = None,
    ) -> None:
        self.interval = interval
        self.settle = settle
        self.rebuild = rebuild
        self.logger = logger
        #: path -> the stamp the running rules were built from.
        self.files: dict[str, Stamp] = {}
        #: path -> the locations of the rules that read it.
        self.locations: dict[str, list[str]] = {}
        #: path -> the stamp of the version refused last, not tried again until it changes.
        self.refused: dict[str, Stamp] = {}
        #: path -> why its refused version was refused (the error's first line), for the CLI.
        self.why: dict[str, str] = {}
        #: path -> when (monotonic) its refused version is tried again.
        self.retry: dict[str, float] = {}
        self.retry_at = retry_at
        self._lock = ForkSafeLock(LEAF)
        self.task = BackgroundTask("file watcher", interval, self.poll, logger) if interval > 0 else None

    def add(self, path: str, location: str) -> None:
        """Watch ``path`` for the rule at ``location``; call before reading it."""
        with self._lock:
            if path not in self.files:
                self.files[path] = stamp(path)
            self.locations.setdefault(path, [])
            if location not in self.locations[path]:
                self.locations[path].append(location)

    def start(self) -> None:
        if self.task is not None and self.files:
            self.task.start()

    def stop(self) -> None:
        if self.task is not None:
            self.task.stop()

    def changed(self) -> dict[str, Stamp]:
        """The watched files whose stamp is not the one the rules were built from (nor refused)."""
        with self._lock:
            files = list(self.files.items())
        found = {}
        clock = time.monotonic()
        for path, built in files:
            now = stamp(path)
            if now == built:
                continue
            if path in self.refused and self.refused[path] == now and clock < self.retry.get(path, float("inf")):
                continue
            found[path] = now
        return found

    def poll(self) -> float | None:
        """One look at every file (the task's function); returns when to look again."""
        changed = self.changed()
        if not changed:
            return None
        time.sleep(self.settle)
        settled = [path for path, seen in changed.items() if stamp(path) == seen]
        if len(settled) < len(changed):  # still being written: look again soon
            return self.settle
        try:
            self.rebuild(settled)
        except Exception as exc:
            with self._lock:
                for path in settled:
                    self.refused[path] = changed[path]
                    self.why[path] = _line_about(path, exc)
                    until = self.retry_at(path, changed[path]) if self.retry_at is not None else None
                    if until is None:
                        self.retry.pop(path, None)
                    else:
                        self.retry[path] = until
            raise
        return None


def _line_about(path: str, exc: Exception) -> str:
    """The line of an error that names ``path`` (a combined error names every rule), else its last."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    return next((line for line in lines if path in line), lines[-1])

"""A background thread per job, that a fork does not lose.

After ``os.fork()`` only the forking thread exists in the child: every running task is started
again there (gunicorn's workers, forked from a master that built the app with ``--preload``).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable

log = logging.getLogger("flask_allow")

_running: weakref.WeakSet[BackgroundTask] = weakref.WeakSet()


class BackgroundTask:
    """Run ``function()`` in a daemon thread, first after ``delay`` seconds, then every ``interval``.

    ``function`` returns the seconds until its next run, or None for ``interval``. An exception is
    logged (on ``logger``) and the task goes on. ``wake()`` runs it now; ``stop()`` ends it.
    """

    def __init__(
        self,
        name: str,
        interval: float,
        function: Callable[[], float | None],
        logger: logging.Logger | None = None,
        delay: float | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self.function = function
        self.logger = logger or log
        self._delay = interval if delay is None else delay
        self._thread: threading.Thread | None = None
        self._event = threading.Event()
        self._stopped = False
        #: Completed runs, for tests and the CLI.
        self.runs = 0

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the thread (again, after a fork); a task already running is left alone."""
        if self._stopped or self.running:
            return
        self._event = threading.Event()
        thread = threading.Thread(target=self._run, args=(self._event,), name=f"flask_allow {self.name}", daemon=True)
        self._thread = thread
        _running.add(self)
        thread.start()

    def wake(self) -> None:
        """Run the function as soon as the thread is free."""
        self._delay = 0.0
        self._event.set()

    def stop(self) -> None:
        """End the thread after its current run (it is a daemon: it never holds up an exit)."""
        self._stopped = True
        _running.discard(self)
        self._event.set()

    def _run(self, event: threading.Event) -> None:
        delay = self._delay
        while True:
            if delay > 0:
                event.wait(delay)
            if self._stopped or self._event is not event:
                return
            event.clear()
            self._delay = self.interval
            try:
                answer = self.function()
            except Exception:
                self.logger.exception("flask_allow: %s failed", self.name)
                answer = None
            self.runs += 1
            delay = self.interval if answer is None else answer
            if self._delay == 0.0:  # woken while running
                delay = 0.0

    def _after_fork(self) -> None:
        self._thread = None
        self._event = threading.Event()
        self._delay = 0.0  # the child's copy of the rules may be behind: look at once
        self.start()


def _after_fork_in_child() -> None:
    for task in list(_running):
        task._after_fork()


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)

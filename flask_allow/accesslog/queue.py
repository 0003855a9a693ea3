"""The access log's opt-in writer thread (``ACCESS_LOG {"queue": true}``).

Requests hand over their line (or, when others listen on ``flask.allow``, their LogRecord) and go
on; a thread of its own writes what has gathered every ``INTERVAL`` seconds, consecutive lines in
one system call. Nothing is lost on shutdown: ``stop()`` (reload, app teardown, interpreter exit)
writes out the rest. In a forked child the thread is started again, and the lines the parent had
not yet written are left to the parent.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

#: Seconds between two writes of the gathered lines.
INTERVAL = 0.05

_running: weakref.WeakSet[LineQueue] = weakref.WeakSet()


class LineQueue:
    """Lines for ``handler``, written by a thread: each a ``str``, a function that makes the
    ``str`` (formatted in the thread), or a ``LogRecord``.

    ``handler`` is the access log's file handler: ``put_many(lines)`` writes formatted lines in
    one go, rolling over where it must; a record goes through ``handler.handle()``.
    """

    def __init__(self, handler: Any, interval: float | None = None) -> None:
        self.handler = handler
        self.interval = INTERVAL if interval is None else interval
        self._items: deque[str | Callable[[], str] | logging.LogRecord] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def put(self, item: str | Callable[[], str] | logging.LogRecord) -> None:
        """Hand over a line, a line to make or a record (never blocks: ``deque.append`` is atomic).
        Once stopped, it is written at once: a request that began before a reload replaced this
        log, or before the app was closed, still gets its line."""
        self._items.append(item)
        if self._stopping and self._thread is None:  # stop() has drained, or is draining: no one else will
            with self.handler.lock:
                self.drain()
                self.handler.close()  # its file was closed with the log (drain opened it again)

    def start(self) -> None:
        """Start the writer thread (once)."""
        if self._thread is not None:
            return
        self._stopping = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flask_allow access log", daemon=True)
        self._thread.start()
        _running.add(self)

    def stop(self) -> None:
        """Stop the thread after it has written everything handed over so far."""
        thread = self._thread
        self._stopping = True
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._thread = None
        _running.discard(self)
        self.drain()  # what came in while it stopped (or everything, when it never ran)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _run(self) -> None:
        wake = self._wake
        while not self._stopping:
            if wake.wait(self.interval):  # woken early (stop, or a new interval): wait afresh next time
                wake.clear()
            self.drain()

    def drain(self) -> None:
        """Write everything handed over so far, in order."""
        items, pop = self._items, self._items.popleft
        lines: list[str] = []
        while items:
            item = pop()
            if isinstance(item, str):
                lines.append(item)
                continue
            if not isinstance(item, logging.LogRecord):
                try:
                    lines.append(item())
                except Exception:  # as a handler reports a record it cannot format; the rest go on
                    self.handler.handleError(logging.makeLogRecord({"msg": repr(item), "name": "flask.allow"}))
                continue
            self._write(lines)
            lines = []
            self.handler.handle(item)  # a record: as the handler would take it from the logger
        self._write(lines)

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        handler = self.handler
        try:
            with handler.lock:
                handler.put_many(lines)
        except Exception:  # as a handler reports a failed write; the thread goes on
            handler.handleError(logging.makeLogRecord({"msg": lines[0], "name": "flask.allow"}))

    def _forked(self) -> None:
        """In a forked child: the lines are the parent's to write; start a thread of our own."""
        self._items.clear()
        if self._thread is not None:
            self._thread = None
            self.start()


def _after_fork_in_child() -> None:
    for queue in list(_running):
        queue._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

"""Thread locks that a fork leaves usable: gunicorn's master forks its workers from a ``--preload``
app while that app's background threads run.

After ``os.fork()`` only the forking thread runs in the child, so a lock another thread held is
held there by no one, forever: the child's next rebuild, ban or store call would hang.

- ``ProcessLock`` is simply new in a child. For locks held across slow I/O (a feed's fetch), which
  a fork should not wait for.
- ``ForkSafeLock`` makes ``os.fork()`` wait until its holder lets go (at most ``FORK_WAIT``
  seconds), so the child never inherits what it guards half changed. Its ``before_fork``
  callback runs while it is held for the fork, to close what must not cross one (a SQLite
  connection). Locks are taken for a fork by rank, outermost first (``REBUILD``, then ``STATE``,
  then ``LEAF``), the order the code nests them in.

Both also start afresh in a child made without ``os.fork()``'s handlers (an embedding server's
own fork), from the process id.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

log = logging.getLogger("flask_allow")

#: Seconds a fork waits for a ``ForkSafeLock``'s holder; past it the child gets a new lock.
FORK_WAIT = 60.0
#: Ranks of ``ForkSafeLock``: an app's rebuild; a service's state (taken within a rebuild); a lock
#: under which no other is taken (a store's, a watcher's).
REBUILD, STATE, LEAF = 0, 1, 2

_registry: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()
_registry_lock = threading.Lock()
_taken: list[ForkSafeLock] = []  # held for the fork under way


class ProcessLock:
    """A thread lock that a fork does not carry over locked (a thread of the parent may have held it)."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        if self._pid != os.getpid():
            self._pid, self._lock = os.getpid(), threading.Lock()
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class ForkSafeLock:
    """A thread lock (``reentrant``: an ``RLock``) that ``os.fork()`` waits for and leaves free in
    both processes; ``before_fork()`` runs holding it, just before the fork."""

    def __init__(self, rank: int, before_fork: Callable[[], Any] | None = None, reentrant: bool = False) -> None:
        self.rank = rank
        self._new: Callable[[], Any] = threading.RLock if reentrant else threading.Lock
        self._lock = self._new()
        self._pid = os.getpid()
        self._before_fork = before_fork
        self._held = False  # taken for the fork under way
        self._owner: int | None = None  # the thread holding it (not reentrant: the one)
        self._forker_holds = False  # the forking thread held it itself: it lets go in both processes
        with _registry_lock:
            _registry.add(self)

    def __enter__(self) -> bool:
        if self._pid != os.getpid():  # forked without os.fork()'s handlers
            self._pid, self._lock = os.getpid(), self._new()
        self._lock.acquire()
        self._owner = threading.get_ident()
        return True

    def __exit__(self, *exc: object) -> None:
        self._owner = None
        self._lock.release()

    def _take_for_fork(self) -> None:
        self._forker_holds = self._new is threading.Lock and self._owner == threading.get_ident()
        if self._forker_holds:  # os.fork() called with it held: waiting would wait for itself
            return
        self._held = self._lock.acquire(timeout=FORK_WAIT)
        if not self._held:
            log.warning("flask_allow: a fork did not wait longer than %.0f s for a busy thread", FORK_WAIT)
            return
        if self._before_fork is not None:
            try:
                self._before_fork()
            except Exception:
                log.exception("flask_allow: preparing for a fork failed")

    def _give_back(self, child: bool) -> None:
        if self._forker_holds:
            self._forker_holds = False
        elif self._held:
            self._held = False
            self._lock.release()
        elif child:  # its holder is not in this process
            self._lock = self._new()
        if child:
            self._pid = os.getpid()


def _before_fork() -> None:
    with _registry_lock:
        locks = sorted(_registry, key=lambda lock: lock.rank)
    for lock in locks:
        lock._take_for_fork()
        _taken.append(lock)


def _after_fork(child: bool) -> None:
    for lock in reversed(_taken):
        lock._give_back(child)
    _taken.clear()
    if child:
        global _registry_lock
        _registry_lock = threading.Lock()  # a thread of the parent may have been creating a lock


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=lambda: _after_fork(child=False),
        after_in_child=lambda: _after_fork(child=True),
    )

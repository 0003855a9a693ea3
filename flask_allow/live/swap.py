"""The one way new rules are put in force: build a whole new state, then swap it in.

Builds of one app never overlap (a lock per app), so ``reload()`` from a thread of the app and
the watcher's rebuild cannot interleave; the request path never takes the lock.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from .locks import REBUILD, ForkSafeLock

if TYPE_CHECKING:
    from flask import Flask

    from ..extension import AppState

_locks: weakref.WeakKeyDictionary[Flask, ForkSafeLock] = weakref.WeakKeyDictionary()
_locks_lock = threading.Lock()


def lock_of(app: Flask) -> ForkSafeLock:
    """The lock that serialises the rebuilds of ``app`` (a fork waits for a rebuild under way)."""
    with _locks_lock:
        found = _locks.get(app)
        if found is None:
            found = _locks[app] = ForkSafeLock(REBUILD, reentrant=True)
        return found


def swap_state(
    app: Flask,
    key: str,
    build: Callable[[AppState | None], AppState],
    start: Callable[[AppState, AppState | None], None],
    unless: Callable[[AppState | None], bool] | None = None,
) -> AppState | None:
    """Build a state with ``build(current)``, put it in ``app.extensions[key]`` at once, then
    ``start(new, current)`` it (the new state takes over from the old one).

    ``unless(current)`` true (checked under the lock) skips the build: a watcher whose state was
    replaced meanwhile has nothing to do. A build that raises leaves the current state in force.
    """
    with lock_of(app):
        old = app.extensions.get(key)
        if unless is not None and unless(old):
            return None
        new = build(old)
        app.extensions[key] = new
        start(new, old)
        return new

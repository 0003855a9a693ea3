"""Rules that change while the app runs: watched sources, background tasks, and the one swap.

Every change of the rules (``init_app``, ``reload()``, a watched file, a feed, a ban, a new GeoIP
database) is built off the request path and put in force by one reference assignment, so a
request sees the old rules or the new ones, never a mix, and never waits for the build:

- ``tasks.BackgroundTask``: a daemon thread that runs a function every so often, started again
  in the child after a fork (gunicorn workers).
- ``watch.Watcher``: the files an app's rules were built from; a change (mtime, size, inode)
  that has settled rebuilds the rules.
- ``swap.swap_state``: builds a new ``AppState`` and swaps it in, one at a time per app.
- ``locks``: thread locks that a fork waits for (``ForkSafeLock``) or leaves new in the child
  (``ProcessLock``), so a forked worker never inherits one held by a thread it does not have.
"""

from .stamp import Stamp, stamp
from .swap import swap_state
from .tasks import BackgroundTask
from .watch import Watcher

__all__ = ["BackgroundTask", "Stamp", "Watcher", "stamp", "swap_state"]

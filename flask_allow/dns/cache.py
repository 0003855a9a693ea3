"""Bounded caches for DNS answers: an LRU whose entries expire, loading each key once at a time."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Flight(Generic[V]):
    """One load under way; the callers that arrive meanwhile wait for its result."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: V | None = None


class TTLCache(Generic[K, V]):
    """At most ``maxsize`` values, each kept for the seconds its loader says, least recently used out first.

    ``get_or_load`` is single-flight: while one caller loads a key, others asking for the same
    key wait for that load instead of starting their own (one DNS query for a burst of requests
    from one new client). A flood of distinct keys cannot grow it past ``maxsize``.
    """

    def __init__(self, maxsize: int, clock: Callable[[], float] = time.monotonic) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.clock = clock
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._flights: dict[K, _Flight[V]] = {}
        self._lock = threading.Lock()
        #: Loads started (each a lookup), for ``flask allow`` and tests.
        self.loads = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        """The value kept for ``key`` when it has not expired, else None (never loads)."""
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            if item[0] <= self.clock():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return item[1]

    def get_or_load(self, key: K, load: Callable[[], tuple[V, float]], wait: float) -> V | None:
        """Return the kept value, or load it: ``load()`` returns the value and how many seconds to keep it.

        A caller that finds a load of ``key`` under way waits up to ``wait`` seconds for it and
        gets None if it did not finish. An exception from ``load`` reaches its caller; the
        waiters get None.
        """
        with self._lock:
            item = self._data.get(key)
            if item is not None:
                if item[0] > self.clock():
                    self._data.move_to_end(key)
                    return item[1]
                del self._data[key]
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
                self.loads += 1
        if not leader:
            flight.done.wait(max(wait, 0.0))
            return flight.result
        try:
            value, keep = load()
            flight.result = value
            with self._lock:
                if keep > 0:
                    self._data[key] = (self.clock() + keep, value)
                    self._data.move_to_end(key)
                    while len(self._data) > self.maxsize:
                        self._data.popitem(last=False)
        finally:
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
            flight.done.set()
        return value

    def after_fork(self) -> None:
        """In a forked child: a fresh lock, no load under way (its thread did not survive the fork)."""
        self._lock = threading.Lock()
        self._flights = {}


class FailureLog:
    """Says when a failure deserves a log line: once per name per ``window`` seconds, bounded in size.

    At most ``burst`` distinct names are logged per window (a flood of failing client addresses
    must not flood the log); the lines left out are counted into the next one.
    """

    def __init__(self, window: float, maxsize: int, burst: int = 20, clock: Callable[[], float] = time.monotonic):
        self.window = max(window, 1.0)
        self.maxsize = maxsize
        self.burst = burst
        self.clock = clock
        self._last: OrderedDict[Hashable, float] = OrderedDict()
        self._window_start = 0.0
        self._in_window = 0
        self.suppressed = 0
        self._lock = threading.Lock()

    def should_log(self, name: Hashable) -> bool:
        """Whether to log a failure of ``name`` now (and remember that it was)."""
        now = self.clock()
        with self._lock:
            last = self._last.get(name)
            if last is not None and now - last < self.window:
                return False
            if now - self._window_start >= self.window:
                self._window_start, self._in_window = now, 0
            if self._in_window >= self.burst:
                self.suppressed += 1
                return False
            self._in_window += 1
            self._last[name] = now
            self._last.move_to_end(name)
            while len(self._last) > self.maxsize:
                self._last.popitem(last=False)
            return True

    def take_suppressed(self) -> int:
        """How many failures were left out of the log since this was last asked."""
        with self._lock:
            count, self.suppressed = self.suppressed, 0
            return count

    def after_fork(self) -> None:
        self._lock = threading.Lock()

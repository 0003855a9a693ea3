"""Keeping forward rule names resolved: one background thread per app and process, started lazily.

Each name is looked up when its rule is built and again before its answer's TTL runs out, so no
request waits for a forward lookup. A failed refresh keeps the previous answer until it expires,
and is retried with a growing pause (up to ``ALLOW_DNS_NEGATIVE_TTL``). After a fork (gunicorn
workers) the thread does not exist in the child: ``after_fork`` resets the state and the first
request in the child starts the thread again.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import dns.name

from .resolver import ERROR, OK, Answer, display

if TYPE_CHECKING:
    from .service import DNSService

#: The shortest pause between two lookups of one name.
MIN_PAUSE = 0.5
#: A refresh still running this many seconds after twice ``ALLOW_DNS_TIMEOUT`` is taken as stuck
#: (its thread waits for something that will not come, as a lock held across a fork): another is
#: started, and what the stuck one finds, if it ever ends, is dropped.
STUCK_EXTRA = 5.0


class Listener(Protocol):
    """A forward matcher, as the refresher sees it: told when the answer changes."""

    location: str

    def answer_changed(self) -> None: ...


class ForwardState:
    """The A and AAAA answers of one name at one moment (replaced whole, never changed)."""

    __slots__ = ("answers",)

    def __init__(self, answers: dict[int, Answer]) -> None:
        self.answers = answers

    def outcome(self) -> dict[int, tuple[frozenset[tuple[int, int]], bool]]:
        """What matching depends on: per family the addresses and whether it is a failure."""
        return {family: (a.addresses, a.status == ERROR) for family, a in self.answers.items()}

    def describe(self) -> str:
        return "; ".join(a.describe() for a in self.answers.values())


class ForwardName:
    """One forward rule name: its current answers, kept fresh by the refresher."""

    def __init__(self, qname: dns.name.Name) -> None:
        self.qname = qname
        self.name = display(qname)
        #: None until the first lookup has finished.
        self.state: ForwardState | None = None
        self.ready = threading.Event()
        self.due = 0.0
        self.busy = False
        #: When the running refresh started, and its number (a refresh taken over counts no more).
        self.started = 0.0
        self.attempt = 0
        self.failures = 0
        self.listeners: weakref.WeakSet[Listener] = weakref.WeakSet()
        #: Set when a request was decided without the state (still pending, or run out).
        self.improvised = False
        #: The problem last logged and when, so a lasting failure is logged once per negative TTL.
        self.logged: str | None = None
        self.logged_at = 0.0


class Refresher:
    """The background refresh of one app's forward names."""

    def __init__(self, service: DNSService) -> None:
        self.service = service
        self.names: dict[dns.name.Name, ForwardName] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def logger(self) -> logging.Logger:
        return self.service.logger

    # -- registration -----------------------------------------------------------

    def register(self, qname: dns.name.Name, listener: Listener) -> ForwardName:
        """Keep ``qname`` resolved for ``listener``; its first lookup starts at once."""
        with self._cond:
            entry = self.names.get(qname)
            if entry is None:
                entry = self.names[qname] = ForwardName(qname)
            entry.listeners.add(listener)
            self._start()
            self._cond.notify_all()
        return entry

    def release(self, entry: ForwardName, listener: Listener) -> None:
        """``listener`` no longer needs ``entry``; the thread ends when no name is needed."""
        with self._cond:
            entry.listeners.discard(listener)
            if not entry.listeners and self.names.get(entry.qname) is entry:
                del self.names[entry.qname]
            self._cond.notify_all()

    def ensure_running(self) -> None:
        """Start the thread in this process if it is not running (the first request after a fork)."""
        if self._thread is None:
            with self._cond:
                self._start()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def after_fork(self) -> list[Listener]:
        """Reset in a forked child: no thread, no lookup under way. Return the listeners to tell."""
        self._cond = threading.Condition()
        self._thread = None
        listeners: list[Listener] = []
        for entry in self.names.values():
            entry.busy = False
            if entry.state is None:
                entry.ready = threading.Event()
                entry.due = 0.0
            listeners.extend(entry.listeners)
        return listeners

    # -- the thread -------------------------------------------------------------

    def _start(self) -> None:  # with self._cond held
        if self._thread is not None or not self.names:
            return
        thread = threading.Thread(target=self._run, name="flask_allow DNS refresher", daemon=True)
        self._thread = thread
        thread.start()

    def _run(self) -> None:
        cond = self._cond
        try:
            while True:
                with cond:
                    due = self._wait_for_due(cond)
                    if due is None:
                        return
                for entry, attempt in due:
                    threading.Thread(
                        target=self._refresh, args=(entry, attempt), name=f"flask_allow DNS {entry.name}", daemon=True
                    ).start()
        finally:
            with cond:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _wait_for_due(self, cond: threading.Condition) -> list[tuple[ForwardName, int]] | None:
        """The names to refresh now, each with the number of its refresh; None: the thread ends."""
        while True:
            if not self.names or cond is not self._cond:
                return None
            for qname in [q for q, e in self.names.items() if not e.listeners]:  # matchers gone unclosed
                del self.names[qname]
            now = time.monotonic()
            stuck_after = 2 * self.service.settings.timeout + STUCK_EXTRA
            for entry in self.names.values():
                if entry.busy and now - entry.started > stuck_after:
                    self.logger.error(
                        "flask_allow: refreshing host name %r has not ended in %.0f s; starting another",
                        entry.name,
                        now - entry.started,
                    )
                    entry.busy, entry.due = False, now
            idle = [e for e in self.names.values() if not e.busy]
            due = [e for e in idle if e.due <= now]
            if due:
                for entry in due:
                    entry.busy, entry.started, entry.attempt = True, now, entry.attempt + 1
                return [(entry, entry.attempt) for entry in due]
            wakes = [e.due for e in idle] + [e.started + stuck_after for e in self.names.values() if e.busy]
            wake = min(wakes, default=now + 60.0)
            cond.wait(min(max(wake - now, 0.01), 60.0))

    def _refresh(self, entry: ForwardName, attempt: int) -> None:
        service = self.service
        try:
            fresh = service.forward(entry.qname)
        except Exception:  # never let the thread die silently; retry later
            self.logger.exception("flask_allow: refreshing host name %r failed", entry.name)
            fresh = None
        with self._cond:
            if attempt != entry.attempt:  # taken for stuck, and another started since: its answer counts
                return
            old = entry.state
            state = self._merge(entry, old, fresh)
            # The first answer, a change, or requests decided meanwhile on a made-up failure
            # (no answer yet, or one not refreshed in time): cached decisions must go.
            changed = old is None or state.outcome() != old.outcome() or entry.improvised
            entry.improvised = False
            entry.state = state
            entry.busy = False
            entry.due = self._next_due(entry, state)
            listeners = list(entry.listeners)
            self._cond.notify_all()
        self._report(entry, old, state, listeners)  # logged before a waiting request goes on
        entry.ready.set()
        if changed:
            for listener in listeners:
                listener.answer_changed()

    def _merge(self, entry: ForwardName, old: ForwardState | None, fresh: dict[int, Answer] | None) -> ForwardState:
        """The new state: a fresh answer, or for a failed lookup the old answer while it holds."""
        now = time.monotonic()
        if fresh is None:
            fresh = {
                family: Answer(rdtype, entry.name, ERROR, 0.0, now, error="lookup failed: internal error")
                for family, rdtype in ((4, "A"), (6, "AAAA"))
            }
        merged: dict[int, Answer] = {}
        failed = False
        for family, answer in fresh.items():
            previous = old.answers.get(family) if old is not None else None
            if answer.status == ERROR:
                failed = True
                if previous is not None and previous.status != ERROR and previous.expires > now:
                    answer = previous
            merged[family] = answer
        entry.failures = entry.failures + 1 if failed else 0
        return ForwardState(merged)

    def _next_due(self, entry: ForwardName, state: ForwardState) -> float:
        now = time.monotonic()
        settings = self.service.settings
        answers = state.answers.values()
        if entry.failures:  # retry with a growing pause, and look again when a kept answer runs out
            due = now + min(settings.negative_ttl, 2.0 ** min(entry.failures - 1, 16))
            for answer in answers:
                if answer.status != ERROR and answer.expires > now:
                    due = min(due, answer.expires)
            return max(due, now + MIN_PAUSE)
        due = now + settings.max_ttl
        for answer in answers:
            keep = answer.keep
            if answer.status == OK:  # early enough that the refresh ends before the answer runs out
                due = min(due, answer.at + min(keep * 0.75, max(keep - settings.timeout - 1.0, keep * 0.5)))
            else:
                due = min(due, answer.expires)
        return max(due, now + MIN_PAUSE)

    def _report(
        self, entry: ForwardName, old: ForwardState | None, state: ForwardState, listeners: list[Listener]
    ) -> None:
        if not listeners:  # every rule of this name was released (its config failed): nobody to tell
            return
        where = ", ".join(sorted({listener.location for listener in listeners}))
        found = [a for a in state.answers.values() if a.status == OK]
        if not found or any(a.status == ERROR for a in state.answers.values()):
            problem = state.describe()
            now = time.monotonic()
            if problem != entry.logged or now - entry.logged_at >= max(self.service.settings.negative_ttl, 1.0):
                entry.logged, entry.logged_at = problem, now
                self.logger.warning(
                    "flask_allow: %s: host name %r %s (%s); %s, retried in the background",
                    where,
                    entry.name,
                    "resolves only in part" if found else "does not resolve",
                    problem,
                    "it matches the addresses found" if found else "it matches nothing",
                )
            return
        if entry.logged is not None:
            self.logger.info("flask_allow: %s: host name %r resolves again: %s", where, entry.name, state.describe())
            entry.logged = None
        elif old is not None and state.outcome() != old.outcome():
            self.logger.info("flask_allow: %s: host name %r now resolves to %s", where, entry.name, state.describe())
        else:
            self.logger.debug("flask_allow: host name %r resolves to %s", entry.name, state.describe())


def wait_ready(entry: ForwardName, timeout: float, ensure: Callable[[], None]) -> ForwardState | None:
    """The state of ``entry``, waiting up to ``timeout`` for its first lookup."""
    state = entry.state
    if state is None:
        ensure()
        entry.ready.wait(timeout)
        state = entry.state
    return state

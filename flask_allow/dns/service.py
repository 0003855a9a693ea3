"""The DNS state one app's host-name rules share: settings, resolver, caches, refresher.

Kept in ``MatcherContext.shared`` so that a reload with unchanged ``ALLOW_DNS_*`` settings keeps
the answers already had. ``verify`` is forward-confirmed reverse DNS: the PTR names of an address
count only when a forward lookup of the name gives the address back.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dns.name

from .cache import FailureLog, TTLCache
from .refresher import Refresher
from .resolver import ERROR, RDTYPE, Answer, Key, Resolver, display
from .settings import DNSSettings

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..matcher import MatcherContext

#: The key of the service in ``MatcherContext.shared``.
SHARED_KEY = "flask_allow.dns"
#: PTR names of one address checked by a forward lookup, at most (a PTR set is the client's to choose).
MAX_CANDIDATES = 8

_services: weakref.WeakSet[DNSService] = weakref.WeakSet()
_lock = threading.Lock()


def service_for(context: MatcherContext) -> DNSService:
    """The DNS service of the context's app, made (or remade, when the settings changed) on demand."""
    root = context.app.root_path if context.app is not None else None
    settings = DNSSettings.from_config(context.config, root)
    with _lock:
        service = context.shared.get(SHARED_KEY)
        if not isinstance(service, DNSService) or service.settings != settings:
            service = DNSService(settings, context.logger)
            context.shared[SHARED_KEY] = service
        report = context.report_error  # the newest rules' plugins count the failed lookups
        service.resolver.on_error = lambda message: report("dns", message, None)
        return service


@dataclass
class Verdict:
    """The outcome of forward-confirmed reverse DNS for one address and one rule."""

    #: The PTR answer, or None when it is not known (not cached, or its lookup did not finish).
    pointers: Answer | None = None
    #: The name confirmed and the forward answer that confirmed it, when the rule matches.
    name: dns.name.Name | None = None
    forward: Answer | None = None
    #: The PTR names the rule wanted, each with its forward answer (None: not known).
    tried: list[tuple[dns.name.Name, Answer | None]] = field(default_factory=list)
    #: Why it cannot be decided (a DNS failure), or None.
    error: str | None = None

    @property
    def matched(self) -> bool:
        return self.name is not None


class DNSService:
    """Resolver, caches and refresher of one app's host-name rules (one per distinct settings)."""

    def __init__(self, settings: DNSSettings, logger: logging.Logger) -> None:
        self.settings = settings
        self.logger = logger
        self.resolver = Resolver(settings)
        #: PTR answers per client address.
        self.pointers: TTLCache[Key, Answer] = TTLCache(settings.cache_size)
        #: Forward answers per (PTR name, family), for confirming.
        self.confirmations: TTLCache[tuple[dns.name.Name, int], Answer] = TTLCache(settings.cache_size)
        self.failures = FailureLog(settings.negative_ttl, settings.cache_size)
        self.refresher = Refresher(self)
        _services.add(self)

    # -- forward ----------------------------------------------------------------

    def forward(self, qname: dns.name.Name) -> dict[int, Answer]:
        """Look up the A and AAAA records of ``qname`` side by side, both within one timeout."""
        deadline = time.monotonic() + self.settings.timeout
        found: dict[int, Answer] = {}

        def six() -> None:
            found[6] = self.resolver.addresses(qname, 6, deadline)

        thread = threading.Thread(target=six, name="flask_allow DNS AAAA", daemon=True)
        thread.start()
        found[4] = self.resolver.addresses(qname, 4, deadline)
        thread.join(self.settings.timeout + 1.0)
        if 6 not in found:
            error = "lookup failed: no result"
            found[6] = Answer("AAAA", display(qname), ERROR, 0.0, time.monotonic(), error=error)
        return {4: found[4], 6: found[6]}

    # -- reverse ----------------------------------------------------------------

    def reverse(self, key: Key, deadline: float) -> Answer | None:
        """The PTR names of ``key`` (cached, one lookup at a time per address); None when it did not finish."""

        def load() -> tuple[Answer, float]:
            answer = self.resolver.pointers(key, deadline)
            if answer.status == ERROR:
                self._log_failure(("PTR", key), f"reverse lookup of {answer.name}: {answer.error}")
            return answer, answer.keep

        return self.pointers.get_or_load(key, load, deadline - time.monotonic())

    def confirm(self, qname: dns.name.Name, family: int, deadline: float) -> Answer | None:
        """The A or AAAA records of a PTR name (cached, single-flight); None when it did not finish."""

        def load() -> tuple[Answer, float]:
            answer = self.resolver.addresses(qname, family, deadline)
            if answer.status == ERROR:
                self._log_failure((qname, family), f"{answer.rdtype} lookup of {answer.name}: {answer.error}")
            return answer, answer.keep

        return self.confirmations.get_or_load((qname, family), load, deadline - time.monotonic())

    def verify(self, key: Key, accepts: Callable[[dns.name.Name], bool], lookup: bool = True) -> Verdict:
        """Forward-confirmed reverse DNS of ``key`` for the names ``accepts`` takes.

        With ``lookup`` False only what is cached is used (for reasons and logs, after a match).
        The whole check, PTR and forward lookups together, takes at most ``ALLOW_DNS_TIMEOUT``.
        """
        deadline = time.monotonic() + self.settings.timeout
        family = key[0]
        pointers = self.reverse(key, deadline) if lookup else self.pointers.get(key)
        if pointers is None:
            error = "the reverse lookup did not finish in time" if lookup else None
            return Verdict(error=error)
        if pointers.status == ERROR:
            return Verdict(pointers, error=f"PTR {pointers.error}")
        verdict = Verdict(pointers)
        errors = []
        for name in [n for n in pointers.names if accepts(n)][:MAX_CANDIDATES]:
            forward = self.confirm(name, family, deadline) if lookup else self.confirmations.get((name, family))
            verdict.tried.append((name, forward))
            if forward is None:
                if lookup:
                    errors.append(f"{RDTYPE[family]} lookup of {display(name)} did not finish in time")
                continue
            if key in forward.addresses:
                verdict.name, verdict.forward = name, forward
                return verdict
            if forward.status == ERROR:
                errors.append(f"{forward.rdtype} {forward.error} for {display(name)}")
        verdict.error = "; ".join(errors) or None
        return verdict

    # -- housekeeping -----------------------------------------------------------

    def _log_failure(self, key: object, message: str) -> None:
        if not self.failures.should_log(key):
            return
        more = self.failures.take_suppressed()
        also = f" ({more} more DNS failures were not logged)" if more else ""
        if self.settings.deny_on_error:
            effect = "requests that reach a host-name rule needing it are denied"
        else:
            effect = "host-name rules needing it do not match"
        self.logger.warning("flask_allow: %s; %s for %g s%s", message, effect, self.settings.negative_ttl, also)

    def after_fork(self) -> None:
        """In a forked child: fresh locks, no thread; the first request starts the refresher again."""
        self.pointers.after_fork()
        self.confirmations.after_fork()
        self.failures.after_fork()
        if self.resolver.hosts is not None:
            self.resolver.hosts.after_fork()
        for listener in self.refresher.after_fork():
            listener.answer_changed()  # decisions cached before the fork are dropped in the child


def _after_fork_in_child() -> None:
    for service in list(_services):
        service.after_fork()


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)

"""The metric families, and what one app counts into them.

The families are made once per registry (a registry refuses a name twice), so apps sharing a
registry share the series. Under ``PROMETHEUS_MULTIPROC_DIR`` prometheus-client keeps every
value in a file per process and a scrape sums the counters of all workers; the gauges keep the
value set most recently by any process (``mostrecent``), since every worker holds the same rules.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge

if TYPE_CHECKING:
    from flask_allow import Decision, Rule

#: The error kinds flask_allow reports, counted from 0 so that a rate can be taken from the start.
KNOWN_ERRORS = ("client_address", "matcher", "dns", "source_refused")
#: The key of the decisions denied for an error with no rule to blame (an unreadable address).
ERROR = object()

_families: weakref.WeakKeyDictionary[CollectorRegistry, Families] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


class Families:
    """The metrics of flask_allow on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "flask_allow_decisions",
            "Requests decided by flask_allow: by action (allow, deny, default), the rule's location, "
            "and whether the decision was enforced (false: report-only or exempt).",
            ["action", "rule", "enforced"],
            registry=registry,
        )
        self.errors = Counter(
            "flask_allow_errors",
            "Errors flask_allow handled without failing a request, by kind.",
            ["kind"],
            registry=registry,
        )
        self.rules = Gauge(
            "flask_allow_rules",
            "Rules in force (ADDRESS_RESTRICTION and the route rules).",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.list_entries = Gauge(
            "flask_allow_list_entries",
            "Entries of each list rule (file: lists, feeds), by the rule's location.",
            ["rule"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.list_updated = Gauge(
            "flask_allow_list_updated_timestamp_seconds",
            "When each list rule's list last changed (a file's modification time), in Unix time.",
            ["rule"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        for kind in KNOWN_ERRORS:
            self.errors.labels(kind)
        self.registry = registry
        self._bans: Gauge | None = None

    @property
    def counts_bans(self) -> bool:
        """Whether some app on this registry has bans in use."""
        return self._bans is not None

    def bans(self) -> Gauge:
        """``flask_allow_bans``, made when an app with bans first needs it (apps without bans show none)."""
        with _lock:
            if self._bans is None:
                self._bans = Gauge(
                    "flask_allow_bans",
                    "Bans in force, in the copy of the bans each process searches.",
                    registry=self.registry,
                    multiprocess_mode="mostrecent",
                )
            return self._bans


def families_for(registry: CollectorRegistry) -> Families:
    """The families on ``registry``, made the first time."""
    with _lock:
        found = _families.get(registry)
        if found is None:
            found = _families[registry] = Families(registry)
        return found


def decision_labels(decision: Decision) -> tuple[str, str, str]:
    """``(action, rule, enforced)`` of a decision."""
    rule = decision.rule
    if decision.exempt:
        action, where = "allow", "exempt"
    elif rule is not None:  # a rule that failed to decide denies, whatever its action
        action, where = ("allow" if decision.allowed else "deny"), rule.location
    elif decision.error is not None:
        action, where = "deny", "error"
    else:
        action, where = "default", "default" if decision.scope is None else f"{decision.scope}.default"
    return action, where, "true" if decision.enforced else "false"


#: Per key (a rule, a scope for its default, ``ERROR``), the counters by ``[allowed][enforced]``.
Slots = dict[Any, list[list[Any]]]


class AppMetrics:
    """What one app counts: its families, the counters bound per rule, the list gauges it set.

    Kept in ``app.extensions["flask_allow_prometheus"]`` across reloads. ``slots`` is replaced
    whole when the rules change, so a request never sees it half made.
    """

    def __init__(self, registry: CollectorRegistry, own: bool) -> None:
        self.registry = registry
        #: Whether the registry is the app's own (made by the plugin), not one the app chose.
        self.own = own
        #: The path the metrics are served at, or None.
        self.path: str | None = None
        self.families = families_for(registry)
        self.slots: Slots = {}
        self._listed: set[str] = set()

    def child(self, key: Any, decision: Decision) -> Any:
        """Bind the counter of a decision met for the first time since the rules changed."""
        child = self.families.decisions.labels(*decision_labels(decision))
        slots = self.slots.get(key)
        if slots is None:
            slots = self.slots[key] = [[None, None], [None, None]]
        slots[decision.allowed][decision.enforced] = child
        return child

    def rules_changed(self, rules: list[Rule], lists: Iterable[Rule], default_allow: bool, report_only: bool) -> None:
        """Set the gauges and bind the counters of the rules now in force."""
        families = self.families
        families.rules.set(len(rules))
        listed: set[str] = set()
        for rule in lists:
            entries, updated = rule.matcher.entry_count(), rule.matcher.updated_at()
            if entries is not None:
                families.list_entries.labels(rule.location).set(entries)
                listed.add(rule.location)
            if updated is not None:
                families.list_updated.labels(rule.location).set(updated)
                listed.add(rule.location)
        for gone in self._listed - listed:  # a rule no longer there: its series go (one process only)
            for gauge in (families.list_entries, families.list_updated):
                with contextlib.suppress(KeyError):
                    gauge.remove(gone)
        self._listed = listed
        slots: Slots = {}
        for rule in rules:  # every rule's usual counter is there from the start, at 0
            allowed = rule.allowed
            enforced = allowed or not report_only
            labels = ("allow" if allowed else "deny", rule.location, "true" if enforced else "false")
            slots.setdefault(rule, [[None, None], [None, None]])[allowed][enforced] = families.decisions.labels(*labels)
        enforced = default_allow or not report_only
        labels = ("default", "default", "true" if enforced else "false")
        slots[None] = [[None, None], [None, None]]
        slots[None][default_allow][enforced] = families.decisions.labels(*labels)
        self.slots = slots

    def count_error(self, kind: str) -> None:
        self.families.errors.labels(kind).inc()

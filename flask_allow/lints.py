"""Start-up lints: rules that can never match, and DENY rules that catch clients they likely should not.

Computed once when a list is compiled, from the compiled indexes (a few binary searches per
network asked about), never on the request path. A rule holding many networks (a list file) is
asked about only up to ``SPANS_MAX`` of them, so a list of 10^6 networks costs no more than one
of a few thousand.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import Any

from .addresses import V4_MAX, V6_MAX, Span, format_span, parse_span
from .decision import ALLOW, DENY, Rule
from .index import SpanSet, StaticIndex, v6_position

#: The networks of a rule (or of a protected kind) looked at, at most; beyond, the rest is skipped.
SPANS_MAX = 4096
#: Networks a published list may carry as bogons, and who is behind them.
LOCALHOST = ("localhost", [parse_span(text)[0] for text in ("127.0.0.0/8", "::1")])
PRIVATE = (
    "private clients",
    [parse_span(text)[0] for text in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")],
)
#: The order in which who is denied is said; networks are listed in the same order.
RANK_LOCALHOST, RANK_PROXY, RANK_PRIVATE, RANK_ALLOW = range(4)
#: Networks shown in one lint before "...".
SHOWN = 4


def labels_over(index: StaticIndex, family: int, first: int, last: int) -> set[int]:
    """The labels ``index`` gives some address of ``first..last`` (0: no rule of the run)."""
    if family == 4:
        starts = index.v4_starts
        lo = bisect_right(starts, first) - 1
        hi = bisect_right(starts, last) - 1
        return set(index.v4_labels[lo : hi + 1])
    high, low = index.v6_high, index.v6_low
    return set(index.v6_labels[v6_position(high, low, first) : v6_position(high, low, last) + 1])


def covers_all(spans: Sequence[Span] | SpanSet) -> list[int]:
    """The families (4, 6) of which ``spans`` hold the whole address space."""
    if isinstance(spans, SpanSet):
        return [family for family in (4, 6) if spans.covers_all(family)]
    whole = {f for f, first, last in spans if first == 0 and last == (V4_MAX if f == 4 else V6_MAX)}
    return sorted(whole)


def first_spans(spans: Iterable[Span]) -> list[Span]:
    """At most ``SPANS_MAX`` of ``spans``."""
    found: list[Span] = []
    for span in spans:
        if len(found) == SPANS_MAX:
            break
        found.append(span)
    return found


def facts_of(spans: Sequence[Span] | SpanSet) -> dict[str, Any]:
    """What the lints need of a static rule's spans (JSON: an index cache keeps it with the index)."""
    return {"size": len(spans), "covers": covers_all(spans), "first": [list(span) for span in first_spans(spans)]}


class Runs:
    """The compiled segments of one list as the lints walk them: ``(index, rules)`` or a dynamic rule."""

    def __init__(self, segments: Sequence[Any]) -> None:
        self.segments = segments

    def deciders(self, span: Span, before: Rule | None = None) -> list[Rule]:
        """The static rules that decide for some address of ``span``, in order, up to ``before``.

        A run that decides every address of the span ends the walk (later ones are not reached).
        """
        found: list[Rule] = []
        for segment in self.segments:
            if isinstance(segment, Rule):
                if segment is before:
                    break
                continue
            rules: list[Rule] = segment.rules
            labels = labels_over(segment.index, *span)
            limit = rules.index(before) + 1 if before is not None and before in rules else None
            for label in sorted(labels):
                if label and (limit is None or label < limit):
                    found.append(rules[label - 1])
            if limit is not None or 0 not in labels:
                break
        return found

    def earlier_run_covers(self, rule: Rule, spans: Sequence[Span]) -> bool:
        """Whether one run before ``rule``'s leaves no address of ``spans`` to it."""
        for segment in self.segments:
            if isinstance(segment, Rule):
                if segment is rule:
                    return False
                continue
            if rule in segment.rules:
                return False
            if spans and all(0 not in labels_over(segment.index, *span) for span in spans):
                return True
        return False


class Denials:
    """DENY rules found deciding for networks someone wants let in: localhost, proxies, ALLOWs."""

    def __init__(self, runs: Runs, exempt: set[Rule], explicit: set[Rule]) -> None:
        self.runs = runs
        #: Catch-alls (``DENY all``): denying everyone else is what they are for.
        self.exempt = exempt
        #: Rules that name their one network outright: only a trusted proxy is said of them.
        self.explicit = explicit
        self.found: dict[Rule, tuple[dict[Span, int], dict[str, int]]] = {}

    def protect(self, spans: Iterable[Span], whose: str, rank: int, before: Rule | None = None) -> None:
        """Note every DENY rule that decides for some address of ``spans`` (``whose`` they are)."""
        for span in first_spans(spans):
            for rule in self.runs.deciders(span, before):
                if rule.action != DENY or rule in self.exempt or (rank != RANK_PROXY and rule in self.explicit):
                    continue
                networks, who = self.found.setdefault(rule, ({}, {}))
                networks.setdefault(span, rank)
                who.setdefault(whose, rank)

    def lints(self) -> list[str]:
        found = []
        for rule in sorted(self.found, key=lambda r: r.index):
            networks, who = self.found[rule]
            shown = [
                format_span(span)
                for span in sorted(networks, key=networks.__getitem__)
                if not any(o != span and o[0] == span[0] and o[1] <= span[1] and span[2] <= o[2] for o in networks)
            ]
            text = ", ".join(shown[:SHOWN]) + (", ..." if len(shown) > SHOWN else "")
            names = sorted(who, key=who.__getitem__)
            said = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
            plural = len(names) > 1 or "clients" in said
            verb = "are" if plural else "is"
            found.append(f"{rule.describe()} covers {text}: {said} {verb} denied")
        return found


class Coverage:
    """Facts gathered while compiling one list, for its start-up lints."""

    def __init__(self) -> None:
        self.all_v4: list[Rule] = []
        self.all_v6: list[Rule] = []
        self.empty: list[Rule] = []
        #: Each static rule's networks (at most ``SPANS_MAX``), to ask the indexes about.
        self.spans: dict[Rule, list[Span]] = {}
        #: The rules whose networks are all in ``spans``.
        self.complete: set[Rule] = set()
        self.explicit: set[Rule] = set()
        #: How many spans each static rule holds.
        self.sizes: dict[Rule, int] = {}

    def add(self, rule: Rule, spans: list[Span] | SpanSet) -> None:
        self.add_facts(rule, facts_of(spans))

    def add_facts(self, rule: Rule, facts: dict[str, Any]) -> None:
        """Take what ``facts_of`` found of a static rule's spans (kept with a shared index)."""
        size = self.sizes[rule] = facts["size"]
        if not size:
            self.empty.append(rule)
        for family in facts["covers"]:
            (self.all_v4 if family == 4 else self.all_v6).append(rule)
        self.spans[rule] = [Span(*span) for span in facts["first"]]
        if size <= SPANS_MAX:
            self.complete.add(rule)
        if size == 1 or rule.spec.lower() in type(rule.matcher).words:
            self.explicit.add(rule)

    def lints(self, rules: list[Rule], default_allow: bool, segments: Sequence[Any]) -> tuple[list[str], Denials]:
        """The lints of the list, and what later checks (trusted proxies) add DENY lints to."""
        found: list[str] = []
        denies_v4 = [r for r in self.all_v4 if r.action == DENY]
        if default_allow and denies_v4 and not self.all_v6:
            found.append(
                f"{denies_v4[0].describe()} denies every IPv4 client, but no rule covers IPv6: "
                "IPv6 clients fall to the default (allow). Add DENY '::/0' or use 'all'."
            )
        # an explicit catch-all of either action (``ALLOW all`` included) leaves nobody to the default
        if default_allow and any(r.action == ALLOW for r in rules) and not (self.all_v4 and self.all_v6):
            found.append(
                "ALLOW rules without a final catch-all DENY ('all') while ALLOW_DEFAULT is "
                "'allow': clients that match no rule are allowed anyway."
            )
        found.extend(f"{rule.describe()} holds no address and matches nothing" for rule in self.empty)
        runs = Runs(segments)
        found.extend(self._unreachable(runs, rules, set(self.empty)))
        denials = Denials(runs, set(self.all_v4) | set(self.all_v6), self.explicit)
        denials.protect(LOCALHOST[1], LOCALHOST[0], RANK_LOCALHOST)
        denials.protect(PRIVATE[1], PRIVATE[0], RANK_PRIVATE)
        catch_alls = set(self.all_v4) | set(self.all_v6)  # a DENY before ALLOW 'all' is what it is for
        for rule in rules:
            if rule.action == ALLOW and rule in self.spans and rule not in catch_alls:
                denials.protect(self.spans[rule], f"the clients {rule.describe()} names", RANK_ALLOW, before=rule)
        return found, denials

    def _unreachable(self, runs: Runs, rules: list[Rule], empty: set[Rule]) -> list[str]:
        """Rules that can never match: earlier rules of their run, or one earlier run, cover them."""
        found = []
        whole = [Span(4, 0, V4_MAX), Span(6, 0, V6_MAX)]
        for segment in runs.segments:
            if isinstance(segment, Rule):
                if runs.earlier_run_covers(segment, whole):
                    found.append(f"{segment.describe()} can never match: earlier rules cover every address")
                continue
            reachable = segment.index.labels()
            for label, rule in enumerate(segment.rules, start=1):
                if rule in empty:
                    continue
                covered = rule in self.complete and runs.earlier_run_covers(rule, self.spans[rule])
                if label not in reachable or covered:
                    found.append(f"{rule.describe()} can never match: earlier rules cover all of it")
        return found

"""The engine: configured lists in, compiled ordered rules out, ``decide(client) -> Decision``.

No Flask here. A run of consecutive static rules is one ``StaticIndex``; a dynamic rule (DNS) is
asked in its place. Decisions that rest only on static rules (or on dynamic matchers that report
their changes) are kept in a bounded cache keyed by the address text, dropped whenever the
rules or a DNS answer change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from .addresses import V4_MAX, V6_MAX, Span
from .client import Client
from .decision import ALLOW, DENY, Decision, Rule
from .errors import ConfigError, MatchError
from .index import StaticIndex
from .matcher import MatcherContext
from .registry import MatcherRegistry

_MISS = object()
ContextFactory = Callable[[str], MatcherContext]


def compile_rules(
    restriction: Any,
    registry: MatcherRegistry,
    make_context: ContextFactory,
    where: str = "ADDRESS_RESTRICTION",
) -> list[Rule]:
    """Build the ordered rules of an ``ADDRESS_RESTRICTION``-style list.

    Every error is collected; one ``ConfigError`` naming all of them is raised at the end, and
    matchers built before it are closed, so nothing is half-applied.
    """
    errors: list[ConfigError] = []
    rules: list[Rule] = []
    if restriction is None:
        return rules
    if not isinstance(restriction, (list, tuple)):
        raise ConfigError(
            f"must be a list of dicts with ALLOW and/or DENY, not {type(restriction).__name__}",
            where,
            restriction,
        )
    for i, entry in enumerate(restriction):
        here = f"{where}[{i}]"
        if not isinstance(entry, dict):
            errors.append(ConfigError(f"must be a dict with ALLOW and/or DENY, not {entry!r}", here, entry))
            continue
        unknown = [key for key in entry if key not in (ALLOW, DENY)]
        if unknown:
            errors.append(
                ConfigError(f"unknown key(s) {', '.join(map(repr, unknown))}; only ALLOW and DENY", here, entry)
            )
            continue
        if not entry:
            errors.append(ConfigError("empty entry: give ALLOW and/or DENY", here, entry))
        for action in (ALLOW, DENY):  # within one dict, ALLOW before DENY (as in 2.0.x)
            if action not in entry:
                continue
            values = entry[action]
            location = f"{here}.{action}"
            if isinstance(values, str):
                values = [values]
            if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
                errors.append(ConfigError(f"must be a string or a list of strings, not {values!r}", location, values))
                continue
            for j, value in enumerate(values):
                spot = location if len(entry[action]) == 1 or isinstance(entry[action], str) else f"{location}[{j}]"
                try:
                    rules.append(build_rule(action, value, spot, registry, make_context, len(rules)))
                except ConfigError as exc:
                    errors.append(exc)
    if errors:
        for rule in rules:
            rule.matcher.close()
        raise combine(errors)
    return rules


def build_rule(
    action: str,
    value: str,
    location: str,
    registry: MatcherRegistry,
    make_context: ContextFactory,
    index: int,
) -> Rule:
    """Resolve and construct the matcher for one rule value."""
    text = value.strip()
    if not text:
        raise ConfigError("empty rule value", location, value)
    try:
        cls, argument = registry.resolve(text)
        matcher = cls(argument, make_context(location))
    except ConfigError as exc:
        raise ConfigError(f"{value!r}: {exc}", location, value) from exc
    except (ValueError, OSError, TypeError) as exc:
        raise ConfigError(str(exc) if repr(text) in str(exc) else f"{value!r}: {exc}", location, value) from exc
    return Rule(action, text, location, matcher, index)


def combine(errors: Sequence[ConfigError]) -> ConfigError:
    """One ``ConfigError`` for several, listing each; ``.errors`` holds them all."""
    if len(errors) == 1:
        error = errors[0]
    else:
        lines = "\n".join(f"  {e}" for e in errors)
        error = ConfigError(f"{len(errors)} configuration errors:\n{lines}")
    error.errors = list(errors)  # type: ignore[attr-defined]
    return error


class _Run:
    """A run of consecutive static rules, compiled into one index."""

    __slots__ = ("index", "rules")

    def __init__(self, rules: list[Rule], spans: list[list[Span]]) -> None:
        self.rules = rules
        self.index = StaticIndex(spans)


class MatcherFailure(Exception):
    """A matcher raised while deciding; the request is denied (fail closed)."""

    def __init__(self, rule: Rule, error: BaseException) -> None:
        if isinstance(error, MatchError):
            super().__init__(f"{rule.describe()} cannot decide: {error}")
        else:
            super().__init__(f"{rule.describe()} failed: {type(error).__name__}: {error}")
        self.rule = rule


class Engine:
    """Compiled rules and a default: ``decide(client) -> Decision``.

    ``scope`` names the list for reasons (None for the global ``ADDRESS_RESTRICTION``).
    """

    def __init__(
        self,
        rules: list[Rule],
        default_allow: bool = True,
        cache_size: int = 65536,
        scope: str | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.rules = rules
        self.default_allow = default_allow
        self.scope = scope
        self.cache_size = cache_size
        self.logger = logger or logging.getLogger("flask_allow")
        self._cache: dict[str, Rule | None] = {}
        self._segments: list[_Run | Rule] = []
        self.lints: list[str] = []
        self._compile()
        only = self._segments[0] if len(self._segments) == 1 else None
        self._single: StaticIndex | None = only.index if isinstance(only, _Run) else None

    def _compile(self) -> None:
        run_rules: list[Rule] = []
        run_spans: list[list[Span]] = []
        covers = _Coverage()
        for rule in self.rules:
            spans = rule.matcher.spans()
            if spans is None:
                if run_rules:
                    self._segments.append(_Run(run_rules, run_spans))
                    run_rules, run_spans = [], []
                self._segments.append(rule)
                continue
            rule.static = True
            covers.add(rule, spans)
            run_rules.append(rule)
            run_spans.append(spans)
        if run_rules:
            self._segments.append(_Run(run_rules, run_spans))
        del run_spans
        self.lints = covers.lints(self.rules, self.default_allow, self._segments)

    @property
    def static(self) -> bool:
        """Whether every rule is static (the whole list is one index or empty)."""
        return all(isinstance(s, _Run) for s in self._segments)

    def invalidate(self) -> None:
        """Drop every cached decision (a dynamic matcher's answers changed)."""
        self._cache = {}

    def close(self) -> None:
        """Release every matcher (called when these rules are replaced)."""
        for rule in self.rules:
            try:
                rule.matcher.close()
            except Exception:  # closing old rules must not break a reload
                self.logger.exception("flask_allow: closing %s failed", rule.describe())

    def lookup(self, address: str) -> Rule | None:
        """Return the rule that decides for ``address``, or None when the default decides.

        The fast path (cached, parse included). Raises ``ValueError`` for an address that is not
        an IP address and ``MatcherFailure`` when a dynamic matcher fails.
        """
        rule = self._cache.get(address, _MISS)
        if rule is not _MISS:
            return rule  # type: ignore[return-value]
        client = Client(address)
        if client.key is None:
            raise ValueError(f"client address {address!r} is not an IP address")
        return self._lookup(client)

    def _lookup(self, client: Client) -> Rule | None:
        single = self._single
        if single is not None:
            label = single.lookup(*client.key)  # type: ignore[misc]
            rule = self._segments[0].rules[label - 1] if label else None  # type: ignore[union-attr]
            cacheable = True
        else:
            rule, cacheable = self._match(client)
        if cacheable and self.cache_size:
            cache = self._cache
            if len(cache) >= self.cache_size:
                cache.clear()
            cache[client.address] = rule
        return rule

    def _match(self, client: Client) -> tuple[Rule | None, bool]:
        family, value = client.key  # type: ignore[misc]
        cacheable = True
        for segment in self._segments:
            if type(segment) is _Run:
                label = segment.index.lookup(family, value)
                if label:
                    return segment.rules[label - 1], cacheable
                continue
            rule: Rule = segment  # type: ignore[assignment]
            matcher = rule.matcher
            cacheable = cacheable and matcher.cacheable
            try:
                if matcher.matches(client):
                    return rule, cacheable
            except Exception as exc:
                raise MatcherFailure(rule, exc) from exc
        return None, cacheable

    def decide(self, client: Client) -> Decision:
        """Decide for ``client``: first matching rule, else the default. Never raises."""
        rule = self._cache.get(client.address, _MISS)
        if rule is _MISS:
            if client.key is None and self.rules:
                return Decision(
                    client, None, False, f"client address {client.address!r} is not an IP address", self.scope
                )
            if client.key is None:  # no rules at all: nothing to match, the default decides
                return Decision(client, None, self.default_allow, None, self.scope)
            try:
                rule = self._lookup(client)
            except MatcherFailure as failure:
                if not isinstance(failure.__cause__, MatchError):
                    self.logger.error("flask_allow: %s (request denied)", failure, exc_info=failure.__cause__)
                return Decision(client, failure.rule, False, str(failure), self.scope)
        if rule is None:
            return Decision(client, None, self.default_allow, None, self.scope)
        return Decision(client, rule, rule.allowed, None, self.scope)  # type: ignore[attr-defined,arg-type]

    def explain(self, client: Client) -> list[tuple[Rule, str, str]]:
        """Trace the rules for ``client`` in order: ``(rule, outcome, why)`` up to the decider.

        ``outcome`` is "match", "no match" or "error". Static rules before the deciding one
        are known not to match from the index; dynamic ones are asked to explain themselves.
        """
        trace: list[tuple[Rule, str, str]] = []
        if client.key is None:
            return trace
        try:
            decider, _ = self._match(client)
        except MatcherFailure as failure:
            decider = failure.rule
        for rule in self.rules:
            try:
                if rule is decider:
                    trace.append((rule, "match", rule.matcher.explain(client)))
                    break
                why = "does not match" if rule.static else rule.matcher.explain(client)
                trace.append((rule, "no match", why))
            except Exception as exc:
                trace.append((rule, "error", f"{type(exc).__name__}: {exc}"))
                break
        return trace


class _Coverage:
    """Facts gathered while compiling, for the start-up lints."""

    def __init__(self) -> None:
        self.all_v4: list[Rule] = []
        self.all_v6: list[Rule] = []
        self.empty: list[Rule] = []

    def add(self, rule: Rule, spans: list[Span]) -> None:
        if not spans:
            self.empty.append(rule)
        for family, first, last in spans:
            if first == 0 and last == (V4_MAX if family == 4 else V6_MAX):
                (self.all_v4 if family == 4 else self.all_v6).append(rule)

    def lints(self, rules: list[Rule], default_allow: bool, segments: list[_Run | Rule]) -> list[str]:
        found: list[str] = []
        denies_v4 = [r for r in self.all_v4 if r.action == DENY]
        denies_v6 = [r for r in self.all_v6 if r.action == DENY]
        if default_allow and denies_v4 and not self.all_v6:
            found.append(
                f"{denies_v4[0].describe()} denies every IPv4 client, but no rule covers IPv6: "
                "IPv6 clients fall to the default (allow). Add DENY '::/0' or use 'all'."
            )
        if default_allow and any(r.action == ALLOW for r in rules) and not (denies_v4 and denies_v6):
            found.append(
                "ALLOW rules without a final catch-all DENY ('all') while ALLOW_DEFAULT is "
                "'allow': clients that match no rule are allowed anyway."
            )
        found.extend(f"{rule.describe()} holds no address and matches nothing" for rule in self.empty)
        found.extend(_shadowed(segments, set(self.empty)))
        return found


def _shadowed(segments: list[_Run | Rule], empty: set[Rule]) -> list[str]:
    """Static rules that can never match, because earlier rules of their run cover them."""
    found = []
    for segment in segments:
        if not isinstance(segment, _Run):
            continue
        index = segment.index
        reachable = set(index.v4_labels) | set(index.v6_labels)
        for label, rule in enumerate(segment.rules, start=1):
            if label not in reachable and rule not in empty:
                found.append(f"{rule.describe()} can never match: earlier rules cover all of it")
    return found

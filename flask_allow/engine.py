"""The engine: configured lists in, compiled ordered rules out, ``decide(client) -> Decision``.

No Flask here. A run of consecutive static rules is one ``StaticIndex``; a dynamic rule (DNS) is
asked in its place. A list with dynamic rules keeps its decisions (those that rest only on static
rules or on dynamic matchers that report their changes) in a bounded cache keyed by the address
text, dropped whenever the rules or a DNS answer change; an all-static list needs none, its index
answers as fast as a cache would.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from socket import AF_INET, AF_INET6, inet_pton
from typing import Any

from .addresses import V4_MAX, V6_MAX, Span, parse_client
from .client import Client
from .clookup import c_lookup
from .decision import ALLOW, DENY, Decision, Rule
from .errors import ConfigError, MatchError
from .index import RADIX_SHIFT, SpanSet, StaticIndex
from .matcher import Matcher, MatcherContext
from .registry import MatcherRegistry
from .throttle import Throttle

_MISS: Any = object()
_from_bytes = int.from_bytes
_MAPPED = b"\x00" * 10 + b"\xff\xff"
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
    except Exception as exc:  # a plugin's bug is still this rule's error, reported at start-up
        raise ConfigError(f"{value!r}: {type(exc).__name__}: {exc}", location, value) from exc
    return Rule(action, text, location, matcher, index)


def combine(errors: Sequence[ConfigError]) -> ConfigError:
    """One ``ConfigError`` for several, listing each; ``.errors`` holds them all (flattened)."""
    flat: list[ConfigError] = []
    for single in (single for error in errors for single in error.errors):
        # A rule that failed only because of a setting already reported says nothing new.
        cause = single.__cause__
        if isinstance(cause, ConfigError) and any(str(cause) == str(seen) for seen in flat):
            continue
        if any(str(single) == str(seen) for seen in flat):  # one key checked in two places
            continue
        flat.append(single)
    if len(flat) == 1:
        return flat[0]
    lines = "\n".join(f"  {e}" for e in flat)
    error = ConfigError(f"{len(flat)} configuration errors:\n{lines}")
    error.errors = flat
    return error


class _Run:
    """A run of consecutive static rules, compiled into one index."""

    __slots__ = ("index", "rules")

    def __init__(self, rules: list[Rule], spans: list[list[Span] | SpanSet]) -> None:
        self.rules = rules
        self.index = StaticIndex(spans)


def static_spans(matcher: Matcher) -> list[Span] | SpanSet | None:
    """A matcher's static spans: its compact ``span_set()`` when it has one, else ``spans()``."""
    span_set = getattr(matcher, "span_set", None)
    if span_set is not None:
        found = span_set()
        if isinstance(found, SpanSet):
            return found
    return matcher.spans()


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

    ``lookup(address)`` is the fast path: the rule that decides for an address string, or None
    when the default decides (parsing included, no ``Client``, no ``Decision``). It raises
    ``ValueError`` for an address that is not an IP address and ``MatcherFailure`` when a dynamic
    matcher fails. It is a function made for this engine's index and cache, remade whenever the
    cache is dropped.
    """

    lookup: Callable[[str], Rule | None]
    #: Where ``lookup`` searches an all-static list's index: "C" (``flask_allow._lookup``) or "Python".
    searched_in = "Python"

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
        self._unparsable = Throttle()
        self._compile()
        # The leading static runs and rules answered from the address text alone (the bans):
        # searched in front of the cache, so what follows them keeps the fast paths.
        ahead = 0
        for i, segment in enumerate(self._segments):
            if isinstance(segment, _Run):
                continue
            if _text_lookup(segment) is None:
                break
            ahead = i + 1
        self._head = self._segments[:ahead]
        self._rest = self._segments[ahead:]
        #: Whether every rule is static, or answered from the address text in front of static ones
        #: (then ``lookup`` is the whole decision, with no cache).
        self.static = all(isinstance(s, _Run) for s in self._rest)
        #: Whether decisions are cached: for lists with dynamic rules, unless ``cache_size`` is 0.
        self._caching = bool(cache_size) and not self.static
        # An all-static list (or none) is one index: its rules by label, 0 (no match) first.
        only = self._rest[0] if len(self._rest) == 1 else None
        self._index = only.index if isinstance(only, _Run) else StaticIndex([])
        self._by_label: tuple[Rule | None, ...] | None = None
        if self.static:
            self._by_label = (None, *only.rules) if isinstance(only, _Run) else (None,)
        self._ahead: Callable[[str], Rule | None] | None = self._make_head() if self._head else None
        if self._head and not self._rest:  # the bans alone: their own index, searched in C when built
            from .clookup import available

            self.searched_in = "C" if available() else "Python"
        self.lookup = self._make_lookup(self._cache)

    def _compile(self) -> None:
        run_rules: list[Rule] = []
        run_spans: list[list[Span] | SpanSet] = []
        covers = _Coverage()
        errors: list[ConfigError] = []
        for rule in self.rules:
            try:
                spans = static_spans(rule.matcher)
            except Exception as exc:  # a plugin's networks() holding a bad entry: that rule's error
                errors.append(ConfigError(f"{rule.spec!r}: {type(exc).__name__}: {exc}", rule.location, rule.spec))
                continue
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
        if errors:
            self.close()
            raise combine(errors)
        if run_rules:
            self._segments.append(_Run(run_rules, run_spans))
        del run_spans
        self.lints = covers.lints(self.rules, self.default_allow, self._segments)

    def invalidate(self) -> None:
        """Drop every cached decision (a dynamic matcher's answers changed).

        The cache is replaced, not emptied: a decision still being made with the old answers
        goes into the old cache, which nothing reads any more.
        """
        cache: dict[str, Rule | None] = {}
        self.lookup = self._make_lookup(cache)
        self._cache = cache

    def close(self) -> None:
        """Release every matcher (called when these rules are replaced)."""
        for rule in self.rules:
            try:
                rule.matcher.close()
            except Exception:  # closing old rules must not break a reload
                self.logger.exception("flask_allow: closing %s failed", rule.describe())

    def _make_lookup(self, cache: dict[str, Rule | None]) -> Callable[[str], Rule | None]:
        """Make ``lookup`` for ``cache``: the index searched in C, or inlined in Python, for an
        all-static list; else generic. The rules ahead (``_head``) are searched first, uncached.

        An all-static list needs no cache: searching its index costs less than a probe into the
        cache would (hashing the address text and a dict lookup), and a stream of new clients
        would only churn it. The cache stands in front of dynamic rules.
        """
        only = self._rest[0] if len(self._rest) == 1 else None
        ahead = self._ahead
        if not isinstance(only, _Run):
            get = cache.get
            slow = self._slow_lookup
            if not self._rest:
                return ahead if ahead is not None else self._no_rules

            def lookup(address: str) -> Rule | None:
                if ahead is not None:
                    found = ahead(address)
                    if found is not None:
                        return found
                rule = get(address, _MISS)
                if rule is _MISS:
                    return slow(address, cache)
                return rule

            return lookup
        assert self._by_label is not None  # set for every all-static list
        found = self._run_lookup(only.index, self._by_label, record=True)
        return found if ahead is None else _then(ahead, found)

    def _no_rules(self, address: str) -> Rule | None:
        if parse_client(address) is None:
            raise ValueError(f"client address {address!r} is not an IP address")
        return None

    def _make_head(self) -> Callable[[str], Rule | None]:
        """Search the rules ahead in order: each static run's index, each text rule's own search."""
        steps: list[Callable[[str], Rule | None]] = []
        for segment in self._head:
            if isinstance(segment, _Run):
                steps.append(self._run_lookup(segment.index, (None, *segment.rules)))
            else:
                steps.append(_text_step(segment))
        if len(steps) == 1:
            return steps[0]

        def ahead(address: str) -> Rule | None:
            for step in steps:
                found = step(address)
                if found is not None:
                    return found
            return None

        return ahead

    def _run_lookup(
        self, index: StaticIndex, rules: tuple[Rule | None, ...], record: bool = False
    ) -> Callable[[str], Rule | None]:
        """``lookup(address) -> rules[label]`` over one run's index, in C or inlined in Python."""
        # One index holds the run: an IPv4 client is parsed and searched right here (no
        # Client, no Decision); anything else (IPv6, mapped, not an address) takes ``other``.
        labels = index.v4_labels
        pton, family, from_bytes, search = inet_pton, AF_INET, _from_bytes, bisect_right

        high, low, labels6, keys6 = index.v6_high, index.v6_low, index.v6_labels, index.v6_keys

        def other(address: str) -> Rule | None:
            try:
                packed = pton(AF_INET6, address)
            except (OSError, TypeError, ValueError):  # a zone (fe80::1%eth0), or not an address
                key = parse_client(address)
                if key is None:
                    raise ValueError(f"client address {address!r} is not an IP address") from None
                return rules[index.lookup(*key)]
            if packed[:12] == _MAPPED:  # ::ffff:a.b.c.d is a.b.c.d
                return rules[index.lookup(4, from_bytes(packed[12:], "big"))]
            if keys6 is not None:
                return rules[labels6[search(keys6, packed) - 1]]
            top = from_bytes(packed[:8], "big")
            i = search(high, top)
            if high[i - 1] == top:  # boundaries share this high half: the low halves decide
                i = search(low, from_bytes(packed[8:], "big"), bisect_left(high, top, 0, i), i)
            return rules[labels6[i - 1]]

        fast = c_lookup(index, rules, other)
        if fast is not None:
            if record:
                self.searched_in = "C"
            return fast
        keys = index.v4_keys
        if keys is not None:

            def lookup_small(address: str) -> Rule | None:
                try:
                    packed = pton(family, address)
                except (OSError, TypeError, ValueError):
                    return other(address)
                return rules[labels[search(keys, packed) - 1]]

            return lookup_small

        starts, direct, radix, shift = index.v4_starts, index.v4_direct, index.v4_radix, RADIX_SHIFT
        assert direct is not None and radix is not None
        if index.v4_pair is None:

            def lookup_radix(address: str) -> Rule | None:
                try:
                    value = from_bytes(pton(family, address), "big")
                except (OSError, TypeError, ValueError):
                    return other(address)
                bucket = value >> shift
                label = direct[bucket]
                if label < 0:  # the /16 holds boundaries: search among them
                    label = labels[search(starts, value, radix[bucket], radix[bucket + 1]) - 1]
                return rules[label]

            return lookup_radix

        pair = (rules[index.v4_pair[0]], rules[index.v4_pair[1]])

        def lookup_pair(address: str) -> Rule | None:
            try:
                value = from_bytes(pton(family, address), "big")
            except (OSError, TypeError, ValueError):
                return other(address)
            bucket = value >> shift
            label = direct[bucket]
            if label < 0:
                return pair[(search(starts, value, radix[bucket], radix[bucket + 1]) - 1) & 1]
            return rules[label]

        return lookup_pair

    def _slow_lookup(self, address: str, cache: dict[str, Rule | None]) -> Rule | None:
        client = Client(address)
        if client.key is None:
            raise ValueError(f"client address {address!r} is not an IP address")
        return self._lookup(client, cache)

    def _lookup(self, client: Client, cache: dict[str, Rule | None]) -> Rule | None:
        """Match the rules after those ahead (already searched), and remember in ``cache`` (the
        one that was current when the lookup began)."""
        rule, cacheable = self._match(client, len(self._head))
        if cacheable and self._caching:
            if len(cache) >= self.cache_size:
                cache.clear()
            cache[client.address] = rule
        return rule

    def _match(self, client: Client, start: int = 0) -> tuple[Rule | None, bool]:
        family, value = client.key  # type: ignore[misc]
        cacheable = True
        for segment in self._segments[start:] if start else self._segments:
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
        if self._by_label is not None:  # all static: one search of the address text, nothing cached
            try:
                rule = self.lookup(client.address)
            except ValueError:  # not an IP address: said and denied below
                pass
            except Exception as exc:  # cannot happen with a consistent index; fail closed if it does
                self.logger.error("flask_allow: looking up %r failed (request denied)", client.address, exc_info=exc)
                return Decision(client, None, False, f"the rules could not be searched: {exc}", self.scope)
            else:
                if rule is None:
                    return Decision(client, None, self.default_allow, None, self.scope)
                return Decision(client, rule, rule.allowed, None, self.scope)
        cache = self._cache
        ahead = self._ahead
        if ahead is not None and client.key is not None:  # the bans first, never from the cache
            try:
                found = ahead(client.address)
            except ValueError:
                found = None
            if found is not None:
                return Decision(client, found, found.allowed, None, self.scope)
        rule = cache.get(client.address, _MISS)
        if rule is _MISS:
            if client.key is None and self.rules:
                # logged here too, so a denial is never silent when no ACCESS_LOG is configured;
                # throttled, since every request of a misconfigured server would say it again
                self._unparsable.warn(self.logger, "client address %r is not an IP address (denied)", client.address)
                return Decision(
                    client, None, False, f"client address {client.address!r} is not an IP address", self.scope
                )
            if client.key is None:  # no rules at all: nothing to match, the default decides
                return Decision(client, None, self.default_allow, None, self.scope)
            try:
                rule = self._lookup(client, cache)
            except MatcherFailure as failure:
                if not isinstance(failure.__cause__, MatchError):
                    self.logger.error("flask_allow: %s (request denied)", failure, exc_info=failure.__cause__)
                return Decision(client, failure.rule, False, str(failure), self.scope)
        if rule is None:
            return Decision(client, None, self.default_allow, None, self.scope)
        return Decision(client, rule, rule.allowed, None, self.scope)

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


def _text_lookup(rule: Rule) -> Callable[[str], bool] | None:
    """A dynamic rule's search by address text (``Matcher.text_lookup``), or None."""
    try:
        return rule.matcher.text_lookup()
    except Exception:  # a plugin's bug: the rule is asked the usual way
        return None


def _text_step(rule: Rule) -> Callable[[str], Rule | None]:
    hit = _text_lookup(rule)
    assert hit is not None

    def step(address: str) -> Rule | None:
        return rule if hit(address) else None

    return step


def _then(ahead: Callable[[str], Rule | None], rest: Callable[[str], Rule | None]) -> Callable[[str], Rule | None]:
    """Search ``ahead``, then ``rest``: the lookup of a list whose first rules are the bans."""

    def lookup(address: str) -> Rule | None:
        found = ahead(address)
        if found is None:
            return rest(address)
        return found

    return lookup


class _Coverage:
    """Facts gathered while compiling, for the start-up lints."""

    def __init__(self) -> None:
        self.all_v4: list[Rule] = []
        self.all_v6: list[Rule] = []
        self.empty: list[Rule] = []

    def add(self, rule: Rule, spans: list[Span] | SpanSet) -> None:
        if not spans:
            self.empty.append(rule)
        if isinstance(spans, SpanSet):
            covers = [family for family in (4, 6) if spans.covers_all(family)]
        else:
            covers = [f for f, first, last in spans if first == 0 and last == (V4_MAX if f == 4 else V6_MAX)]
        for family in dict.fromkeys(covers):
            (self.all_v4 if family == 4 else self.all_v6).append(rule)

    def lints(self, rules: list[Rule], default_allow: bool, segments: list[_Run | Rule]) -> list[str]:
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
        found.extend(_shadowed(segments, set(self.empty)))
        return found


def _shadowed(segments: list[_Run | Rule], empty: set[Rule]) -> list[str]:
    """Static rules that can never match, because earlier rules of their run cover them."""
    found = []
    for segment in segments:
        if not isinstance(segment, _Run):
            continue
        index = segment.index
        reachable = index.labels()
        for label, rule in enumerate(segment.rules, start=1):
            if label not in reachable and rule not in empty:
                found.append(f"{rule.describe()} can never match: earlier rules cover all of it")
    return found

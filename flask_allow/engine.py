"""The engine: configured lists in, compiled ordered rules out, ``decide(client) -> Decision``.

No Flask here. A run of consecutive static rules is one ``StaticIndex``; a dynamic rule (DNS) is
asked in its place. A list with dynamic rules keeps its decisions (those that rest only on static
rules or on dynamic matchers that report their changes) in a cache keyed by the address text,
bounded in entries and in the length of a key, dropped whenever the rules or a DNS answer
change; an all-static list needs none, its index answers as fast as a cache would.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from socket import AF_INET, AF_INET6, inet_pton
from typing import Any

from . import clookup
from .addresses import Span, parse_client
from .client import Client
from .clookup import c_lookup
from .decision import ALLOW, DENY, Decision, Rule
from .errors import ConfigError, MatchError
from .index import RADIX_SHIFT, SpanSet, StaticIndex
from .indexfile import digest, shared_index
from .lints import RANK_PROXY, Coverage, facts_of
from .matcher import Matcher, MatcherContext
from .registry import MatcherRegistry
from .throttle import Throttle

#: Seconds of reading and compiling a run of static rules past which the time is logged (INFO).
SLOW = 1.0
_MISS: Any = object()
#: The longest client address text a decision is cached for: any address (45 characters at most)
#: with an interface-name zone. A longer text (``fe80::1%<4 KiB>``, only ever crafted) is decided
#: afresh each time, so the cache is bounded in bytes as well as in entries.
CACHED_TEXT_MAX = 64
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
    started = time.perf_counter()
    try:
        cls, argument = registry.resolve(text)
        matcher = cls(argument, make_context(location))
    except ConfigError as exc:
        raise ConfigError(f"{value!r}: {exc}", location, value) from exc
    except (ValueError, OSError, TypeError) as exc:
        raise ConfigError(str(exc) if repr(text) in str(exc) else f"{value!r}: {exc}", location, value) from exc
    except Exception as exc:  # a plugin's bug is still this rule's error, reported at start-up
        raise ConfigError(f"{value!r}: {type(exc).__name__}: {exc}", location, value) from exc
    rule = Rule(action, text, location, matcher, index)
    rule.seconds = time.perf_counter() - started  # reading a list file happens here
    return rule


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


def fatal_lints(lints: Iterable[str]) -> list[ConfigError]:
    """Each lint as a ``ConfigError`` (``ALLOW_LINTS_FATAL``)."""
    return [ConfigError(f"{lint} (lints are errors: ALLOW_LINTS_FATAL is True)") for lint in lints]


def search_other(index: StaticIndex, rules: tuple[Rule | None, ...]) -> Callable[[str], Rule | None]:
    """``search(address) -> rules[label]`` over ``index`` in Python, for any address text.

    What the C search hands back what it does not parse itself, and the IPv6 path of the inlined
    Python searches: IPv6 (mapped IPv4 as IPv4), a zone (``fe80::1%eth0``); ``ValueError`` for
    text that is not an IP address.
    """
    high, low, labels6, keys6 = index.v6_high, index.v6_low, index.v6_labels, index.v6_keys
    pton, from_bytes, search = inet_pton, _from_bytes, bisect_right

    def other(address: str) -> Rule | None:
        try:
            packed = pton(AF_INET6, address)
        except (OSError, TypeError, ValueError):  # IPv4, a zone (fe80::1%eth0), or not an address
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

    return other


def run_search(index: StaticIndex, rules: tuple[Rule | None, ...]) -> Callable[[str], Rule | None] | None:
    """The C search of one run's index by address text (``rules[label]``), or None without C.

    Every run gets it, so a list with dynamic rules keeps searching its static runs in C.
    """
    return c_lookup(index, rules, search_other(index, rules))


class _Run:
    """A run of consecutive static rules, compiled into one index.

    ``search(address)`` is its C search (None when indexes are searched in Python).
    """

    __slots__ = ("by_label", "index", "rules", "search")

    def __init__(self, rules: list[Rule], spans: list[list[Span] | SpanSet], index: StaticIndex | None = None) -> None:
        self.rules = rules
        self.index = StaticIndex(spans) if index is None else index
        self.by_label: tuple[Rule | None, ...] = (None, *rules)
        self.search = run_search(self.index, self.by_label)


class _Failed(Exception):
    """A rule's spans could not be had; its ``ConfigError`` is in the list of errors."""


def _spans_of(rule: Rule, errors: list[ConfigError]) -> list[Span] | SpanSet | None:
    """``static_spans`` of a rule's matcher; ``_Failed`` (the rule's error added to ``errors``)."""
    try:
        return static_spans(rule.matcher)
    except Exception as exc:  # a plugin's networks() holding a bad entry, a list that fails to read
        errors.append(_rule_error(rule, exc))
        raise _Failed from None


def _rule_error(rule: Rule, exc: Exception) -> ConfigError:
    return ConfigError(f"{rule.spec!r}: {type(exc).__name__}: {exc}", rule.location, rule.spec)


def _index_key(matcher: Matcher) -> str | None:
    """What names a large static matcher's index in the index cache (``index_key()``), or None."""
    key = getattr(matcher, "index_key", None)
    return key() if callable(key) else None


def _facts_of(matcher: Matcher) -> Any:
    facts = getattr(matcher, "index_facts", None)
    return facts() if callable(facts) else None


def _spans_key(spans: list[Span] | SpanSet) -> bytes:
    """The spans of a small rule of a shared run, as bytes for the run's digest."""
    if isinstance(spans, SpanSet):
        return spans.v4_first.tobytes() + b"|" + spans.v4_last.tobytes() + b"|" + bytes(spans.v6)
    return repr([tuple(span) for span in spans]).encode()


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
        index_cache: str | None = None,
    ) -> None:
        self.rules = rules
        self.default_allow = default_allow
        self.scope = scope
        self.cache_size = cache_size
        self.logger = logger or logging.getLogger("flask_allow")
        #: The folder where large indexes are shared between the processes of a machine, or None.
        self.index_cache = index_cache
        self._cache: dict[str, Rule | None] = {}
        self._segments: list[_Run | Rule] = []
        self.lints: list[str] = []
        self._unparsable = Throttle()
        self._compile()
        if rules:
            clookup.say_if_missing(self.logger)
        # The leading static runs and rules answered from the address text alone (the bans):
        # searched in front of the cache, so what follows them keeps the fast paths.
        ahead = 0
        texts: dict[int, Callable[[str], Rule | None]] = {}  # position -> the text rule's search
        for i, segment in enumerate(self._segments):
            if isinstance(segment, _Run):
                continue
            hit = _text_lookup(segment)
            if hit is None:
                break
            texts[i] = _text_step(segment, hit)
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
            self._by_label = only.by_label if isinstance(only, _Run) else (None,)
        self._ahead: Callable[[str], Rule | None] | None = self._make_head(texts) if self._head else None
        if self._head and not self._rest:  # the bans alone: their own index, searched in C when built
            self.searched_in = "C" if clookup.available() else "Python"
        self.lookup = self._make_lookup(self._cache)

    def _compile(self) -> None:
        run: list[tuple[Rule, list[Span] | SpanSet | None]] = []  # None: a large list, read when built
        covers = Coverage()
        errors: list[ConfigError] = []
        for rule in self.rules:
            if self.index_cache is not None and _index_key(rule.matcher) is not None:
                rule.static = True
                run.append((rule, None))
                continue
            started = time.perf_counter()
            try:
                spans = _spans_of(rule, errors)
            except _Failed:
                continue
            rule.seconds += time.perf_counter() - started
            if spans is None:
                if run:
                    self._add_run(run, covers, errors)
                    run = []
                self._segments.append(rule)
                continue
            rule.static = True
            run.append((rule, spans))
        if run:
            self._add_run(run, covers, errors)
        del run
        if errors:
            self.close()
            raise combine(errors)
        self._lints, self._denials = covers.lints(self.rules, self.default_allow, self._segments)
        self.lints = self._lints + self._denials.lints()

    def _add_run(
        self, run: list[tuple[Rule, list[Span] | SpanSet | None]], covers: Coverage, errors: list[ConfigError]
    ) -> None:
        """Compile a run; say what took the time when reading and compiling it took over ``SLOW`` s."""
        started = time.perf_counter()
        rules = [rule for rule, _ in run]
        index = self._shared(run, covers, errors) if any(spans is None for _, spans in run) else None
        found: list[list[Span] | SpanSet] = []
        if index is None:  # no index cache (or it could not be used): read every list here
            for rule, spans in run:
                try:
                    spans = _spans_of(rule, errors) if spans is None else spans
                except _Failed:
                    return
                assert spans is not None  # a matcher with an index key is static
                covers.add(rule, spans)
                found.append(spans)
        compiled = _Run(rules, found, index)
        self._segments.append(compiled)
        seconds = time.perf_counter() - started + sum(rule.seconds for rule in rules)
        if seconds > SLOW:
            sizes = [covers.sizes.get(rule, 0) for rule in rules]
            biggest = sorted(zip(sizes, rules, strict=True), key=lambda pair: -pair[0])
            named = ", ".join(rule.describe() for _, rule in biggest[:3]) + (", ..." if len(rules) > 3 else "")
            self.logger.info(
                "flask_allow: %s: %s entries read and compiled in %.1f s (once per process: under gunicorn, "
                "--preload compiles before the workers fork)",
                named,
                f"{compiled.index.size:,}",
                seconds,
            )

    def _shared(
        self, run: list[tuple[Rule, list[Span] | SpanSet | None]], covers: Coverage, errors: list[ConfigError]
    ) -> StaticIndex | None:
        """The run's index from the index cache (built there first when missing), or None when the
        cache cannot be used; a rule that fails to read is added to ``errors``."""
        assert self.index_cache is not None
        parts = [_index_key(rule.matcher) if spans is None else _spans_key(spans) for rule, spans in run]
        read_here: set[int] = set()

        def build() -> tuple[StaticIndex, list[dict[str, Any]]]:
            found: list[list[Span] | SpanSet] = []
            failed: list[ConfigError] = []
            for position, (rule, spans) in enumerate(run):
                if spans is None:
                    read_here.add(position)
                    try:
                        spans = _spans_of(rule, failed)
                    except _Failed:
                        continue
                assert spans is not None  # a matcher with an index key is static
                found.append(spans)
            if failed:
                raise combine(failed)
            facts = [
                {"lints": facts_of(spans), "matcher": _facts_of(rule.matcher)}
                for (rule, _), spans in zip(run, found, strict=True)
            ]
            return StaticIndex(found), facts

        try:
            index = shared_index(self.index_cache, digest(parts), build)  # type: ignore[arg-type]
        except ConfigError as exc:
            errors.extend(exc.errors)
            return None
        except OSError as exc:
            self.logger.warning(
                "flask_allow: the index cache %s cannot be used (%s): every process compiles its own index",
                self.index_cache,
                exc.strerror or exc,
            )
            return None
        for position, ((rule, spans), facts) in enumerate(zip(run, index.facts, strict=True)):
            covers.add_facts(rule, facts["lints"])
            if spans is None and position not in read_here:
                try:
                    rule.matcher.take_index_facts(facts["matcher"])  # type: ignore[attr-defined]
                except Exception as exc:  # a shrink held back, say
                    errors.append(_rule_error(rule, exc))
        return index

    def protect(self, spans: Iterable[Span], whose: str) -> None:
        """Lint the DENY rules that decide for some address of ``spans`` (a trusted proxy's)."""
        self._denials.protect(spans, whose, RANK_PROXY)
        self.lints = self._lints + self._denials.lints()

    def rename(self, scope: str) -> None:
        """Name this list ``scope`` from now on, in its reasons, rule locations and lints.

        A route's rules are compiled when ``restrict`` is applied, often before the app knows the
        route's endpoint; they take the endpoint's name once it does, without being rebuilt.
        """
        old = self.scope
        if old is None or old == scope:
            return
        for rule in self.rules:
            was = rule.location
            if not was.startswith(old):
                continue
            rule.location = scope + was[len(old) :]
            context = getattr(rule.matcher, "context", None)
            if isinstance(context, MatcherContext) and context.location == was:
                context.location = rule.location
            if getattr(rule.matcher, "location", None) == was:  # a matcher's copy (host names)
                rule.matcher.location = rule.location  # type: ignore[attr-defined]
        self._lints = [lint.replace(f"{old}[", f"{scope}[") for lint in self._lints]
        self.scope = scope
        self.lints = self._lints + self._denials.lints()

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
        all-static list; else generic.

        An all-static list needs no cache: searching its index costs less than a probe into the
        cache would (hashing the address text and a dict lookup), and a stream of new clients
        would only churn it. The cache stands in front of dynamic rules.
        """
        only = self._rest[0] if len(self._rest) == 1 else None
        ahead = self._ahead
        if not isinstance(only, _Run):
            if not self._rest:
                return ahead if ahead is not None else self._no_rules
            get = cache.get
            slow = self._slow_lookup
            rest = self._rest[0]
            # The static rules before the first dynamic one decide in C from the text alone
            # (no Client, no cache probe); the rest is matched from the segment after them on.
            first = rest.search if isinstance(rest, _Run) else None
            start = len(self._head) + (first is not None)

            def lookup(address: str) -> Rule | None:
                if ahead is not None:
                    rule = ahead(address)
                    if rule is not None:
                        return rule
                if first is not None:
                    rule = first(address)
                    if rule is not None:
                        return rule
                rule = get(address, _MISS)
                if rule is _MISS:
                    return slow(address, cache, start)
                return rule

            return lookup
        found = self._run_lookup(only, record=True)
        return found if ahead is None else _then(ahead, found)

    def _no_rules(self, address: str) -> Rule | None:
        if parse_client(address) is None:
            raise ValueError(f"client address {address!r} is not an IP address")
        return None

    def _make_head(self, texts: dict[int, Callable[[str], Rule | None]]) -> Callable[[str], Rule | None]:
        """Search the rules ahead in order: each static run's index, each text rule's own search."""
        steps = [self._run_lookup(s) if isinstance(s, _Run) else texts[i] for i, s in enumerate(self._head)]
        if len(steps) == 1:
            return steps[0]

        def ahead(address: str) -> Rule | None:
            for step in steps:
                found = step(address)
                if found is not None:
                    return found
            return None

        return ahead

    def _run_lookup(self, run: _Run, record: bool = False) -> Callable[[str], Rule | None]:
        """``lookup(address) -> rules[label]`` over one run's index: in C, or inlined in Python.

        An IPv4 client is parsed and searched right here (no Client, no Decision); anything else
        (IPv6, mapped, not an address) takes ``other``.
        """
        index, rules = run.index, run.by_label
        labels = index.v4_labels
        pton, family, from_bytes, search = inet_pton, AF_INET, _from_bytes, bisect_right

        fast = run.search  # the C search, made once with the run
        if fast is not None:
            if record:
                self.searched_in = "C"
            return fast
        other = search_other(index, rules)
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

    def _slow_lookup(self, address: str, cache: dict[str, Rule | None], start: int = 0) -> Rule | None:
        client = Client(address)
        if client.key is None:
            raise ValueError(f"client address {address!r} is not an IP address")
        return self._lookup(client, cache, start)

    def _lookup(self, client: Client, cache: dict[str, Rule | None], start: int = 0) -> Rule | None:
        """Match and remember in ``cache`` (the one that was current when the lookup began)."""
        rule, cacheable = self._match(client, start)
        if cacheable and self._caching and len(client.address) <= CACHED_TEXT_MAX:
            if len(cache) >= self.cache_size:
                cache.clear()
            cache[client.address] = rule
        return rule

    def _match(self, client: Client, start: int = 0) -> tuple[Rule | None, bool]:
        """The first rule that matches, from segment ``start`` on, and whether it may be cached."""
        family, value = client.key  # type: ignore[misc]
        cacheable = True
        for segment in self._segments[start:] if start else self._segments:
            if type(segment) is _Run:
                search = segment.search
                if search is not None:
                    found = search(client.address)
                    if found is not None:
                        return found, cacheable
                    continue
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
                rule = self._lookup(client, cache, len(self._head))
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


def _text_step(rule: Rule, hit: Callable[[str], bool]) -> Callable[[str], Rule | None]:
    """``rule`` when ``hit(address)``, else None: a text rule as one step of the search ahead."""

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

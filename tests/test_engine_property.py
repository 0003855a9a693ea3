"""The compiled engine decides exactly as a naive first-match loop over ``ipaddress`` objects.

Random rule lists (addresses, networks with and without host bits, ranges, IPv4 and IPv6,
IPv4-mapped forms, ``all``, ``localhost``, ``file:`` lists, and dynamic rules whose answers change)
over a small address universe, so that networks overlap, nest and touch. Both index layouts are
covered (the small one and the /16 tables of large ones), each searched in C and in Python, and
the decision cache: an answer must never survive ``context.changed()`` or ``reload()``. The list
file's fast parser is checked against ``parse_span`` line by line, and the index against painting
on its own.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import close_app, new_app
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flask_allow.index as index_module
from flask_allow import Client, ConfigError, FlaskAllow, Matcher, hookimpl
from flask_allow.addresses import V4_MAX, V6_MAX, Span, parse_span
from flask_allow.builtins.listfile import parse_list
from flask_allow.clookup import ENVIRON_KEY
from flask_allow.decision import Rule
from flask_allow.engine import Engine
from flask_allow.index import SpanSet, StaticIndex

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
V4_BASE = int(ipaddress.IPv4Address("10.0.0.0"))
V6_BASE = int(ipaddress.IPv6Address("2001:db8::"))
SPREAD = 600  # the universe: 10.0.0.0 + [0, SPREAD) and 2001:db8:: + [0, SPREAD), plus edges
GARBAGE = ["", "unix:/run/app.sock", "10.0.0.256", "010.0.0.1", "not an address", "::g"]
RESILIENT = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- the universe ---------------------------------------------------------------

v4_offsets = st.integers(0, SPREAD - 1)
v4_addresses = st.one_of(
    v4_offsets.map(lambda n: str(ipaddress.IPv4Address(V4_BASE + n))),
    st.sampled_from(["0.0.0.0", "255.255.255.255", "127.0.0.1", "10.0.1.255", "10.0.2.0"]),
)
v6_addresses = st.one_of(
    v4_offsets.map(lambda n: str(ipaddress.IPv6Address(V6_BASE + n))),
    st.sampled_from(["::", "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe80::1"]),
)
mapped_addresses = v4_offsets.map(lambda n: f"::ffff:{ipaddress.IPv4Address(V4_BASE + n)}")


@st.composite
def networks(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["v4", "v6", "mapped", "wide"]))
    if kind == "v4":
        return f"{draw(v4_addresses)}/{draw(st.integers(21, 32))}"
    if kind == "v6":
        return f"{draw(v6_addresses)}/{draw(st.integers(117, 128))}"
    if kind == "mapped":
        return f"{draw(mapped_addresses)}/{draw(st.integers(117, 128))}"
    return draw(st.sampled_from(["0.0.0.0/0", "128.0.0.0/1", "10.0.0.0/8", "::/0", "::ffff:0:0/95", "2001:db8::/32"]))


@st.composite
def ranges(draw: st.DrawFn) -> str:
    family = draw(st.sampled_from(["v4", "v6", "mapped"]))
    if family == "v6":
        a, b = sorted(draw(st.lists(v4_offsets, min_size=2, max_size=2)))
        return f"{ipaddress.IPv6Address(V6_BASE + a)}-{ipaddress.IPv6Address(V6_BASE + b)}"
    a, b = sorted(draw(st.lists(v4_offsets, min_size=2, max_size=2)))
    left, right = ipaddress.IPv4Address(V4_BASE + a), ipaddress.IPv4Address(V4_BASE + b)
    return f"::ffff:{left} - {right}" if family == "mapped" else f"{left}-{right}"


entries = st.one_of(v4_addresses, v6_addresses, mapped_addresses, networks(), ranges())
clients = st.one_of(v4_addresses, v6_addresses, mapped_addresses, st.sampled_from([*GARBAGE, "fe80::1%eth0"]))


# -- a dynamic rule type whose answers change -------------------------------------


class FlipMatcher(Matcher):
    """``flip:NAME``: matches the addresses in ``FLIPS[NAME]``; reports changes via ``changed()``."""

    prefix = "flip"
    FLIPS: ClassVar[dict[str, set[str]]] = {}

    def matches(self, client: Client) -> bool:
        return client.ip is not None and str(client.ip) in self.FLIPS[self.value]


class QuietFlipMatcher(FlipMatcher):
    """``quiet:NAME``: changes without telling; so the engine must never cache what it said."""

    prefix = "quiet"
    cacheable = False


class FlipPlugin:
    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [FlipMatcher, QuietFlipMatcher]


# -- the naive model ----------------------------------------------------------------


def normalised(address: str) -> IP | None:
    try:
        ip = ipaddress.ip_address(address.partition("%")[0] if ":" in address else address)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:  # type: ignore[union-attr]
        return ip.ipv4_mapped  # type: ignore[union-attr]
    return ip


def naive_entry(entry: str) -> Callable[[IP], bool]:
    entry = entry.strip()
    if "-" in entry:
        left, right = (normalised(part.strip()) for part in entry.split("-"))
        assert left is not None and right is not None
        return lambda ip: ip.version == left.version and left <= ip <= right  # type: ignore[operator]
    net = ipaddress.ip_network(entry, strict=False)
    mapped = net.network_address.ipv4_mapped if net.version == 6 else None  # type: ignore[union-attr]
    if mapped is not None and net.prefixlen >= 96:
        net = ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}")
    return lambda ip: ip.version == net.version and ip in net


def naive_rule(value: str, files: dict[str, list[str]]) -> Callable[[IP], bool]:
    if value in ("all", "*"):
        return lambda ip: True
    if value == "localhost":
        return lambda ip: ip in ipaddress.ip_network("127.0.0.0/8") or ip == ipaddress.ip_address("::1")
    if value.startswith("file:"):
        parts = [naive_entry(entry) for entry in files[value[5:]]]
        return lambda ip: any(part(ip) for part in parts)
    if value.startswith(("flip:", "quiet:")):
        name = value.partition(":")[2]
        return lambda ip: str(ip) in FlipMatcher.FLIPS[name]
    return naive_entry(value)


def flattened(restriction: list[dict[str, list[str]]]) -> list[tuple[str, str]]:
    return [(action, value) for entry in restriction for action in ("ALLOW", "DENY") for value in entry.get(action, [])]


def naive_decide(
    restriction: list[dict[str, list[str]]], files: dict[str, list[str]], default_allow: bool, address: str
) -> tuple[bool, int | None]:
    """``(allowed, index of the deciding rule or None)``: the first rule that matches."""
    rules = flattened(restriction)
    ip = normalised(address)
    if ip is None:
        return (default_allow if not rules else False), None
    for position, (action, value) in enumerate(rules):
        if naive_rule(value, files)(ip):
            return action == "ALLOW", position
    return default_allow, None


# -- configurations -------------------------------------------------------------------

rule_values = st.one_of(
    entries,
    entries,
    st.sampled_from(["all", "localhost"]),
    st.just("file"),
    st.sampled_from(["flip:a", "flip:b", "quiet:q"]),
)


@st.composite
def restrictions(draw: st.DrawFn) -> tuple[list[dict[str, list[str]]], list[list[str]]]:
    """An ``ADDRESS_RESTRICTION`` with ``file:FILE_k`` placeholders, and the entries of each file."""
    restriction: list[dict[str, list[str]]] = []
    files: list[list[str]] = []
    for _ in range(draw(st.integers(0, 7))):
        entry: dict[str, list[str]] = {}
        for action in draw(st.sampled_from([["ALLOW"], ["DENY"], ["ALLOW", "DENY"]])):
            values = []
            for value in draw(st.lists(rule_values, min_size=1, max_size=3)):
                if value == "file":
                    value = f"file:FILE_{len(files)}"
                    files.append(draw(st.lists(entries, min_size=0, max_size=12)))
                values.append(value)
            entry[action] = values
        restriction.append(entry)
    return restriction, files


def write_files(tmp: Path, restriction: list[dict[str, list[str]]], files: list[list[str]]) -> tuple[Any, dict]:
    """Write the list files (with comments and blank lines, as published lists have them)."""
    contents: dict[str, list[str]] = {}
    paths = {}
    for k, listed in enumerate(files):
        path = tmp / f"list{k}.txt"
        lines = ["# a published list", ""]
        for n, entry in enumerate(listed):
            lines.append(f"{entry}  ; SBL{n}" if n % 3 == 1 else entry)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths[f"FILE_{k}"] = str(path)
        contents[str(path)] = listed
    concrete = [
        {
            action: [f"file:{paths[v[5:]]}" if v.startswith("file:") else v for v in values]
            for action, values in e.items()
        }
        for e in restriction
    ]
    return concrete, contents


@contextmanager
def searched_in(implementation: str) -> Iterator[None]:
    """Compile engines whose all-static index is searched in C (``"c"``) or in Python."""
    saved = os.environ.pop(ENVIRON_KEY, None)
    if implementation == "python":
        os.environ[ENVIRON_KEY] = "1"
    try:
        yield
    finally:
        os.environ.pop(ENVIRON_KEY, None)
        if saved is not None:
            os.environ[ENVIRON_KEY] = saved


IMPLEMENTATIONS = pytest.mark.parametrize("implementation", ["c", "python"])


@contextmanager
def radix_min(value: int) -> Iterator[None]:
    """Build indexes with the /16 tables from ``value`` boundaries on (0: always, and the C
    search's bitmap of plain /21 blocks with them)."""
    saved = index_module.RADIX_MIN, index_module.PLAIN_MIN
    index_module.RADIX_MIN = value
    if value == 0:
        index_module.PLAIN_MIN = 0
    try:
        yield
    finally:
        index_module.RADIX_MIN, index_module.PLAIN_MIN = saved


def check_all(
    app: Flask, allow: FlaskAllow, config: list[dict[str, list[str]]], files: dict, addresses: list[str]
) -> None:
    default_allow = app.extensions["flask_allow"].settings.default_allow
    engine: Engine = app.extensions["flask_allow"].engine
    for address in addresses:
        expected = naive_decide(config, files, default_allow, address)
        decision = allow.check(address, app=app)
        got = (decision.allowed, decision.rule.index if decision.rule is not None else None)
        assert got == expected, (address, decision.reason, config)
        if normalised(address) is None:
            with pytest.raises(ValueError):
                engine.lookup(address)
        else:
            assert engine.lookup(address) is decision.rule, address


def flip_matchers(app: Flask) -> list[FlipMatcher]:
    rules = app.extensions["flask_allow"].engine.rules
    return [rule.matcher for rule in rules if isinstance(rule.matcher, FlipMatcher)]


@IMPLEMENTATIONS
@RESILIENT
@given(
    first=restrictions(),
    second=restrictions(),
    addresses=st.lists(clients, min_size=1, max_size=25),
    data=st.data(),
    default=st.sampled_from(["allow", "deny"]),
    cache_size=st.sampled_from([0, 3, 65536]),
    layout=st.sampled_from([index_module.RADIX_MIN, 0]),
)
def test_engine_decides_as_a_naive_first_match_loop(
    implementation: str,
    tmp_path_factory: pytest.TempPathFactory,
    first: tuple[list[dict[str, list[str]]], list[list[str]]],
    second: tuple[list[dict[str, list[str]]], list[list[str]]],
    addresses: list[str],
    data: st.DataObject,
    default: str,
    cache_size: int,
    layout: int,
) -> None:
    valid = sorted({str(ip) for ip in map(normalised, addresses) if ip is not None})

    def some_clients() -> set[str]:
        return data.draw(st.sets(st.sampled_from(valid))) if valid else set()

    tmp = tmp_path_factory.mktemp("lists")
    FlipMatcher.FLIPS = {"a": some_clients(), "b": some_clients(), "q": some_clients()}
    config, files = write_files(tmp, *first)
    app = new_app(
        {
            "ADDRESS_RESTRICTION": config,
            "ALLOW_DEFAULT": default,
            "ALLOW_CACHE_SIZE": cache_size,
            "ALLOW_LOAD_ENTRY_POINTS": False,
        },
        root_path=str(tmp),
    )
    with radix_min(layout), searched_in(implementation):
        allow = FlaskAllow(app, plugins=[FlipPlugin()])
        try:
            check_all(app, allow, config, files, addresses)
            check_all(app, allow, config, files, addresses)  # now from the cache, where there is one

            # a quiet rule's answers change, untold: nothing it said may have been cached
            FlipMatcher.FLIPS["q"] = some_clients()
            check_all(app, allow, config, files, addresses)

            # the reporting rules' answers change, and they say so through changed()
            FlipMatcher.FLIPS["a"], FlipMatcher.FLIPS["b"] = some_clients(), some_clients()
            for matcher in flip_matchers(app):
                if type(matcher) is FlipMatcher:
                    matcher.context.changed()
                    break
            check_all(app, allow, config, files, addresses)

            # reload: new rules, and the same list files rewritten on disk
            config2, files2 = write_files(tmp, *second)
            app.config["ADDRESS_RESTRICTION"] = config2
            allow.reload(app)
            check_all(app, allow, config2, files2, addresses)
        finally:
            close_app(app)


def test_a_cached_answer_does_not_survive_changed_or_reload(tmp_path: Path) -> None:
    """The cache's own test, step by step: fill it, change the answer, ask again."""
    FlipMatcher.FLIPS = {"a": {"10.0.0.1"}}
    listed = tmp_path / "list.txt"
    listed.write_text("10.0.0.0/30\n")
    app = new_app(
        {"ADDRESS_RESTRICTION": [{"DENY": "flip:a"}, {"ALLOW": f"file:{listed}"}], "ALLOW_LOAD_ENTRY_POINTS": False}
    )
    allow = FlaskAllow(app, plugins=[FlipPlugin()])
    try:
        engine = app.extensions["flask_allow"].engine
        assert allow.check("10.0.0.1", app=app).action == "DENY"
        assert allow.check("10.0.0.2", app=app).rule.spec.startswith("file:")  # type: ignore[union-attr]
        assert "10.0.0.1" in engine._cache and "10.0.0.2" in engine._cache
        FlipMatcher.FLIPS["a"] = {"10.0.0.2"}
        flip_matchers(app)[0].context.changed()
        assert not engine._cache
        assert allow.check("10.0.0.1", app=app).action == "ALLOW"
        assert allow.check("10.0.0.2", app=app).action == "DENY"
        assert engine.lookup("10.0.0.2") is engine.rules[0]

        listed.write_text("10.0.0.0/31\n")  # 10.0.0.2 and .3 leave the list
        FlipMatcher.FLIPS["a"] = set()
        allow.reload(app)
        assert allow.check("10.0.0.2", app=app).rule is None
        assert allow.check("10.0.0.1", app=app).action == "ALLOW"
    finally:
        close_app(app)


def test_what_an_uncacheable_rule_said_is_never_cached() -> None:
    FlipMatcher.FLIPS = {"q": {"10.0.0.1"}}
    app = new_app(
        {"ADDRESS_RESTRICTION": [{"DENY": "quiet:q"}, {"ALLOW": "10.0.0.0/8"}], "ALLOW_LOAD_ENTRY_POINTS": False}
    )
    allow = FlaskAllow(app, plugins=[FlipPlugin()])
    try:
        assert allow.check("10.0.0.1", app=app).action == "DENY"
        assert allow.check("10.0.0.2", app=app).action == "ALLOW"
        assert not app.extensions["flask_allow"].engine._cache
        FlipMatcher.FLIPS["q"] = {"10.0.0.2"}  # untold
        assert allow.check("10.0.0.1", app=app).action == "ALLOW"
        assert allow.check("10.0.0.2", app=app).action == "DENY"
    finally:
        close_app(app)


def test_a_decision_made_while_the_cache_is_dropped_goes_to_the_old_cache() -> None:
    """A lookup that began before ``invalidate()`` must not put its answer in the new cache."""
    FlipMatcher.FLIPS = {"a": {"10.0.0.1"}}
    app = new_app({"ADDRESS_RESTRICTION": [{"DENY": "flip:a"}], "ALLOW_LOAD_ENTRY_POINTS": False})
    allow = FlaskAllow(app, plugins=[FlipPlugin()])
    try:
        engine = app.extensions["flask_allow"].engine
        original = FlipMatcher.matches

        def matches_then_changes(self: FlipMatcher, client: Client) -> bool:
            answer = original(self, client)  # answered with the old set...
            FlipMatcher.FLIPS["a"] = set()  # ...which changes before the answer is cached
            self.context.changed()
            return answer

        FlipMatcher.matches = matches_then_changes  # type: ignore[method-assign]
        try:
            assert engine.lookup("10.0.0.1") is engine.rules[0]
        finally:
            FlipMatcher.matches = original  # type: ignore[method-assign]
        assert engine.lookup("10.0.0.1") is None
        assert allow.check("10.0.0.1", app=app).allowed
    finally:
        close_app(app)


# -- the index on its own, with many more spans ---------------------------------------------


def naive_label(per_rule: list[list[tuple[int, int, int]]], family: int, value: int) -> int:
    for label, spans in enumerate(per_rule, start=1):
        if any(f == family and first <= value <= last for f, first, last in spans):
            return label
    return 0


@st.composite
def span_lists(draw: st.DrawFn) -> list[list[tuple[int, int, int]]]:
    """Up to 6 rules of up to 40 spans, clustered near a few bases so they overlap and touch."""
    bases = {4: [0, V4_BASE, V4_MAX - 300], 6: [0, V6_BASE, V6_MAX - 300]}
    per_rule = []
    for _ in range(draw(st.integers(0, 6))):
        spans = []
        for _ in range(draw(st.integers(0, 40))):
            family = draw(st.sampled_from([4, 6]))
            base = draw(st.sampled_from(bases[family]))
            first = base + draw(st.integers(0, 299))
            top = V4_MAX if family == 4 else V6_MAX
            last = min(top, first + draw(st.sampled_from([0, 0, 1, 3, 17, 200, top])))
            spans.append((family, first, last))
        per_rule.append(spans)
    return per_rule


def probes(per_rule: list[list[tuple[int, int, int]]]) -> Iterator[tuple[int, int]]:
    """Every boundary, one either side of it, the edges of the /21 blocks around it (the C search's
    plain blocks), and the ends of the spaces."""
    yield from ((4, 0), (4, V4_MAX), (6, 0), (6, V6_MAX), (4, V4_BASE - 1), (6, V6_BASE + 1))
    for family, first, last in itertools.chain.from_iterable(per_rule):
        top = V4_MAX if family == 4 else V6_MAX
        values = [first - 1, first, first + 1, last - 1, last, last + 1]
        if family == 4:
            for edge in (first & -2048, (last + 2048) & -2048):
                values += [edge - 2049, edge - 2048, edge - 1, edge, edge + 1024, edge + 2047, edge + 2048]
        for value in values:
            if 0 <= value <= top:
                yield family, value


@settings(max_examples=300, deadline=None)
@given(per_rule=span_lists(), compact=st.booleans(), layout=st.sampled_from([index_module.RADIX_MIN, 0]))
def test_index_labels_every_address_with_the_first_covering_rule(
    per_rule: list[list[tuple[int, int, int]]], compact: bool, layout: int
) -> None:
    with radix_min(layout):
        index = StaticIndex([SpanSet.of(spans) if compact else [Span(*s) for s in spans] for spans in per_rule])
    assert index.size == sum(map(len, per_rule))
    starts = list(index.v4_starts)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert all(a != b for a, b in itertools.pairwise(index.v4_labels))  # neighbours never share a label
    for family, value in probes(per_rule):
        assert index.lookup(family, value) == naive_label(per_rule, family, value), (family, value)


class SpansMatcher(Matcher):
    """A static rule holding given spans (built without a registry, for the engine on its own)."""

    def __init__(self, spans: list[tuple[int, int, int]]) -> None:
        self._spans = [Span(*span) for span in spans]

    def spans(self) -> list[Span]:
        return self._spans


@IMPLEMENTATIONS
@settings(max_examples=200, deadline=None)
@given(per_rule=span_lists(), layout=st.sampled_from([index_module.RADIX_MIN, 0]))
def test_engine_lookup_of_address_text_finds_the_first_covering_rule(
    implementation: str, per_rule: list[list[tuple[int, int, int]]], layout: int
) -> None:
    """``Engine.lookup`` (in C, or inlined per index layout; parsing included) against the naive search."""
    rules = [Rule("DENY", f"r{k}", f"R[{k}]", SpansMatcher(spans), k) for k, spans in enumerate(per_rule)]
    with radix_min(layout), searched_in(implementation):
        engine = Engine(rules, default_allow=True)
    assert engine.static
    if rules:  # no rules: no index to search
        assert engine.searched_in == {"c": "C", "python": "Python"}[implementation]
    for family, value in probes(per_rule):
        if family == 6 and normalised(str(ipaddress.IPv6Address(value))).version == 4:  # type: ignore[union-attr]
            continue  # an IPv4-mapped address is its IPv4 address
        label = naive_label(per_rule, family, value)
        expected = rules[label - 1] if label else None
        text = str(ipaddress.IPv6Address(value) if family == 6 else ipaddress.IPv4Address(value))
        assert engine.lookup(text) is expected, (family, value)
        assert engine.decide(Client(text)).rule is expected
        if family == 4:
            assert engine.lookup(f"::ffff:{text}") is expected
    for garbage in GARBAGE:
        with pytest.raises(ValueError):
            engine.lookup(garbage)


# -- the list file's fast parser against parse_span --------------------------------------------

decorations = st.sampled_from(["{}", " {}", "{}\t", "{} # comment", "{};SBL1", "  {}  ;x", "{}\r"])


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.one_of(
            st.tuples(entries, decorations),
            st.tuples(st.none(), st.sampled_from(["", "# only a comment", "; EOF", "   ", "\t# x"])),
        ),
        max_size=30,
    )
)
def test_list_file_parses_as_parse_span_does(
    tmp_path_factory: pytest.TempPathFactory, lines: list[tuple[str | None, str]]
) -> None:
    path = tmp_path_factory.mktemp("parse") / "list.txt"
    text = "\n".join(fmt if entry is None else fmt.format(entry) for entry, fmt in lines)
    path.write_bytes(text.encode())
    if not text:  # what a file truncated for rewriting looks like: never applied
        with pytest.raises(ValueError, match="is empty"):
            parse_list(str(path))
        return
    found, warnings = parse_list(str(path))
    expected = [parse_span(entry) for entry, _ in lines if entry is not None]
    assert sorted(found) == sorted(span for span, _ in expected)
    assert bool(warnings) == any(warning for _, warning in expected)


@pytest.mark.parametrize(
    "line",
    ["10.0.0.1/033", "10.0.0.1/33", "2001:db8::/129", "10.0.0.1/24/8", "::ffff:10.0.0.1%eth0", "fe80::1%eth0", "1.2.3"],
)
def test_list_file_lines_the_fast_path_must_not_take(tmp_path: Path, line: str) -> None:
    path = tmp_path / "list.txt"
    path.write_text(f"10.0.0.1\n{line}\n")
    with pytest.raises(ValueError, match="line 2"):
        parse_list(str(path))


def test_list_file_netmask_and_host_bits_as_parse_span(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("10.0.0.0/255.255.255.0\n10.0.1.7/24\n2001:db8::1/64\n::ffff:10.0.2.0/120\n")
    found, warnings = parse_list(str(path))
    assert sorted(found) == sorted(
        parse_span(x)[0] for x in ("10.0.0.0/24", "10.0.1.0/24", "2001:db8::/64", "10.0.2.0/24")
    )
    assert len(warnings) == 1 and "line 2" in warnings[0] and "and 1 more" in warnings[0]


# -- building elsewhere (reload) -----------------------------------------------------------------

INDEX_FIELDS = (
    "size", "reachable", "v4_starts", "v4_labels", "v4_keys", "v4_direct", "v4_radix", "v4_pair",
    "v6_high", "v6_low", "v6_labels", "v6_keys",
)  # fmt: skip


def some_span_sets() -> list[SpanSet]:
    rnd = random.Random(7)
    big = SpanSet.of(
        (4, first, first + rnd.choice((0, 0, 255, 4095)))
        for first in (rnd.getrandbits(32) & ~4095 for _ in range(3000))
    )
    for _ in range(300):
        first = (0x2001 << 112) | rnd.getrandbits(100) << 8
        big.add(6, first, first + rnd.choice((0, 255)))
    small = SpanSet.of([(4, V4_BASE, V4_BASE + 255), (6, V6_BASE, V6_BASE)])
    return [small, big, SpanSet()]


@pytest.mark.parametrize("layout", [index_module.RADIX_MIN, 10**9])
def test_an_index_built_in_a_child_process_is_the_same(monkeypatch: pytest.MonkeyPatch, layout: int) -> None:
    monkeypatch.setattr(index_module, "ELSEWHERE_MIN", 0)
    monkeypatch.setattr(index_module, "RADIX_MIN", layout)
    calls: list[int] = []
    real = index_module._build_in_child
    monkeypatch.setattr(index_module, "_build_in_child", lambda sets, into: calls.append(1) or real(sets, into))
    here = StaticIndex(some_span_sets())
    with index_module.built_elsewhere():
        there = StaticIndex(some_span_sets())
    assert calls == [1]
    for field in INDEX_FIELDS:
        assert getattr(there, field) == getattr(here, field), field


def test_a_child_that_cannot_run_means_building_here(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(index_module, "ELSEWHERE_MIN", 0)
    monkeypatch.setattr(index_module, "_python", lambda: "/nonexistent/python3")
    with index_module.built_elsewhere():
        there = StaticIndex(some_span_sets())
    here = StaticIndex(some_span_sets())
    assert all(getattr(there, field) == getattr(here, field) for field in INDEX_FIELDS)
    assert "building it here" in caplog.text


def test_reload_builds_elsewhere_and_keeps_its_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload compiles in a child; a reload that fails raises ConfigError and keeps the old rules."""
    monkeypatch.setattr(index_module, "ELSEWHERE_MIN", 1)
    calls: list[int] = []
    real = index_module._build_in_child
    monkeypatch.setattr(index_module, "_build_in_child", lambda sets, into: calls.append(1) or real(sets, into))
    listed = tmp_path / "list.txt"
    listed.write_text("10.0.0.0/8\n192.0.2.7\n")
    app = new_app({"ADDRESS_RESTRICTION": [{"DENY": f"file:{listed}"}], "ALLOW_LOAD_ENTRY_POINTS": False})
    allow = FlaskAllow(app)
    try:
        assert calls == []  # init_app compiles here: nothing is being served yet
        assert allow.check("192.0.2.8", app=app).allowed is not False
        listed.write_text("192.0.2.8\n")
        allow.reload(app)
        assert calls == [1]
        assert allow.check("192.0.2.8", app=app).action == "DENY"
        assert allow.check("10.1.2.3", app=app).allowed
        listed.write_text("192.0.2.9\n10.0.0.300\n")
        with pytest.raises(ConfigError, match="line 2"):
            allow.reload(app)
        assert allow.check("192.0.2.8", app=app).action == "DENY"  # the old rules stand
        assert allow.check("192.0.2.9", app=app).allowed
    finally:
        close_app(app)

"""The C search of an all-static index (``flask_allow/_lookup.c``) answers exactly as the Python one.

Every test builds two engines from the same rules, one searching in C and one with
``FLASK_ALLOW_PURE_PYTHON=1`` (their compiled arrays are checked equal), and asks both the same
thing: addresses at and beside every boundary of random rule sets over a small universe (both
index layouts, the alternating-pair one included), every boundary of a list file of thousands of
networks (the /16 tables in earnest), and whatever a server or an attacker may hand over as the
client address: near-miss texts, IPv4-mapped and IPv4-compatible forms, zones, whitespace, NUL,
lone surrogates, long strings, str subclasses and objects that are not strings. Both must return
the same rule object, or raise the same exception with the same message: a difference would be a
bypass in one of them.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flask_allow.index as index_module
from flask_allow import Client, Matcher, MatcherContext
from flask_allow import clookup as clookup_module
from flask_allow.addresses import V4_MAX, V6_MAX, Span, spans_of_networks
from flask_allow.builtins.listfile import FileMatcher
from flask_allow.clookup import ENVIRON_KEY
from flask_allow.decision import Rule
from flask_allow.engine import Engine

ARRAYS = ("v4_starts", "v4_labels", "v4_direct", "v4_radix", "v4_pair", "v6_high", "v6_low", "v6_labels")
MAPPED_FIRST = 0xFFFF << 32  # ::ffff:0:0, the first IPv4-mapped address
MAPPED_LAST = MAPPED_FIRST | V4_MAX
V4_BASE = int(ipaddress.IPv4Address("10.0.0.0"))
V6_BASE = int(ipaddress.IPv6Address("2001:db8::"))
# Where spans begin: the ends of each space, a /16 edge (10.0.255.0 + up to 600 crosses into 10.1),
# the IPv4-compatible block (::10.0.0.0), both edges of ::ffff:0:0/96, an edge of the high 64 bits.
V4_BASES = (0, V4_BASE, V4_BASE + 0xFF00, V4_MAX - 599)
V6_BASES = (0, V4_BASE, MAPPED_FIRST - 300, MAPPED_FIRST + V4_BASE, MAPPED_LAST - 300, (1 << 64) - 300, V6_BASE)
V6_BASES = (*V6_BASES, V6_MAX - 599)
WIDTHS = (0, 0, 1, 3, 17, 200, 599, 1 << 16, 1 << 33)
# Rule texts the parser folds (or does not) around the mapped block, next to the integer spans.
TEXTS = ("::ffff:0:0/96", "::ffff:0:0/95", "::/96", "::ffff:10.0.0.0/120", "::ffff:0.0.0.0-::ffff:0.0.0.9", "fe80::/10")
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def runs(examples: int) -> settings:
    return settings(FAST, max_examples=examples)


class SpansMatcher(Matcher):
    """A static rule over given spans (built without a registry)."""

    def __init__(self, spans: list[Span]) -> None:
        self._spans = spans

    def spans(self) -> list[Span]:
        return self._spans


@contextmanager
def layout_from(radix: int | None, plain: int | None) -> Iterator[None]:
    """Build indexes with the /16 tables from ``radix`` boundaries on, and the C search's bitmap of
    plain blocks from ``plain`` on (None: as configured)."""
    saved = index_module.RADIX_MIN, index_module.PLAIN_MIN
    index_module.RADIX_MIN = saved[0] if radix is None else radix
    index_module.PLAIN_MIN = saved[1] if plain is None else plain
    try:
        yield
    finally:
        index_module.RADIX_MIN, index_module.PLAIN_MIN = saved


def plain_blocks(engine: Engine) -> int | None:
    """How many /21 blocks the C search answers from its bitmap (None: it keeps none)."""
    return engine.lookup.__self__.plain_blocks  # type: ignore[attr-defined]


def both_engines(rules: list[Rule], layout: int | None = None, plain: int | None = None) -> tuple[Engine, Engine]:
    """An engine searching in C and one searching in Python, over the same rules (and equal arrays)."""
    if clookup_module._lookup is None:
        pytest.fail("flask_allow._lookup was not built: install with a C compiler (pip install -e .)")
    saved = os.environ.pop(ENVIRON_KEY, None)
    try:
        with layout_from(layout, plain):
            in_c = Engine(rules, default_allow=True)
            os.environ[ENVIRON_KEY] = "1"
            in_python = Engine(rules, default_allow=True)
    finally:
        os.environ.pop(ENVIRON_KEY, None)
        if saved is not None:
            os.environ[ENVIRON_KEY] = saved
    assert (in_c.searched_in, in_python.searched_in) == ("C", "Python")
    for name in ARRAYS:
        assert getattr(in_c._index, name) == getattr(in_python._index, name), name
    return in_c, in_python


def answer(lookup: Callable[[Any], Rule | None], address: object) -> tuple[str, object, str]:
    try:
        return "rule", lookup(address), ""
    except Exception as exc:
        return "raised", type(exc), str(exc)


def assert_alike(in_c: Engine, in_python: Engine, address: object) -> None:
    """The same rule object, or the same exception type and message."""
    got, want = answer(in_c.lookup, address), answer(in_python.lookup, address)
    assert got[0] == want[0] and got[1] is want[1] and got[2] == want[2], (address, got, want)


def assert_decides_alike(in_c: Engine, in_python: Engine, address: str) -> None:
    got, want = in_c.decide(Client(address)), in_python.decide(Client(address))
    assert (got.rule, got.allowed, got.error) == (want.rule, want.allowed, want.error), address


# -- how a server may write an address ------------------------------------------------------------


def v4_texts(value: int) -> list[str]:
    """An IPv4 address as written plainly, IPv4-mapped (several ways), IPv4-compatible, with a zone."""
    text = str(ipaddress.IPv4Address(value))
    high, low = value >> 16, value & 0xFFFF
    return [
        text,
        f"::ffff:{text}",
        f"::FFFF:{high:x}:{low:04X}",
        f"0:0:0:0:0:ffff:{text}",
        f"0000:0000:0000:0000:0000:FFFF:{text}",
        f"::{text}",  # IPv4-compatible: an IPv6 address, not this IPv4 one
        f"::ffff:0:{text}",  # IPv4-translated (::ffff:0:0:0/96): IPv6 too
        f"::ffff:{text}%eth0",
        f"{text}%eth0",
    ]


def v6_texts(value: int) -> list[str]:
    """An IPv6 address compressed, exploded, in capitals, with a zone (named and numbered)."""
    address = ipaddress.IPv6Address(value)
    return [str(address), address.exploded.upper(), f"{address}%eth0", f"{address.exploded}%25"]


def texts_of(family: int, value: int) -> list[str]:
    return v4_texts(value) if family == 4 else v6_texts(value)


# -- (a) random rule sets over a small universe ---------------------------------------------------


@st.composite
def rule_sets(draw: st.DrawFn) -> list[list[Span]]:
    """One to five rules (one, most often: a single rule's index alternates its label and the gaps)."""
    per_rule = []
    for _ in range(draw(st.sampled_from([1, 1, 2, 3, 5]))):
        spans = []
        for _ in range(draw(st.integers(0, 14))):
            family = draw(st.sampled_from([4, 6]))
            first = draw(st.sampled_from(V4_BASES if family == 4 else V6_BASES)) + draw(st.integers(0, 599))
            top = V4_MAX if family == 4 else V6_MAX
            spans.append(Span(family, first, min(top, first + draw(st.sampled_from(WIDTHS)))))
        if draw(st.integers(0, 3)) == 0:
            spans.extend(spans_of_networks([draw(st.sampled_from(TEXTS))]))
        per_rule.append(spans)
    return per_rule


BLOCK = 1 << 11  # the C search's plain blocks (/21)


def probes(per_rule: list[list[Span]]) -> Iterator[tuple[int, int]]:
    """Every boundary, one either side of it, the edges of its /21 block and of the blocks either
    side (where a plain block begins or ends), and the ends of both spaces and of the mapped block."""
    yield from ((4, 0), (4, V4_MAX), (6, 0), (6, 1), (6, V6_MAX), (6, MAPPED_FIRST - 1), (6, MAPPED_LAST + 1))
    for family, first, last in (span for spans in per_rule for span in spans):
        top = V4_MAX if family == 4 else V6_MAX
        values = [first - 1, first, first + 1, last - 1, last, last + 1]
        if family == 4:
            for edge in (first & -BLOCK, (last + BLOCK) & -BLOCK):
                values += [edge - BLOCK - 1, edge - BLOCK, edge - BLOCK // 2, edge - 1, edge, edge + BLOCK // 2]
                values += [edge + BLOCK - 1, edge + BLOCK]
        for value in values:
            if 0 <= value <= top:
                yield family, value


@runs(200)
@given(per_rule=rule_sets(), layout=st.sampled_from([None, 0]), plain=st.sampled_from([None, 0]))
def test_random_rules_are_searched_alike(per_rule: list[list[Span]], layout: int | None, plain: int | None) -> None:
    rules = [Rule("DENY", f"r{k}", f"R[{k}]", SpansMatcher(spans), k) for k, spans in enumerate(per_rule)]
    in_c, in_python = both_engines(rules, layout, plain)
    assert (in_c._index.v4_direct is not None) == (layout == 0 or len(in_c._index.v4_starts) >= index_module.RADIX_MIN)
    assert (plain_blocks(in_c) is not None) == (plain == 0)
    for family, value in dict.fromkeys(probes(per_rule)):
        for text in texts_of(family, value):
            assert_alike(in_c, in_python, text)


@pytest.mark.parametrize(
    "specs",
    [
        [["0.0.0.0/1"], ["255.255.0.0/16", "10.0.0.0/21", "10.0.8.1"]],  # the last span is not the background
        [["10.0.7.255-10.0.16.0"], ["0.0.0.0/1"], ["128.0.0.0/1"]],  # no rule-less gap left
        [["192.0.2.0-192.0.2.255", "198.51.100.7"], ["0.0.0.0/0"]],  # the background is the last rule
    ],
)
def test_plain_blocks_are_exactly_those_one_label_covers(specs: list[list[str]]) -> None:
    rules = [
        Rule("DENY", " ".join(nets), f"R[{k}]", SpansMatcher(list(spans_of_networks(nets))), k)
        for k, nets in enumerate(specs)
    ]
    in_c, in_python = both_engines(rules, 0, 0)
    blocks = plain_blocks(in_c)
    assert blocks is not None and 0 < blocks < 1 << 21
    per_rule = [list(rule.matcher.spans()) for rule in rules]  # type: ignore[attr-defined]
    for family, value in dict.fromkeys(probes(per_rule)):
        if family == 4:
            for text in v4_texts(value)[:2]:
                assert_alike(in_c, in_python, text)


# -- fixed rule sets for the adversarial strings, and a large list file --------------------------


def small_rules() -> list[Rule]:
    """Rules where a misread client lands on another rule: each form of an address has its own."""
    specs = [
        ("DENY", ["10.0.0.0/24", "192.0.2.1"]),
        ("ALLOW", ["10.0.0.0/8", "0.0.0.0/32", "255.255.255.255"]),
        ("DENY", ["::/96"]),  # IPv4-compatible (::a.b.c.d): IPv6
        ("ALLOW", ["::ffff:0:0/95"]),  # over the mapped block, but as IPv6: mapped clients are IPv4
        ("DENY", ["::ffff:0:0:0/96", "fe80::/10", "2001:db8::/120"]),
        ("ALLOW", ["::1", "2001:db8::/32"]),
        ("DENY", ["0.0.0.0/1"]),
    ]
    return [
        Rule(action, " ".join(nets), f"R[{k}]", SpansMatcher(list(spans_of_networks(nets))), k)
        for k, (action, nets) in enumerate(specs)
    ]


def write_list_file(path: Path) -> None:
    """Several thousand networks: /16 buckets with more than 64 boundaries and with a few, whole /16s
    (direct labels), ranges across /16 edges, mapped entries, and over 4096 IPv6 boundaries (so the
    Python search takes its 64-bit halves, not its 16-byte keys), many sharing their high halves."""
    rnd = random.Random(20240611)
    lines = [f"10.0.{rnd.randrange(256)}.{rnd.randrange(0, 256, 4)}/30" for _ in range(300)]  # one crowded /16
    lines += [f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}.0/24" for _ in range(2200)]
    lines += [f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.0.0/16" for _ in range(60)]
    lines += [f"172.{n}.255.250-172.{n + 1}.0.5" for n in range(16, 32)]
    lines += [f"::ffff:198.51.{n}.0/120" for n in range(100)] + ["192.0.2.7 # a comment", "  203.0.113.9  ; x"]
    lines += [f"2001:db8:{rnd.randrange(1 << 16):x}:{rnd.randrange(1 << 16):x}::/64" for _ in range(1500)]
    lines += [f"2001:db8::{rnd.randrange(1 << 16):x}:{rnd.randrange(1 << 16):x}/126" for _ in range(700)]
    lines += [f"{rnd.randrange(0x2400, 0x2C00):x}:{rnd.randrange(1 << 16):x}::/48" for _ in range(400)]
    lines += ["::1", "fe80::/64", "ffff:ffff:ffff:ffff::/64"]
    rnd.shuffle(lines)
    path.write_text("\n".join(lines) + "\n")


class BigList:
    """The list file alone (its index alternates one label and the gaps), among other rules (whose
    last, 0.0.0.0/1, covers the most addresses), and both with the C search's plain blocks."""

    def __init__(self, path: Path) -> None:
        context = MatcherContext(None, {}, "R[0]", {}, logging.getLogger("flask_allow.test"), lambda: None)
        listed = Rule("DENY", f"file:{path}", "R[0]", FileMatcher(str(path), context), 0)
        self.alone = both_engines([listed])
        others = small_rules()
        self.mixed = both_engines([*others[:3], listed, *others[3:]])
        self.plain = both_engines([listed], plain=0)
        self.plain_mixed = both_engines([*others[:3], listed, *others[3:]], plain=0)
        self.pairs = (self.alone, self.mixed, self.plain, self.plain_mixed)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> BigList:
    path = tmp_path_factory.mktemp("clookup") / "list.txt"
    write_list_file(path)
    return BigList(path)


@pytest.fixture(scope="module")
def small() -> list[tuple[Engine, Engine]]:
    rules = small_rules()
    return [both_engines(rules), both_engines(rules, 0), both_engines(rules[:1], 0)]


def test_every_boundary_of_a_large_list_file_is_searched_alike(big: BigList) -> None:
    alone, mixed = big.alone[0]._index, big.mixed[0]._index
    assert alone.v4_direct is not None and alone.v4_pair is not None  # the /16 tables, labels alternating
    assert mixed.v4_direct is not None and mixed.v4_pair is None
    assert alone.v6_keys is None and len(alone.v6_high) > index_module.V6_KEYS_MAX
    assert len(set(alone.v6_high)) < len(alone.v6_high)  # boundaries that share their high halves
    assert max(b - a for a, b in pairwise(alone.v4_radix)) > 64  # a crowded /16 (no prefetch)
    assert plain_blocks(big.alone[0]) is None
    assert 0 < plain_blocks(big.plain[0]) < 1 << 21 and 0 < plain_blocks(big.plain_mixed[0]) < 1 << 21  # type: ignore[operator]
    matched = set()
    for in_c, in_python in big.pairs:
        index = in_c._index
        for start in index.v4_starts:
            for value in (start - 1, start, start + 1, start - BLOCK // 2, start + BLOCK, (start | (BLOCK - 1)) + 1):
                if 0 <= value <= V4_MAX:
                    for text in v4_texts(value)[:3]:
                        assert_alike(in_c, in_python, text)
                    matched.add(in_c.lookup(str(ipaddress.IPv4Address(value))))
        for start in index.v6_starts:
            for value in (start - 1, start, start + 1):
                if 0 <= value <= V6_MAX:
                    assert_alike(in_c, in_python, str(ipaddress.IPv6Address(value)))
    assert None in matched and len(matched) > 2  # not a search that always says the same


@runs(200)
@given(
    v4=st.lists(st.one_of(st.integers(0, V4_MAX), st.integers(V4_BASE, V4_BASE + 0xFFFF)), max_size=8),
    v6=st.lists(st.integers(V6_BASE, V6_BASE + (1 << 96) - 1), max_size=4),
)
def test_random_addresses_in_a_large_list_file_are_searched_alike(big: BigList, v4: list[int], v6: list[int]) -> None:
    for in_c, in_python in big.pairs:
        for value in v4:
            for text in v4_texts(value):
                assert_alike(in_c, in_python, text)
        for value in v6:
            for text in v6_texts(value):
                assert_alike(in_c, in_python, text)


# -- (b) whatever may come as a client address ---------------------------------------------------


class Text(str):
    """A str subclass, as a framework might hand over."""


class Partitioned(str):
    """A str subclass whose ``partition`` lies (what the zone-dropping parser calls)."""

    def partition(self, sep: str) -> tuple[str, str, str]:  # type: ignore[override]
        return ("::ffff:10.0.0.1", "", "")


class Duck:
    """Not a str, but with a ``partition`` that gives an address."""

    def partition(self, sep: str) -> tuple[str, str, str]:
        return ("::1", "", "")


class Broken:
    """Not a str, and ``partition`` raises."""

    def partition(self, sep: str) -> tuple[str, str, str]:
        raise RuntimeError("no partition here")

    def __repr__(self) -> str:
        return "Broken()"


valid = st.one_of(
    st.integers(0, V4_MAX).map(lambda n: str(ipaddress.IPv4Address(n))),
    st.sampled_from([V4_BASE, V4_BASE + 1, 0, V4_MAX, 0xC0000201]).flatmap(lambda n: st.sampled_from(v4_texts(n))),
    st.integers(0, V6_MAX).map(lambda n: str(ipaddress.IPv6Address(n))),
    st.sampled_from([V6_BASE, 1, MAPPED_FIRST - 1, MAPPED_LAST + 1, 0xFE80 << 112]).flatmap(
        lambda n: st.sampled_from(v6_texts(n))
    ),
)
odd_chars = st.sampled_from(
    [*"0123456789abcdefABCDEFxX.:%[]/-+ \t\n\r\x00\x0b\x0c", "\ud800", "\udfff", "\u00a0", "\u200b", "\uff11", "\u0663"]
)


@st.composite
def near_misses(draw: st.DrawFn) -> str:
    """A valid address text with one character inserted, replaced or removed, or something around it."""
    text = draw(valid)
    at = draw(st.integers(0, len(text)))
    how = draw(st.sampled_from(["insert", "replace", "delete", "around"]))
    if how == "insert":
        return text[:at] + draw(odd_chars) + text[at:]
    if how == "replace":
        return text[:at] + draw(odd_chars) + text[at + 1 :]
    if how == "delete":
        return text[:at] + text[at + 1 :]
    before = draw(st.sampled_from(["", " ", "\t", "\x00", "[", "0", "00", "\ufeff"]))
    after = draw(st.sampled_from(["", " ", "\n", "\x00", "]", "%eth0", "%", "%25", "/32", ":80", ".", "\ud800"]))
    return before + text + after


long_texts = st.one_of(
    st.tuples(valid, st.integers(40, 200)).map(lambda t: "0" * t[1] + t[0]),
    st.tuples(valid, st.integers(40, 200)).map(lambda t: t[0] + " " * t[1]),
    st.integers(17, 120).map(lambda n: "::" + "0:" * n + "1"),
    st.integers(60, 200).map(lambda n: "fe80::1%" + "e" * n),  # a long zone: the zone is dropped
    st.integers(60, 200).map(lambda n: "::ffff:10.0.0.1%" + "x" * n),
    st.integers(45, 200).map(lambda n: "1" * n),
    st.just("0000:0000:0000:0000:0000:ffff:255.255.255.255"),  # 45 characters, the longest valid
)
strings = st.one_of(
    near_misses(),
    long_texts,
    st.text(st.characters(exclude_categories=()), max_size=70),  # lone surrogates included
    st.text(odd_chars, max_size=48),
    st.binary(max_size=60).map(lambda raw: raw.decode("utf-8", "surrogateescape")),
    st.binary(max_size=60).map(lambda raw: raw.decode("latin-1")),
    valid,
)
not_strings = st.sampled_from(
    [
        None,
        0,
        167772161,
        1.5,
        b"10.0.0.1",
        bytearray(b"::1"),
        memoryview(b"10.0.0.1"),
        ["10.0.0.1"],
        ("::1",),
        object(),
        ipaddress.ip_address("10.0.0.1"),
        Duck(),
        Broken(),
        Client("10.0.0.1"),
    ]
)
subclassed = st.one_of(
    strings.map(Text), strings.map(Partitioned), st.sampled_from(["fe80::1%x", "junk", ""]).map(Partitioned)
)


@runs(1500)
@given(address=st.one_of(strings, strings, subclassed, not_strings))
def test_any_client_address_is_answered_alike(small: list[tuple[Engine, Engine]], big: BigList, address: Any) -> None:
    for in_c, in_python in (*small, *big.pairs):
        assert_alike(in_c, in_python, address)
        if type(address) is str:
            assert_decides_alike(in_c, in_python, address)


BEFORE = ["", " ", "\t", "\n", "\x00", "[", "0", "\ufeff", "\u00a0", "\ud800"]
AFTER = ["", " ", "\t", "\n", "\r\n", "\x00", "\x00junk", "\x00" * 60, "]", ".", "/32", ":80", "%", "%eth0", "%25"]
AFTER += ["%\x00", "%\ud800", "\ud800", "\udcff", "\u00e9", " " * 70]


def test_every_valid_form_with_every_decoration_is_answered_alike(
    small: list[tuple[Engine, Engine]], big: BigList
) -> None:
    """Deterministic, so that no run can miss one: a valid address, then NUL (what C would stop at),
    whitespace, a zone, a surrogate, a port ... before or after it."""
    forms = [*v4_texts(V4_BASE + 1), *v4_texts(0xC0000201), *v6_texts(V6_BASE), *v6_texts(1), "::", "0.0.0.0"]
    for form in forms:
        for before in BEFORE:
            for after in AFTER:
                for engines in (*small, *big.pairs):
                    assert_alike(*engines, before + form + after)
                    assert_alike(*engines, Text(before + form + after))


def test_the_edges_of_the_mapped_block_are_answered_alike(small: list[tuple[Engine, Engine]], big: BigList) -> None:
    """``::ffff:0:0/96`` and its neighbours, written every way, and the rule each lands on."""
    edges = ["::ffff:0.0.0.0", "::ffff:0:0", "::ffff:255.255.255.255", "::ffff:ffff:ffff", "::fffe:ffff:ffff"]
    edges += ["::1:0:0:0", "::ffff:0:0:0", "::0.0.0.0", "::255.255.255.255", "::", "::0:0", "::ffff"]
    edges += ["::ffff:10.0.0.1", "::FFFF:A00:1", "::ffff:0a00:0001", "::ffff:10.0.0.1%eth0", "::10.0.0.1"]
    in_c = small[0][0]
    rules = in_c.rules
    assert in_c.lookup("::ffff:10.0.0.1") is rules[0] is in_c.lookup("::FFFF:A00:1")  # mapped: its IPv4 rule
    assert in_c.lookup("::10.0.0.1") is rules[2]  # compatible: an IPv6 address
    assert in_c.lookup("::fffe:ffff:ffff") is rules[3] and in_c.lookup("::1:0:0:0") is None
    assert in_c.lookup("::ffff:0:0:0") is rules[4]
    for address in edges:
        for engines in (*small, *big.pairs):
            assert_alike(*engines, address)

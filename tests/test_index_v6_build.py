"""Compiling IPv6 spans as 16-byte keys: ``union_keys`` and the index it feeds, against naive sets.

``union_keys`` has three ways to a union (no span merges; a few merge and are patched one by
one; many merge and the ends are sorted on their own) and a fourth for spans that reach the top
of the space: each is forced here and checked against a plain merge of integer spans. The list
file's IPv6 fast path (bytes, IPv4-mapped lines folded afterwards) is checked against
``parse_span``, and the compact columns (``SpanSet.v6``) against what they were given.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flask_allow.index as index_module
from flask_allow.addresses import V6_MAX, Span, parse_span
from flask_allow.builtins.listfile import parse_list
from flask_allow.index import SpanSet, StaticIndex, union_keys

BASES = [0, int(ipaddress.IPv6Address("2001:db8::")), 1 << 127, V6_MAX - 500]


def naive_bounds(spans: list[tuple[int, int]]) -> list[int]:
    """Sorted, disjoint, non-adjacent intervals as boundaries: open, end (exclusive), ... (no end past the top)."""
    merged: list[list[int]] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    bounds = []
    for first, last in merged:
        bounds.append(first)
        if last < V6_MAX:
            bounds.append(last + 1)
    return bounds


def keys_of(joined: bytes) -> list[int]:
    assert len(joined) % 16 == 0
    return [int.from_bytes(joined[at : at + 16], "big") for at in range(0, len(joined), 16)]


@contextmanager
def tuned(name: str, value: int) -> Iterator[None]:
    """``index_module.<name> = value`` within the block."""
    saved = getattr(index_module, name)
    setattr(index_module, name, value)
    try:
        yield
    finally:
        setattr(index_module, name, saved)


def merge_few(value: int) -> Any:
    """``union_keys`` patches up to ``count // value`` merging spans one by one (1: always; huge: never)."""
    return tuned("MERGE_FEW", value)


@st.composite
def v6_spans(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Spans clustered near a few bases (so they nest, overlap, repeat and touch), now and then the whole space."""
    spans = []
    for _ in range(draw(st.integers(0, 50))):
        base = draw(st.sampled_from(BASES))
        first = min(V6_MAX, base + draw(st.integers(0, 400)))
        width = draw(st.sampled_from([0, 0, 0, 1, 3, 20, 200, 1 << 70]))
        spans.append((first, min(V6_MAX, first + width)))
    if draw(st.integers(0, 20)) == 0:
        spans.append((0, V6_MAX))
    return spans


@settings(max_examples=300, deadline=None)
@given(spans=v6_spans(), few=st.sampled_from([1, 16, 10**9]))
def test_union_keys_is_the_union(spans: list[tuple[int, int]], few: int) -> None:
    made = SpanSet.of((6, first, last) for first, last in spans)
    with merge_few(few):
        assert keys_of(union_keys(made.v6)) == naive_bounds(spans)


@settings(max_examples=150, deadline=None)
@given(spans=v6_spans(), few=st.sampled_from([1, 10**9]), small=st.booleans())
def test_one_rule_of_ipv6_spans_indexes_as_a_naive_search(spans: list[tuple[int, int]], few: int, small: bool) -> None:
    """A list file's index (one rule: its boundaries taken as ``union_keys`` joined them)."""
    with merge_few(few), tuned("V6_KEYS_MAX", 4096 if small else 0):
        index = StaticIndex([SpanSet.of((6, first, last) for first, last in spans)])
    assert index.v6_high.typecode == index.v6_low.typecode == "Q"
    assert index.v6_labels.typecode == "B"
    starts = index.v6_starts
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert all(a != b for a, b in zip(index.v6_labels, index.v6_labels[1:], strict=False))
    assert (index.v6_keys is not None) == small
    if index.v6_keys is not None:
        assert [int.from_bytes(key, "big") for key in index.v6_keys] == starts
    assert index.reachable == ({0, 1} if spans else {0})  # 0: every IPv4 address
    probes = {0, V6_MAX, *(value + d for first, last in spans for value in (first, last) for d in (-1, 0, 1))}
    for value in sorted(v for v in probes if 0 <= v <= V6_MAX):
        expected = int(any(first <= value <= last for first, last in spans))
        assert index.lookup(6, value) == expected, value


def test_spans_reaching_the_top_merge_with_what_follows_them() -> None:
    spans = [(5, V6_MAX), (7, 9), (V6_MAX, V6_MAX), (1, 3), (V6_MAX - 1, V6_MAX)]
    made = SpanSet.of((6, first, last) for first, last in spans)
    assert keys_of(union_keys(made.v6)) == [1, 4, 5]  # 5 up: no end
    index = StaticIndex([made])
    assert index.v6_starts == [0, 1, 4, 5] and list(index.v6_labels) == [0, 1, 0, 1]


@pytest.mark.parametrize("few", [1, 10**9])
def test_a_large_list_with_a_few_merging_spans(few: int) -> None:
    """Thousands of spans, a few of them duplicated, nested, overlapping or touching their neighbours."""
    rnd = random.Random(3)
    firsts = {rnd.getrandbits(112) << 16 for _ in range(5000)}
    spans = [(first, first + rnd.choice((0, 0xFFFF))) for first in firsts]
    first, last = spans[10]
    spans += [spans[20], (first + 1, first + 2), (last + 1, last + 1), (first, last + 5), spans[30]]
    made = SpanSet.of((6, a, b) for a, b in spans)
    with merge_few(few):
        assert keys_of(union_keys(made.v6)) == naive_bounds(spans)


def test_several_rules_with_ipv6_spans_take_the_first_covering_rule() -> None:
    rules = [[(6, 10, 20), (6, 40, 40)], [(6, 0, 15), (6, 21, 39)], [(6, 30, V6_MAX)]]
    index = StaticIndex(rules)
    expected = {0: 2, 9: 2, 10: 1, 20: 1, 21: 2, 39: 2, 40: 1, 41: 3, V6_MAX: 3}
    assert {value: index.lookup(6, value) for value in expected} == expected
    assert index.v6_starts == [0, 10, 21, 40, 41] and list(index.v6_labels) == [2, 1, 2, 1, 3]


def test_span_set_keeps_ipv6_spans_as_records() -> None:
    made = SpanSet.of([(6, 0, 0), (6, V6_MAX, V6_MAX), (4, 1, 2), (6, 5, 9)])
    assert len(made) == 4 and len(made.v6) == 3 * 32
    assert list(made) == [Span(4, 1, 2), Span(6, 0, 0), Span(6, V6_MAX, V6_MAX), Span(6, 5, 9)]
    # the last of one record and the first of the next read as the whole space: not a span of it
    assert not made.covers_all(6)
    made.add(6, 0, V6_MAX)
    assert made.covers_all(6) and not made.covers_all(4)
    assert SpanSet.of([(6, 0, V6_MAX)]).covers_all(6)


def write(tmp_path: Path, lines: list[str]) -> str:
    path = tmp_path / "list.txt"
    path.write_text("# IPv6\n" + "\n".join(lines) + "\n")
    return str(path)


def test_list_file_ipv6_fast_path_as_parse_span(tmp_path: Path) -> None:
    lines = [
        "2001:db8::1",
        "2001:db8::/32",
        "2001:db8:1::/48",
        "2001:db8:2::/63",  # not a whole byte: by way of an integer
        "2001:db8:3::/127",
        "2001:db8:4::1/128",
        "::/0",
        "::/80",  # holds the mapped block and more: IPv6, as written
        "::ffff:10.0.0.1",  # mapped: IPv4
        "::ffff:a00:2",
        "::ffff:10.1.0.0/112",
        "::ffff:16.0.0.0/100",
        "::ffff:0:0/96",
        "0:0:0:0:0:ffff:10.3.0.0/120",
        "2001::ffff:0:0",  # looks mapped from its sixth group on: IPv6
        "1:0:0:0:0:0:0:ffff",
        "::ffff:0:0:0/80",  # not mapped (ffff is the fifth group)
    ]
    found, warnings = parse_list(write(tmp_path, lines))
    assert warnings == []
    assert sorted(found) == sorted(parse_span(line)[0] for line in lines)
    assert len(found.v6) == 32 * sum(1 for line in lines if parse_span(line)[0].family == 6)


def test_list_file_ipv6_lines_off_the_fast_path_keep_their_errors_and_warnings(tmp_path: Path) -> None:
    path = write(tmp_path, ["2001:db8::/32", "2001:db8::1/64", "::ffff:10.0.0.1/120", "2001:db8::/48 # x"])
    found, warnings = parse_list(path)
    assert sorted(found) == sorted(
        parse_span(x)[0] for x in ("2001:db8::/32", "2001:db8::/64", "10.0.0.0/24", "2001:db8::/48")
    )
    assert len(warnings) == 1 and "line 3:" in warnings[0] and "(and 1 more)" in warnings[0]
    for bad in (
        "2001:db8::/129",
        "2001:db8::/064",
        "2001:db8::/",
        "2001:db8::/64/8",
        "2001:db8:::1",
        "::ffff:1.2.3.4/200",
    ):
        with pytest.raises(ValueError, match="line 3: ") as caught:
            parse_list(write(tmp_path, ["::1", bad]))
        with pytest.raises(ValueError) as expected:
            parse_span(bad)
        assert str(caught.value).endswith(str(expected.value))


INDEX_FIELDS = ("size", "reachable", "v4_starts", "v4_labels", "v4_keys", "v6_high", "v6_low", "v6_labels", "v6_keys")


@pytest.mark.parametrize("count", [100, 5000])  # with and without ``v6_keys``
def test_an_ipv6_list_built_in_a_child_process_is_the_same(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """One rule of IPv6 spans (and a few IPv4 ones), as a list file gives them: the records go through a file."""
    monkeypatch.setattr(index_module, "ELSEWHERE_MIN", 0)
    calls: list[int] = []
    real = index_module._build_in_child
    monkeypatch.setattr(index_module, "_build_in_child", lambda sets, into: calls.append(1) or real(sets, into))

    def spans() -> SpanSet:
        rnd = random.Random(count)
        made = SpanSet.of(
            (6, first, first + rnd.choice((0, 0, 255))) for first in (rnd.getrandbits(120) << 8 for _ in range(count))
        )
        made.add(4, 167772160, 167772415)
        made.add(6, 0, 0)
        return made

    here = StaticIndex([spans()])
    with index_module.built_elsewhere():
        there = StaticIndex([spans()])
    assert calls == [1]
    assert (here.v6_keys is None) == (count > index_module.V6_KEYS_MAX)
    for field in INDEX_FIELDS:
        assert getattr(there, field) == getattr(here, field), field

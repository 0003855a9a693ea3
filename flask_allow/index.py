"""One lookup structure for a run of consecutive static rules.

The run is flattened, once, into disjoint intervals per address family, each labelled with the
first rule of the run that covers it (first match wins), so a lookup is one binary search
however many rules and networks the run holds. IPv4 boundaries live in a compact ``array``
of 32-bit integers; IPv6 boundaries in a list of ints.
"""

from __future__ import annotations

import heapq
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence

from .addresses import V4_MAX, V6_MAX, Span

NO_MATCH = 0  # label of the gaps; rule k of the run is labelled k + 1


def flatten(spans: Iterable[tuple[int, int, int]], top: int) -> tuple[list[int], list[int]]:
    """Flatten ``(first, last, label)`` spans into boundaries and labels, lowest label winning.

    Returns ``starts`` (beginning with 0) and ``labels``, such that the label of address ``x`` is
    ``labels[bisect_right(starts, x) - 1]``; adjacent intervals never share a label.
    """
    items = sorted(spans)
    starts: list[int] = [0]
    labels: list[int] = [NO_MATCH]

    def emit(position: int, label: int) -> None:
        if position > top:
            return
        if starts[-1] == position:
            labels[-1] = label
            if len(labels) > 1 and labels[-2] == label:
                starts.pop()
                labels.pop()
        elif labels[-1] != label:
            starts.append(position)
            labels.append(label)

    if items and _one_label(items):
        _flatten_one(items, emit)
        return starts, labels

    active: list[tuple[int, int]] = []  # heap of (label, last)
    i, n = 0, len(items)
    position = items[0][0] if items else 0
    while i < n or active:
        if not active and i < n and items[i][0] > position:
            position = items[i][0]
        while i < n and items[i][0] == position:
            heapq.heappush(active, (items[i][2], items[i][1]))
            i += 1
        while active and active[0][1] < position:
            heapq.heappop(active)
        if not active:
            emit(position, NO_MATCH)
            continue
        emit(position, active[0][0])
        end = active[0][1] + 1
        next_start = items[i][0] if i < n else end
        position = min(end, next_start)
    return starts, labels


def _one_label(items: list[tuple[int, int, int]]) -> bool:
    label = items[0][2]
    return all(item[2] == label for item in items)


def _flatten_one(items: list[tuple[int, int, int]], emit: object) -> None:
    """Merge the spans of a single rule (the common ``file:`` case): a plain union."""
    label = items[0][2]
    first, last, _ = items[0]
    for lo, hi, _ in items:
        if lo <= last + 1:
            if hi > last:
                last = hi
        else:
            emit(first, label)  # type: ignore[operator]
            emit(last + 1, NO_MATCH)  # type: ignore[operator]
            first, last = lo, hi
    emit(first, label)  # type: ignore[operator]
    emit(last + 1, NO_MATCH)  # type: ignore[operator]


class StaticIndex:
    """The compiled form of a run of static rules: ``lookup(family, value)`` -> label."""

    __slots__ = ("size", "v4_labels", "v4_starts", "v6_labels", "v6_starts")

    def __init__(self, per_rule_spans: Sequence[Iterable[Span]]) -> None:
        v4: list[tuple[int, int, int]] = []
        v6: list[tuple[int, int, int]] = []
        for label, spans in enumerate(per_rule_spans, start=1):
            for family, first, last in spans:
                (v4 if family == 4 else v6).append((first, last, label))
        #: How many spans went in, before merging (for ``flask allow rules``).
        self.size = len(v4) + len(v6)
        starts, labels = flatten(v4, V4_MAX)
        self.v4_starts = array("I", starts)
        self.v4_labels = array("I", labels)
        del v4, starts, labels
        self.v6_starts, v6_labels = flatten(v6, V6_MAX)
        self.v6_labels = array("I", v6_labels)

    def lookup(self, family: int, value: int) -> int:
        """Return the label (1-based rule position in the run) covering the address, or 0."""
        if family == 4:
            return self.v4_labels[bisect_right(self.v4_starts, value) - 1]
        return self.v6_labels[bisect_right(self.v6_starts, value) - 1]

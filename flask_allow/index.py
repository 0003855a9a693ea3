"""One lookup structure for a run of consecutive static rules.

The run is flattened, once, into disjoint intervals per address family, each labelled with the
first rule of the run that covers it (first match wins), so a lookup is one binary search
however many rules and networks the run holds. Everything kept is a compact ``array``: IPv4
boundaries as 32-bit integers (with tables per /16 once there are many, so a search touches a
few entries whatever the size), IPv6 boundaries as two 64-bit halves, labels as the smallest
integer type that holds them. No Python object per network survives compiling (a small index
also keeps its boundaries as bytes, to be searched with the packed address itself). A large
index built during ``reload()`` is built in a child process: see ``built_elsewhere()``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from itertools import accumulate, chain, compress, islice, pairwise, repeat
from operator import gt, ne
from struct import Struct
from typing import Any, BinaryIO

from .addresses import V4_MAX, Span

NO_MATCH = 0  # label of the gaps; rule k of the run is labelled k + 1
#: From this many IPv4 boundaries on, an index keeps ``v4_direct`` and ``v4_radix`` (per /16).
RADIX_MIN = 256
RADIX_SHIFT = 16
#: From this many IPv4 boundaries on, the C search also keeps a bitmap of the /21 blocks that
#: its most common label covers whole (256 KiB): most clients of a large list are answered there.
PLAIN_MIN = 65536
#: Below this many IPv6 boundaries, an index also keeps them as 16-byte keys (``v6_keys``).
V6_KEYS_MAX = 4096
_LOW64 = (1 << 64) - 1
_succ = (1).__add__
#: IPv6 addresses while compiling: 16-byte big-endian keys, which compare as the integers do.
V6_ZERO = bytes(16)
V6_TOP = b"\xff" * 16
#: The exclusive end of a span reaching ``V6_TOP``: above every 16-byte key (never kept in an index).
_V6_BEYOND = b"\xff" * 17
_V6_ALL = V6_ZERO + V6_TOP
_ONE = b"\x00" * 15 + b"\x01"
_ONE_LAST = bytes(16) + _ONE  # 1 at the last of a ``SpanSet.v6`` record
_TOUCH = b"\x02" + bytes(16)  # see ``_merging``
_CUT_CHUNK = 512  # records unpacked at a time by ``_cut``
#: ``union_keys`` merges overlapping or touching spans one by one while they are at most one in this many.
MERGE_FEW = 16
_CUTTERS: dict[int, Struct] = {}


class SpanSet:
    """The spans of one static rule as compact columns, in no particular order.

    What a list file compiles into without a ``Span`` per line: ``v4_first``/``v4_last`` are
    arrays of 32-bit integers; ``v6`` is a ``bytearray`` of 32-byte records, the first and the
    last address of a span as 16 bytes each, big-endian (as ``inet_pton`` packs them): sorting
    the records sorts the spans, and they compile with no 128-bit arithmetic. A matcher may hand
    one to the engine from a ``span_set()`` method instead of ``spans()``.
    """

    __slots__ = ("v4_first", "v4_last", "v6")

    def __init__(self) -> None:
        self.v4_first = array("I")
        self.v4_last = array("I")
        self.v6 = bytearray()

    @classmethod
    def of(cls, spans: Iterable[tuple[int, int, int]]) -> SpanSet:
        """Collect folded spans (``Span`` or ``(family, first, last)``)."""
        made = cls()
        for family, first, last in spans:
            made.add(family, first, last)
        return made

    def add(self, family: int, first: int, last: int) -> None:
        """Add one span (integers, as in a ``Span``)."""
        if family == 4:
            self.v4_first.append(first)
            self.v4_last.append(last)
        else:
            self.v6 += first.to_bytes(16, "big") + last.to_bytes(16, "big")

    def __len__(self) -> int:
        return len(self.v4_first) + len(self.v6) // 32

    def __iter__(self) -> Iterator[Span]:
        for first, last in zip(self.v4_first, self.v4_last, strict=True):
            yield Span(4, first, last)
        v6 = self.v6
        for at in range(0, len(v6), 32):
            yield Span(6, int.from_bytes(v6[at : at + 16], "big"), int.from_bytes(v6[at + 16 : at + 32], "big"))

    def covers_all(self, family: int) -> bool:
        """Say whether one span is the whole address space of ``family``."""
        if family == 6:
            at = self.v6.find(_V6_ALL)
            while at > 0 and at % 32:  # found across two records: look further
                at = self.v6.find(_V6_ALL, at + 1)
            return at >= 0
        firsts, lasts = self.v4_first, self.v4_last
        return 0 in firsts and any(last == V4_MAX for first, last in zip(firsts, lasts, strict=True) if first == 0)


def union(firsts: Sequence[int], lasts: Sequence[int]) -> tuple[list[int], list[int]]:
    """Merge inclusive spans into sorted, disjoint, non-adjacent ``[open, end)`` intervals.

    Sorting the firsts and the lasts each on its own keeps the union (the i-th smallest first
    paired with the i-th smallest last covers exactly the same addresses), and a gap lies
    between ``last[i - 1]`` and ``first[i]`` exactly when ``first[i] > last[i - 1] + 1``.
    Everything runs in C loops (sort, map, compress), none per span in Python.
    """
    if not firsts:
        return [], []
    opens = sorted(firsts)
    ends = sorted(lasts)
    gaps = list(map(gt, islice(opens, 1, None), map(_succ, ends)))
    # exclusive ends; the last may be top + 1
    return [opens[0], *compress(islice(opens, 1, None), gaps)], [*map(_succ, compress(ends, gaps)), ends[-1] + 1]


def union_keys(spans: bytes | bytearray) -> bytes:
    """``union()`` for IPv6 spans as in ``SpanSet.v6``: the boundaries of the sorted, disjoint,
    non-adjacent intervals joined as 16-byte keys (open, end, open, end, ...; no end for an
    interval that reaches the top of the space).

    No 128-bit integers, and no object per span but for the sort: the spans are sorted by first
    address, then every end (``last + 1``) is made at once, by one addition to the joined
    records read as a big integer. When no span overlaps or touches the one before (see
    ``_merging``), that sum is the answer; a few that do are merged into their neighbours; many,
    as ``union()`` does it (see ``_union_sorted``).
    """
    if not spans:
        return b""
    records = _cut(spans, 32)
    ordered = sorted(records)
    joined = b"".join(ordered)
    # Freed as they were made (``records`` is in memory order), not in sorted order: the memory
    # they took is then given back whole, but for the few pools made last.
    del ordered, records
    count = len(joined) // 32
    if _finds_top_last(joined):  # adding 1 to that last would carry into its first
        return _union_sorted(_cut(joined), False)
    bounds = (int.from_bytes(joined, "big") + int.from_bytes(_ONE_LAST * count, "big")).to_bytes(32 * count, "big")
    del joined
    merging = _merging(bounds)
    if not merging:
        return bounds
    if len(merging) > count // MERGE_FEW:
        return _union_sorted(_cut(bounds), True)
    return _merge_few(bounds, merging)


def _merging(bounds: bytes) -> list[int]:
    """The spans (by position) whose open is not above the end of the span before, in order.

    All compared at once: in 17-byte places, ``2**129 + open[i] - end[i - 1]`` (which never
    borrows from the next place) begins with 1 where the open is below the end, and is exactly
    ``2**129`` where they are equal.
    """
    count = len(bounds) // 32 - 1  # comparisons
    opens = bytearray(17 * count)
    ends = bytearray(17 * count)
    for at in range(16):
        opens[1 + at :: 17] = bounds[32 + at :: 32]
        ends[1 + at :: 17] = bounds[16 + at : 32 * count : 32]
    opens[0::17] = b"\x02" * count
    found = (int.from_bytes(opens, "big") - int.from_bytes(ends, "big")).to_bytes(17 * count, "big")
    del opens, ends
    merging = []
    tops = found[0::17]
    at = tops.find(1)
    while at >= 0:
        merging.append(at + 1)
        at = tops.find(1, at + 1)
    at = found.find(_TOUCH)
    while at >= 0:  # always at the start of a place: every place begins with 1 or 2
        merging.append(at // 17 + 1)
        at = found.find(_TOUCH, at + 17)
    return sorted(merging)


def _union_sorted(keys: list[bytes], ended: bool) -> bytes:
    """``union_keys`` from spans sorted by first: ``keys`` alternate firsts and lasts (``ended``: ends)."""
    opens = keys[0::2]
    ends = sorted(keys[1::2]) if ended else _successors(sorted(keys[1::2]))
    gaps = list(map(gt, islice(opens, 1, None), ends))
    opens = [opens[0], *compress(islice(opens, 1, None), gaps)]
    ends = [*compress(ends, gaps), ends[-1]]
    keys = [b""] * (2 * len(opens))
    keys[0::2] = opens
    keys[1::2] = ends
    if ends[-1] == _V6_BEYOND:
        keys.pop()
    return b"".join(keys)


def _merge_few(bounds: bytes, merging: list[int]) -> bytes:
    """``union_keys`` where a few spans (``merging``) overlap or touch the one before.

    Each run of merging spans becomes one interval: the open of its first, the highest end.
    """
    count = len(bounds) // 32
    out = bytearray(bounds)
    kept = []
    at = i = 0
    for first in merging:
        if first < i:  # merged already, with an earlier run
            continue
        i = first  # span i merges with span i - 1, whose end is the highest so far
        reach = bounds[32 * i - 16 : 32 * i]
        cut = 32 * i - 16  # from the end of span i - 1 ...
        while i < count and bounds[32 * i : 32 * i + 16] <= reach:
            reach = max(reach, bounds[32 * i + 16 : 32 * i + 32])
            i += 1
        kept.append((at, cut))
        out[32 * i - 16 : 32 * i] = reach  # ... to the end of the last span of the run, which gets the highest
        at = 32 * i - 16
    kept.append((at, len(out)))
    with memoryview(out) as view:
        return b"".join([view[start:stop] for start, stop in kept])


def _finds_top_last(joined: bytes) -> bool:
    """Whether a span of joined ``SpanSet.v6`` records ends at ``V6_TOP``."""
    at = joined.find(V6_TOP, 16)
    while at >= 0 and at % 32 != 16:  # found across two keys: look further
        at = joined.find(V6_TOP, at + 1)
    return at >= 0


def _successors(keys: list[bytes]) -> list[bytes]:
    """``key + 1`` of each of sorted 16-byte keys (``_V6_BEYOND`` for ``V6_TOP``).

    All at once: the keys joined read as one big integer, plus 1 in every 16-byte place (no
    carry crosses a place: the keys ``V6_TOP``, all at the end, are left out of it).
    """
    count = len(keys)
    while count and keys[count - 1] == V6_TOP:
        count -= 1
    total = int.from_bytes(b"".join(keys[:count]), "big") + int.from_bytes(_ONE * count, "big")
    return _cut(total.to_bytes(16 * count, "big")) + [_V6_BEYOND] * (len(keys) - count)


def _cut(joined: bytes | bytearray, size: int = 16) -> list[bytes]:
    """The records of ``size`` bytes that ``joined`` holds (made in C, side by side in memory)."""
    cutter = _CUTTERS.get(size) or _CUTTERS.setdefault(size, Struct(f"{size}s" * _CUT_CHUNK))
    whole = len(joined) - len(joined) % cutter.size
    with memoryview(joined) as view:
        found: list[bytes] = list(chain.from_iterable(cutter.iter_unpack(view[:whole])))
        if whole < len(joined):
            found.extend(Struct(f"{size}s" * ((len(joined) - whole) // size)).unpack(view[whole:]))
    return found


def _typecode(labels: int) -> str:
    return "B" if labels < 0x100 else "H" if labels < 0x10000 else "I"


def flatten(unions: Sequence[tuple[list[Any], list[Any]]], zero: Any, beyond: Any) -> tuple[list[Any], array[int]]:
    """Label the address space of one family with the first union (rule) covering each address.

    ``unions[k]`` is rule k's ``union()`` (or ``union_keys()``), labelled ``k + 1``; ``zero`` is
    the first address of the space and ``beyond`` the end past its last (``V4_MAX + 1`` for
    integers). Returns ``starts`` (beginning with ``zero``) and ``labels``, such that the label of
    address ``x`` is ``labels[bisect_right(starts, x) - 1]``; adjacent intervals never share a label.
    """
    code = _typecode(len(unions) + 1)
    present = [(label, u) for label, u in enumerate(unions, start=1) if u[0]]
    if len(present) == 1:  # one rule (a list file, or one network): alternate its label and gaps
        label, (opens, ends) = present[0]
        starts = [0] * (2 * len(opens))
        starts[0::2] = opens
        starts[1::2] = ends
        labels = array(code, [label, NO_MATCH]) * len(opens)
        if starts[-1] == beyond:
            starts.pop()
            labels.pop()
        if starts[0] != zero:
            starts.insert(0, zero)
            labels.insert(0, NO_MATCH)
        return starts, labels
    if not present:
        return [zero], array(code, [NO_MATCH])
    # Several rules: cut the space at every boundary, paint each rule's intervals from the last
    # rule to the first (so the first covering rule is painted last), then merge equal neighbours.
    points_set = {zero}
    for _, (opens, ends) in present:
        points_set.update(opens)
        points_set.update(ends)
    points_set.discard(beyond)
    points = sorted(points_set)
    del points_set
    paint = array(code, bytes(len(points) * array(code).itemsize))
    one = {label: array(code, [label]) for label, _ in present}
    where = repeat(points)
    for label, (opens, ends) in reversed(present):
        fill = one[label]
        for lo, hi in zip(map(bisect_left, where, opens), map(bisect_left, where, ends), strict=True):
            paint[lo:hi] = fill * (hi - lo)
    keep = [True, *map(ne, islice(paint, 1, None), paint)]
    return list(compress(points, keep)), array(code, compress(paint, keep))


class StaticIndex:
    """The compiled form of a run of static rules: ``lookup(family, value)`` -> label.

    ``per_rule_spans[k]`` holds rule k's spans (``Span`` tuples, or a ``SpanSet``); the label of
    rule k is ``k + 1``, and 0 means no rule of the run covers the address. Under
    ``built_elsewhere()``, a large index is built in a child process (see there).
    """

    __slots__ = (
        "reachable",
        "size",
        "v4_direct",
        "v4_keys",
        "v4_labels",
        "v4_pair",
        "v4_radix",
        "v4_starts",
        "v6_high",
        "v6_keys",
        "v6_labels",
        "v6_low",
    )

    def __init__(self, per_rule_spans: Sequence[Iterable[tuple[int, int, int]] | SpanSet]) -> None:
        sets = [spans if isinstance(spans, SpanSet) else SpanSet.of(spans) for spans in per_rule_spans]
        #: How many spans went in, before merging (for ``flask allow rules``).
        self.size = sum(map(len, sets))
        if _ELSEWHERE.get() and self.size >= ELSEWHERE_MIN and _python() is not None:
            try:
                _build_in_child(sets, self)
                return
            except Exception as exc:  # the child could not do it: do it here (blocking, but right)
                logging.getLogger("flask_allow").warning(
                    "flask_allow: building an index of %d spans in a child process failed (%s); building it here",
                    self.size,
                    exc,
                )
        self._build(sets)

    def _build(self, sets: list[SpanSet]) -> None:
        starts, labels = flatten([union(s.v4_first, s.v4_last) for s in sets], 0, V4_MAX + 1)
        self.v4_starts = array("I", starts)
        self.v4_labels = labels
        del starts
        #: Small indexes: the boundaries as 4-byte big-endian keys, searched with the packed
        #: address itself (what ``inet_pton`` returns), so a lookup makes no integer at all.
        self.v4_keys: list[bytes] | None = None
        #: Large indexes: ``v4_direct[b]`` is the label of all of /16 number ``b`` when no
        #: boundary lies inside it (else -1), so most lookups need no search; otherwise
        #: ``v4_starts[v4_radix[b]:v4_radix[b + 1]]`` are the few boundaries to search.
        self.v4_direct: array[int] | None = None
        self.v4_radix: array[int] | None = None
        #: The two labels when they alternate (one rule in the run, a list file): the label of
        #: boundary ``i`` is then ``v4_pair[i & 1]``, one memory access fewer than ``v4_labels``.
        self.v4_pair: tuple[int, int] | None = None
        if len(self.v4_starts) < RADIX_MIN:
            self.v4_keys = [start.to_bytes(4, "big") for start in self.v4_starts]
        else:
            radix = _radix(self.v4_starts)
            code = _typecode(2 * len(sets) + 2).lower()  # signed, for the -1
            self.v4_direct = array(code, [labels[lo - 1] if lo == hi else -1 for lo, hi in pairwise(radix)])
            self.v4_radix = radix
            evens, odds = labels[0::2], labels[1::2]
            if odds and evens.count(evens[0]) == len(evens) and odds.count(odds[0]) == len(odds):
                self.v4_pair = (evens[0], odds[0])
        joined, self.v6_labels = _flatten_v6(sets)
        self.v6_high, self.v6_low = _halves(joined)
        #: Small indexes: the IPv6 boundaries as 16-byte keys, as for IPv4.
        self.v6_keys = _cut(joined) if len(joined) < 16 * V6_KEYS_MAX else None
        del joined
        #: Every label some address gets (a rule missing from it is shadowed by earlier ones).
        self.reachable = set(self.v4_pair or self.v4_labels) | set(self.v6_labels)

    def _take(self, header: dict[str, Any], source: BinaryIO) -> None:
        """Read the arrays a child process built, a slice at a time (see ``_build_in_child``)."""
        self.v4_direct = self.v4_radix = None
        for name, code, count in header["arrays"]:
            made = array(code)
            while len(made) < count:
                made.fromfile(source, min(count - len(made), _SLICE // made.itemsize))
                time.sleep(_PAUSE)  # the threads serving requests get the GIL in between
            setattr(self, name, made)
        for name, width in (("v4_keys", 4), ("v6_keys", 16)):
            count = header[name]
            data = b"" if count is None else source.read(count * width)
            setattr(self, name, None if count is None else [data[at : at + width] for at in range(0, len(data), width)])
        pair = header["pair"]
        self.v4_pair = (pair[0], pair[1]) if pair else None
        self.reachable = set(header["reachable"])

    def lookup(self, family: int, value: int) -> int:
        """Return the label (1-based rule position in the run) covering the address, or 0."""
        if family == 4:
            direct = self.v4_direct
            if direct is None:
                return self.v4_labels[bisect_right(self.v4_starts, value) - 1]
            bucket = value >> RADIX_SHIFT
            label = direct[bucket]
            if label >= 0:
                return label
            radix = self.v4_radix
            return self.v4_labels[bisect_right(self.v4_starts, value, radix[bucket], radix[bucket + 1]) - 1]  # type: ignore[index]
        return self.v6_labels[v6_position(self.v6_high, self.v6_low, value)]

    @property
    def v6_starts(self) -> list[int]:
        """The IPv6 boundaries as integers (for tools; lookups use the two halves)."""
        return [(high << 64) | low for high, low in zip(self.v6_high, self.v6_low, strict=True)]

    def labels(self) -> set[int]:
        """Every label some address gets (rules not in it are shadowed by earlier ones)."""
        return set(self.reachable)


# -- building elsewhere -----------------------------------------------------------------------
#
# Compiling a million-line list is seconds of work, most of it in C calls (sorting, mapping)
# that hold the GIL throughout: in a ``reload()`` next to threads serving requests, those would
# stall. Under ``built_elsewhere()`` a large index is built by ``python -c`` in a child process
# (this module's own code, fed the spans through a pipe), while this thread waits with the GIL
# released; the arrays come back as bytes and are copied in a slice at a time.

_ELSEWHERE: ContextVar[bool] = ContextVar("flask_allow_built_elsewhere", default=False)
#: Spans from which an index built under ``built_elsewhere()`` is built in a child process.
ELSEWHERE_MIN = 20_000
_SLICE = 1 << 18  # bytes read at a time when taking the child's arrays
_PAUSE = 0.0001  # seconds slept between those slices: a thread waiting for the GIL surely gets it
_ARRAYS = ("v4_starts", "v4_labels", "v4_direct", "v4_radix", "v6_high", "v6_low", "v6_labels")
_CHILD = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[1]); from flask_allow.index import _child_main; _child_main()"
)


@contextmanager
def built_elsewhere() -> Iterator[None]:
    """Within this block (in this thread), build large indexes in a child process.

    Also makes list files yield the GIL as they are read. If the child cannot be started or
    fails, the index is built here after all, with a warning: slower for others, never wrong.
    """
    token = _ELSEWHERE.set(True)
    try:
        yield
    finally:
        _ELSEWHERE.reset(token)


def yielding() -> bool:
    """Whether long work in this thread should let other threads run now and then."""
    return _ELSEWHERE.get()


def _python() -> str | None:
    """The Python interpreter to run the child with (not an embedding server's binary), or None."""
    executable = sys.executable or ""
    name = os.path.basename(executable).lower()
    return executable if executable and ("python" in name or "pypy" in name) else None


def _build_in_child(sets: list[SpanSet], into: StaticIndex) -> None:
    """Have a child process build the index of ``sets``, then take its arrays ``into`` an index.

    Spans and arrays go through temporary files, written and read in slices (``tofile`` and
    ``fromfile``, with pauses): nothing here holds the GIL for long while the child works.
    """
    paths = json.dumps([path for path in sys.path if isinstance(path, str)])
    names = []
    try:
        for _ in range(2):
            handle, name = tempfile.mkstemp(prefix="flask_allow-index-")
            os.close(handle)
            names.append(name)
        with open(names[0], "wb") as out:
            tunables = {"RADIX_MIN": RADIX_MIN, "V6_KEYS_MAX": V6_KEYS_MAX}  # the same layout as here
            out.write(json.dumps([tunables, [(len(s.v4_first), len(s.v6)) for s in sets]]).encode() + b"\n")
            for found in sets:
                found.v4_first.tofile(out)  # in 64 KiB writes, the GIL released for each
                found.v4_last.tofile(out)
                time.sleep(_PAUSE)
                with memoryview(found.v6) as v6:
                    for at in range(0, len(v6), _SLICE):
                        out.write(v6[at : at + _SLICE])
                        time.sleep(_PAUSE)
        done = subprocess.run(
            [_python() or "python", "-c", _CHILD, paths, *names],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError((done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1])
        with open(names[1], "rb") as source:
            into._take(json.loads(source.readline()), source)
    finally:
        for name in names:
            os.unlink(name)


def _child_main() -> None:
    """The child's side: the spans from the file named first in argv, the index to the one named last."""
    with open(sys.argv[-2], "rb") as source:
        sets = []
        tunables, counts = json.loads(source.readline())
        globals().update(tunables)
        for count, size in counts:
            found = SpanSet()
            found.v4_first.fromfile(source, count)
            found.v4_last.fromfile(source, count)
            found.v6 += source.read(size)
            sets.append(found)
    index = StaticIndex(sets)
    arrays = [(name, getattr(index, name)) for name in _ARRAYS if getattr(index, name) is not None]
    keys = {name: getattr(index, name) for name in ("v4_keys", "v6_keys")}
    header = {
        "arrays": [(name, made.typecode, len(made)) for name, made in arrays],
        **{name: None if found is None else len(found) for name, found in keys.items()},
        "pair": index.v4_pair,
        "reachable": sorted(index.reachable),
    }
    with open(sys.argv[-1], "wb") as out:
        out.write(json.dumps(header).encode() + b"\n")
        for _, made in arrays:
            made.tofile(out)
        for found in keys.values():
            if found is not None:
                out.write(b"".join(found))


def _radix(starts: array[int]) -> array[int]:
    """``radix[b]``: how many boundaries lie below /16 number ``b`` (for ``b`` up to 65536)."""
    buckets = 1 << (32 - RADIX_SHIFT)
    if len(starts) >= buckets:  # one search per /16
        return array("I", map(bisect_left, repeat(starts), range(0, V4_MAX + 2, 1 << RADIX_SHIFT)))
    counts = [0] * (buckets + 1)  # fewer boundaries than /16s: count them into their /16s
    for start in starts:
        counts[(start >> RADIX_SHIFT) + 1] += 1
    return array("I", accumulate(counts))


def _flatten_v6(sets: list[SpanSet]) -> tuple[bytes, array[int]]:
    """``flatten()`` for IPv6: the starts joined as 16-byte keys, and their labels.

    One rule with IPv6 spans (a list file) takes the boundaries as ``union_keys`` joined them:
    no key is made or joined again. The labels are made once the keys are gone: an array's own
    small object made among a hundred thousand short-lived keys would keep their memory from
    being given back.
    """
    unions = [union_keys(found.v6) for found in sets]
    code = _typecode(len(sets) + 1)
    present = [(label, joined) for label, joined in enumerate(unions, start=1) if joined]
    if len(present) != 1:
        keys, labels = flatten([_opens_ends(joined) for joined in unions], V6_ZERO, _V6_BEYOND)
        del unions, present
        joined = b"".join(keys)
        del keys
        return joined, labels[:]
    del unions
    label, joined = present.pop()
    count = len(joined) // 16  # odd when the last interval reaches the top
    labels = array(code, [label, NO_MATCH]) * ((count + 1) // 2)
    if count % 2:
        labels.pop()
    if not joined.startswith(V6_ZERO):
        joined = V6_ZERO + joined
        labels = array(code, [NO_MATCH]) + labels
    return joined, labels


def _opens_ends(joined: bytes) -> tuple[list[bytes], list[bytes]]:
    """The opens and the ends (``_V6_BEYOND`` past the top) of ``union_keys``' boundaries."""
    keys = _cut(joined)
    return keys[0::2], keys[1::2] + [_V6_BEYOND] * (len(keys) % 2)


def _halves(joined: bytes) -> tuple[array[int], array[int]]:
    """Split joined 16-byte big-endian keys into arrays of their high and low 64 bits."""
    both = array("Q")
    both.frombytes(joined)
    if sys.byteorder == "little":
        both.byteswap()
    return both[0::2], both[1::2]


def v6_position(high: array[int], low: array[int], value: int) -> int:
    """Position of the last IPv6 boundary at or below ``value``, searching the halves."""
    top = value >> 64
    i = bisect_right(high, top)
    if high[i - 1] == top:  # boundaries share this high half: the low halves decide among them
        i = bisect_right(low, value & _LOW64, bisect_left(high, top, 0, i), i)
    return i - 1

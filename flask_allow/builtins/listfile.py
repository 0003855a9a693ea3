"""Rule type ``file:PATH``: a list file of addresses, networks and ranges, one per line.

``#`` and ``;`` start comments (anywhere on a line), blank lines are ignored, so published
blocklists (FireHOL, Spamhaus DROP, Tor exit lists) load as they are. A relative path is taken
from the app's root path. The file is read when the rules are built and on ``reload()``, straight
into compact columns (a ``SpanSet``): a million-line list never becomes a million Python objects.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from socket import AF_INET, AF_INET6, inet_pton

from flask_allow import Matcher, MatcherContext, hookimpl
from flask_allow.addresses import Span, parse_span
from flask_allow.index import SpanSet, yielding

_BLOCK = 1 << 16  # characters read at a time (the lines of a block fit in a cache, and their memory is reused)
_SMALL_BLOCK = 1 << 13  # ... when other threads should get the GIL between blocks (a fraction of a ms)
_PAUSE = 0.0001  # seconds slept between those blocks: a thread waiting for the GIL surely gets it
# The prefix lengths the fast path takes as written ("24", never "024" or "24 "), with the host
# mask of each; anything else goes through ``parse_span``, which says what is wrong with it.
_HOST4 = {str(n): (1 << (32 - n)) - 1 for n in range(33)}
_HOST6 = {str(n): (1 << (128 - n)) - 1 for n in range(129)}
# IPv6 prefixes of whole bytes (nearly all of them): kept bytes, and the host bytes' zeros and ones.
_WHOLE6 = {str(n): (n // 8, bytes(16 - n // 8), b"\xff" * (16 - n // 8)) for n in range(0, 129, 8)}
_MAPPED = b"\x00" * 10 + b"\xff\xff"


def read_entries(path: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, entry)`` for every entry of a list file."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            entry = _entry(line)
            if entry:
                yield number, entry


def _entry(line: str) -> str:
    cut = line.find("#")
    if cut >= 0:
        line = line[:cut]
    cut = line.find(";")
    if cut >= 0:
        line = line[:cut]
    return line.strip()


def _lines(path: str, size: int = _BLOCK) -> Iterator[list[str]]:
    """The lines of a file, a block of ``size`` characters at a time, without their line ends."""
    with open(path, encoding="utf-8") as handle:
        tail = ""
        while True:
            block = handle.read(size)
            if not block:
                break
            lines = (tail + block).split("\n") if tail else block.split("\n")
            tail = lines.pop()
            yield lines
        if tail:
            yield [tail]


def parse_list(path: str) -> tuple[SpanSet, list[str]]:
    """Parse a list file into a ``SpanSet``; return it and warnings. Raises ``ValueError`` on a bad line.

    A bare IPv4/IPv6 address or ``address/length`` without host bits (nearly every line of a
    published list) takes a fast path: one ``inet_pton``, no ``Span`` (IPv6 stays the packed
    bytes; IPv4-mapped ones are folded afterwards, all at once); every other line (comments,
    spaces, ranges, netmasks, errors) goes through ``parse_span``.
    """
    found = SpanSet()
    v4_first, v4_last = found.v4_first.append, found.v4_last.append
    v6 = found.v6
    host4, host6, whole6, pton, from_bytes = _HOST4.get, _HOST6.get, _WHOLE6.get, inet_pton, int.from_bytes
    host_bits: list[str] = []
    number = 0
    pause = yielding()  # in a reload next to threads serving requests: let them run now and then
    for lines in _lines(path, _SMALL_BLOCK if pause else _BLOCK):
        if pause:
            time.sleep(_PAUSE)
        for line in lines:
            number += 1
            try:
                if "/" not in line:  # an address
                    if ":" in line:
                        packed = pton(AF_INET6, line)
                        v6 += packed
                        v6 += packed
                    else:
                        value = from_bytes(pton(AF_INET, line), "big")
                        v4_first(value)
                        v4_last(value)
                    continue
                address, _, length = line.partition("/")
                if ":" in address:
                    packed = pton(AF_INET6, address)
                    whole = whole6(length)
                    if whole is not None:  # /64: the last 8 bytes zero, the last address ends in 8 * ff
                        kept, zeros, ones = whole
                        if not packed.endswith(zeros):
                            raise ValueError
                        v6 += packed
                        v6 += packed[:kept]
                        v6 += ones
                        continue
                    host = host6(length)
                    value = from_bytes(packed, "big")
                    if host is None or value & host:
                        raise ValueError
                    v6 += packed
                    v6 += (value | host).to_bytes(16, "big")
                else:
                    value = from_bytes(pton(AF_INET, address), "big")
                    host = host4(length)
                    if host is None or value & host:
                        raise ValueError
                    v4_first(value)
                    v4_last(value | host)
            except (OSError, ValueError):  # not in the fast path's form: the careful way
                entry = _entry(line)
                if not entry:
                    continue
                try:
                    span, warning = parse_span(entry)
                except ValueError as exc:
                    raise ValueError(f"{path}, line {number}: {exc}") from None
                if warning:
                    host_bits.append(f"line {number}: {warning}")
                found.add(*span)
    _fold_mapped(found)
    warnings = []
    if host_bits:
        more = f" (and {len(host_bits) - 1} more)" if len(host_bits) > 1 else ""
        warnings.append(f"{path}: {host_bits[0]}{more}")
    return found, warnings


def _fold_mapped(found: SpanSet) -> None:
    """Make the IPv4-mapped spans the fast path took as IPv6 (``::ffff:a.b.c.d``, ``/96`` or longer)
    IPv4 spans, as ``parse_span`` makes them.

    A mapped network shorter than /96 has host bits set (``ffff``), so only ``parse_span`` ever
    takes one, and only its first and last both begin with ``::ffff:0:0/96``. Looked for once,
    over all the records, rather than on every line.
    """
    v6 = found.v6
    mapped = []
    at = v6.find(_MAPPED)
    while at >= 0:
        if at % 32 == 0:  # at the first of a record (not inside an address, or across two)
            mapped.append(at)
        at = v6.find(_MAPPED, at + 1)
    if not mapped:
        return
    kept = []
    start = 0
    for at in mapped:
        found.v4_first.append(int.from_bytes(v6[at + 12 : at + 16], "big"))
        found.v4_last.append(int.from_bytes(v6[at + 28 : at + 32], "big"))
        kept.append(v6[start:at])
        start = at + 32
    kept.append(v6[start:])
    found.v6 = bytearray(b"".join(kept))


class FileMatcher(Matcher):
    """``file:/etc/app/blocklist.txt``."""

    prefix = "file"

    def __init__(self, value: str, context: MatcherContext) -> None:
        super().__init__(value, context)
        path = os.path.expanduser(value.strip())
        if not os.path.isabs(path) and context.app is not None:
            path = os.path.join(context.app.root_path, path)
        self.path = path
        context.watch(path)  # before reading: a change made during the read is seen
        if not os.path.isfile(path):
            raise ValueError(f"list file {path!r} does not exist or is not a file")
        try:
            self.modified = os.stat(path).st_mtime  # before reading: a later change is a newer list
            found, warnings = parse_list(path)
        except OSError as exc:
            raise ValueError(f"cannot read list file {path!r}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"list file {path!r} is not UTF-8 text: {exc}") from None
        for warning in warnings:
            context.warn(warning)
        self.count = len(found)
        self._found: SpanSet | None = found

    def span_set(self) -> SpanSet:
        """The entries as compact columns (what the engine compiles).

        Handed over once: the engine keeps only its index, and a later call reads the file again.
        """
        found = self._found
        self._found = None
        if found is None:
            found = parse_list(self.path)[0]
        return found

    def spans(self) -> list[Span]:
        return list(self.span_set())

    def entry_count(self) -> int:
        return self.count

    def updated_at(self) -> float:
        return self.modified

    def explain(self, client: object) -> str:
        key = getattr(client, "key", None)
        if key is None:
            return "does not match"
        for number, entry in read_entries(self.path):
            family, first, last = parse_span(entry)[0]
            if family == key[0] and first <= key[1] <= last:
                return f"matches line {number}: {entry}"
        return "does not match"

    def describe(self) -> str:
        return f"{self.count} entries from {self.path}"


@hookimpl(trylast=True)
def flask_allow_matchers() -> list[type[Matcher]]:
    return [FileMatcher]

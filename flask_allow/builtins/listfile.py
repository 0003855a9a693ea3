"""Rule type ``file:PATH``: a list file of addresses, networks and ranges, one per line.

``#`` and ``;`` start comments (anywhere on a line), blank lines are ignored, so published
blocklists (FireHOL, Spamhaus DROP, Tor exit lists) load as they are. A relative path is taken
from the app's root path. The file is read when the rules are built and on ``reload()``, straight
into compact columns (a ``SpanSet``): a million-line list never becomes a million Python objects.

A list is applied only once it is complete and stable: a file written a moment ago is looked at
again after ``SETTLE`` seconds, a file that changes while it is read is read again, a last line
without its newline must stand still a while longer, and an empty file is refused (it is what a
file truncated for rewriting looks like). Reading happens at ``init_app`` and ``reload()`` (and
in a background watcher), never in a request, so these waits cost no request anything.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterator
from socket import AF_INET, AF_INET6, inet_pton
from typing import TextIO

from flask_allow import Matcher, MatcherContext, hookimpl
from flask_allow.addresses import Span, parse_span
from flask_allow.index import SpanSet, yielding
from flask_allow.live.stamp import stamp_of as _stamp

#: Seconds a list file must have stood unchanged before it is read: one modified more recently
#: (it may still be being written) is looked at again after this long. Also the extra time a
#: file whose last line has no newline must stand still before that line is believed complete.
SETTLE = 0.25
#: Seconds a read waits for a list file that keeps changing before it refuses the file.
PATIENCE = 5.0
#: The longest line a list file may hold, in characters (comments included).
MAX_LINE = 4096
#: From this many bytes on, a list's compiled index is shared through the index cache
#: (``ALLOW_INDEX_CACHE``): it is named by the digest of the bytes, and the file is parsed only
#: by the process that builds it.
SHARED_MIN = 1 << 20

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
_ATOMICALLY = "replace list files atomically: write a temporary file in the same directory, then rename it"


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


class _Lines:
    """The lines of an open list file, a block of ``size`` characters at a time, without their line ends.

    Linear in the length of a line: the pieces of a line longer than a block are joined once,
    and a line longer than ``MAX_LINE`` stops the read. Afterwards ``ended`` says whether the
    last line had its newline, and ``read`` how many characters the file held.
    """

    def __init__(self, handle: TextIO, path: str, size: int) -> None:
        self.handle, self.path, self.size = handle, path, size
        self.ended = True
        self.read = 0

    def __iter__(self) -> Iterator[list[str]]:
        read, size = self.handle.read, self.size
        pieces: list[str] = []  # the start of a line that is not ended yet
        waiting = 0  # its length
        number = 0  # lines handed out
        while True:
            block = read(size)
            if not block:
                break
            self.read += len(block)
            lines = block.split("\n")
            if len(lines) == 1:
                pieces.append(block)
                waiting += len(block)
                if waiting > MAX_LINE:
                    raise ValueError(_too_long(self.path, number + 1))
                continue
            if pieces:
                pieces.append(lines[0])
                lines[0] = "".join(pieces)
            tail = lines.pop()
            pieces, waiting = ([tail], len(tail)) if tail else ([], 0)
            if waiting > MAX_LINE:
                raise ValueError(_too_long(self.path, number + len(lines) + 1))
            number += len(lines)
            yield lines
        if pieces:
            self.ended = False
            yield ["".join(pieces)]


def _too_long(path: str, number: int) -> str:
    return f"{path}, line {number}: longer than {MAX_LINE} characters (a list holds one entry a line)"


def _settled(path: str, deadline: float) -> tuple[int, int, int, int]:
    """The stamp of ``path`` once it has stood unchanged for ``SETTLE`` seconds (at most until ``deadline``).

    A file last modified longer ago is taken at once; a recent one (or one dated in the future,
    as a skewed clock makes it) is watched across ``SETTLE`` and must not change meanwhile.
    """
    while True:
        stamp = _stamp(os.stat(path))
        if time.time_ns() - stamp[0] >= SETTLE * 1e9:  # its mtime
            return stamp
        time.sleep(SETTLE)
        if _stamp(os.stat(path)) == stamp:
            return stamp
        if time.monotonic() >= deadline:
            raise ValueError(f"list file {path!r} kept changing for {PATIENCE:g} s; {_ATOMICALLY}")


def parse_list(path: str) -> tuple[SpanSet, list[str]]:
    """Read a list file once it is complete and stable; return its ``SpanSet`` and warnings.

    Raises ``ValueError`` for a bad line (naming the file and line), an empty file, or a file
    that keeps changing for ``PATIENCE`` seconds; ``OSError`` when it cannot be read. The file
    is stat'ed before and after the read (device, inode, size, mtime): if it changed, or was
    replaced, it is read again, so a line is only ever judged in a version that stood still.
    """
    return parse_data(read_list(path), path)


def read_list(path: str) -> bytes:
    """The bytes of a list file once it is complete and stable (the checks ``parse_list`` makes).

    Raises ``ValueError`` for an empty file or one that keeps changing for ``PATIENCE`` seconds,
    ``OSError`` when it cannot be read.
    """
    deadline = time.monotonic() + PATIENCE
    while True:
        before = _settled(path, deadline)
        with open(path, "rb") as handle:
            opened = _stamp(os.fstat(handle.fileno()))
            data = handle.read()
            after = _stamp(os.fstat(handle.fileno()))
        stable = opened == before == after == _stamp(os.stat(path))
        if stable and data and not data.endswith(b"\n"):  # the last line may be cut short: it must stand still
            time.sleep(SETTLE)
            stable = _stamp(os.stat(path)) == before
        if stable:
            if not data:
                raise ValueError(f"list file {path!r} is empty: a list meant to be empty holds a comment line")
            return data
        if time.monotonic() >= deadline:
            raise ValueError(f"list file {path!r} kept changing for {PATIENCE:g} s; {_ATOMICALLY}")


def parse_data(data: bytes, path: str) -> tuple[SpanSet, list[str]]:
    """Parse the bytes ``read_list`` returned; as ``parse_list``, ``ValueError`` names a bad line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(_undecodable(path, exc, data)) from None
    return _parse(_Lines(io.StringIO(text), path, _SMALL_BLOCK if yielding() else _BLOCK), path)


def _undecodable(path: str, exc: UnicodeDecodeError, data: bytes | None = None) -> str:
    """Name the first line of ``path`` (or of its bytes ``data``) that is not UTF-8 (an error's cold path)."""
    with open(path, "rb") if data is None else io.BytesIO(data) as raw:
        for number, line in enumerate(raw, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                return f"{path}, line {number}: not UTF-8 text ({error.reason} at byte {error.start + 1} of the line)"
    return f"list file {path!r} is not UTF-8 text: {exc}"


def _parse(blocks: _Lines, path: str) -> tuple[SpanSet, list[str]]:
    """Parse the lines of a list file into a ``SpanSet``; return it and warnings. Raises ``ValueError`` on a bad line.

    A bare IPv4/IPv6 address or ``address/length`` without host bits (nearly every line of a
    published list) takes a fast path: one ``inet_pton`` (ASCII only), no ``Span`` (IPv6 stays
    the packed bytes; IPv4-mapped ones are folded afterwards, all at once); every other line
    (comments, spaces, ranges, netmasks, errors) goes through ``parse_span``.
    """
    found = SpanSet()
    v4_first, v4_last = found.v4_first.append, found.v4_last.append
    v6 = found.v6
    host4, host6, whole6, pton, from_bytes = _HOST4.get, _HOST6.get, _WHOLE6.get, inet_pton, int.from_bytes
    host_bits: list[str] = []
    number = 0
    pause = yielding()  # in a reload next to threads serving requests: let them run now and then
    for lines in blocks:
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
                if len(line) > MAX_LINE:
                    raise ValueError(_too_long(path, number)) from None
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
    #: Set for a large list: it is then shared through the index cache (subclasses may leave it).
    _key: str | None = None
    _data: bytes | None = None

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
            data = read_list(path)
        except OSError as exc:
            raise ValueError(f"cannot read list file {path!r}: {exc.strerror or exc}") from None
        self.count = 0
        self._found: SpanSet | None = None
        #: The bytes of a large list, parsed only if its index is not in the index cache.
        self._data = None
        self._warnings: list[str] = []
        if len(data) >= SHARED_MIN:
            self._data = data
            self._key = f"file {path} {hashlib.sha256(data).hexdigest()}"
        else:
            self._take(data)

    def _take(self, data: bytes) -> SpanSet:
        found, self._warnings = parse_data(data, self.path)
        for warning in self._warnings:
            self.context.warn(warning)
        self.count = len(found)
        self.context.loaded(self.path, self.count)  # an automatic update that empties the list is held back here
        self._found = found
        return found

    def index_key(self) -> str | None:
        """What names this list's index in the index cache (its path and the digest of its bytes),
        or None for a list too small to share."""
        return self._key

    def index_facts(self) -> dict[str, object]:
        """What the index cache keeps of this list beside its index (after ``span_set``)."""
        return {"count": self.count, "warnings": self._warnings}

    def take_index_facts(self, facts: dict[str, object]) -> None:
        """The list's index came from the index cache: take its facts, forget its bytes unparsed."""
        self._data = None
        self.count = int(facts["count"])  # type: ignore[call-overload]
        for warning in facts["warnings"]:  # type: ignore[attr-defined]
            self.context.warn(warning)
        self.context.loaded(self.path, self.count)

    def span_set(self) -> SpanSet:
        """The entries as compact columns (what the engine compiles).

        Handed over once: the engine keeps only its index, and a later call reads the file again.
        """
        found = self._found
        self._found = None
        if found is None and self._data is not None:
            data, self._data = self._data, None
            found = self._take(data)
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

"""Rule type ``file:PATH``: a list file of addresses, networks and ranges, one per line.

``#`` and ``;`` start comments (anywhere on a line), blank lines are ignored, so published
blocklists (FireHOL, Spamhaus DROP, Tor exit lists) load as they are. A relative path is taken
from the app's root path. The file is read when the rules are built and on ``reload()``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from flask_allow import Matcher, MatcherContext, hookimpl
from flask_allow.addresses import Span, parse_span


def read_entries(path: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, entry)`` for every entry of a list file."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            cut = line.find("#")
            if cut >= 0:
                line = line[:cut]
            cut = line.find(";")
            if cut >= 0:
                line = line[:cut]
            entry = line.strip()
            if entry:
                yield number, entry


def parse_list(path: str) -> tuple[list[Span], list[str]]:
    """Parse a list file into spans; return them and warnings. Raises ``ValueError`` on a bad line."""
    spans: list[Span] = []
    append = spans.append
    host_bits: list[str] = []
    for number, entry in read_entries(path):
        try:
            span, warning = parse_span(entry)
        except ValueError as exc:
            raise ValueError(f"{path}, line {number}: {exc}") from None
        if warning:
            host_bits.append(f"line {number}: {warning}")
        append(span)
    warnings = []
    if host_bits:
        more = f" (and {len(host_bits) - 1} more)" if len(host_bits) > 1 else ""
        warnings.append(f"{path}: {host_bits[0]}{more}")
    return spans, warnings


class FileMatcher(Matcher):
    """``file:/etc/app/blocklist.txt``."""

    prefix = "file"

    def __init__(self, value: str, context: MatcherContext) -> None:
        super().__init__(value, context)
        path = os.path.expanduser(value.strip())
        if not os.path.isabs(path) and context.app is not None:
            path = os.path.join(context.app.root_path, path)
        self.path = path
        if not os.path.isfile(path):
            raise ValueError(f"list file {path!r} does not exist or is not a file")
        try:
            spans, warnings = parse_list(path)
        except OSError as exc:
            raise ValueError(f"cannot read list file {path!r}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"list file {path!r} is not UTF-8 text: {exc}") from None
        for warning in warnings:
            context.warn(warning)
        self.count = len(spans)
        self._spans: list[Span] | None = spans

    def spans(self) -> list[Span]:
        # Handed over once to the engine, which keeps only its compact index; a later call
        # (the CLI's trace) reads the file again.
        spans = self._spans
        self._spans = None
        if spans is None:
            spans = parse_list(self.path)[0]
        return spans

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

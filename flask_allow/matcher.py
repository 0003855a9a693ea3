"""The base class of every rule type, built-in or from a plugin."""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from .addresses import Span, format_span, spans_of_networks

if TYPE_CHECKING:
    import ipaddress

    from flask import Flask

    from .client import Client

    Network = ipaddress.IPv4Network | ipaddress.IPv6Network | str | Span


class MatcherContext:
    """What a matcher is built with: the app, its config, and where the rule stands.

    ``app`` and ``config`` are the Flask app whose rules are being built and
    its config; ``location`` names the rule (``ADDRESS_RESTRICTION[1].ALLOW``) for messages;
    ``logger`` is the app's logger.
    ``shared`` is a dict kept per app across reloads, where plugins keep what their matchers
    share (a resolver, a cache). ``changed()`` tells the engine that what a matcher matches has
    changed (a DNS answer), so cached decisions are dropped. ``watch(path)`` makes a file the
    rule is built from live: when it changes, the rules are rebuilt and swapped in.
    ``automatic`` is True while the rules are rebuilt because a watched source changed (not by
    ``init_app`` or ``reload()``), when a matcher may be stricter about what it accepts.
    ``report_error(kind, message)`` counts an error the matcher handled (``flask_allow_error``).
    """

    def __init__(
        self,
        app: Flask | None,
        config: Any,
        location: str,
        shared: dict[str, Any],
        logger: logging.Logger,
        changed: Callable[[], None],
        watch: Callable[[str], None] | None = None,
        automatic: bool = False,
        loaded: Callable[[str, int, bool, str | None], None] | None = None,
        report: Callable[[str, str, str | None], None] | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.location = location
        self.shared = shared
        self.logger = logger
        self._changed = changed
        self._watch = watch
        self.automatic = automatic
        self._loaded = loaded
        self._report = report

    def warn(self, message: str) -> None:
        """Log a start-up warning about this rule on the app logger."""
        self.logger.warning("flask_allow: %s: %s", self.location, message)

    def changed(self) -> None:
        """Drop cached decisions: the answers of a dynamic matcher have changed."""
        self._changed()

    def report_error(self, kind: str, message: str, location: str | None = None) -> None:
        """Tell the ``flask_allow_error`` plugins of an error handled without failing a request.

        Log it first (this only counts it). ``kind`` is a short fixed word; pass
        ``context.location`` as ``location`` when the error is this rule's.
        """
        if self._report is not None:
            self._report(kind, message, location)

    def watch(self, path: str) -> None:
        """Rebuild the rules when the file at ``path`` changes; call it before reading the file.

        Looked at every ``ALLOW_WATCH_INTERVAL`` seconds by a background thread of each process;
        a change is read once it has settled, off the request path, and swapped in whole. A new
        version that fails to build keeps the running rules. Without watching (``0``, or a
        context made outside an app) this does nothing.
        """
        if self._watch is not None:
            self._watch(path)

    def loaded(self, path: str, entries: int, guard: bool = True, url: str | None = None) -> None:
        """Say that the list read from ``path`` holds ``entries`` entries (``flask allow rules``
        shows it; the counts are logged at each swap).

        With ``guard``, raises ``ValueError`` when an automatic update would shrink the list
        below ``ALLOW_LIST_SHRINK_LIMIT`` of its last good entries, or to none: the rebuild is
        then refused and the last good rules stay in force. ``url`` names a feed the file is the
        cached copy of (the feed checked its own shrink before writing it: pass ``guard=False``).
        """
        if self._loaded is not None:
            self._loaded(path, entries, guard, url)


class Matcher:
    """A rule type. Subclass it and return the subclass from ``flask_allow_matchers``.

    A rule value is given to the matcher whose ``prefix`` it starts with (``file:...``), or
    failing that to the one whose ``claims()`` accepts it. ``__init__`` raises ``ValueError`` for
    a bad value (it becomes a ``ConfigError`` naming the rule's location). A matcher whose
    addresses are known when it is built returns them from ``networks()``: the engine then
    compiles runs of such rules into one index and never calls ``matches()`` on the request
    path. Otherwise ``matches()`` is called for each request that reaches the rule.
    """

    #: The ``NAME`` in ``NAME:VALUE`` rule values, or None.
    prefix: ClassVar[str | None] = None
    #: Claims are tried before ``NAME:`` prefixes (built-in addresses and keywords only).
    claims_before_prefixes: ClassVar[bool] = False
    #: Claims are tried only when no other rule type claims the value (bare host names, which
    #: would otherwise take almost any word a plugin claims).
    claims_last: ClassVar[bool] = False
    #: Whether the rule takes a value after ``NAME:``; when False, ``NAME:`` must stand alone and
    #: any text after the colon is a configuration error (no rule type accepts text it ignores).
    takes_value: ClassVar[bool] = True
    #: The bare words this rule type claims (``localhost``), offered when a value is misspelt.
    words: ClassVar[frozenset[str]] = frozenset()
    #: Whether decisions that consulted this matcher may be cached; a matcher whose answers
    #: change calls ``context.changed()`` when they do, or sets this to False.
    cacheable: ClassVar[bool] = True
    _lookup: tuple[list[int], list[int]] | None = None

    @classmethod
    def claims(cls, value: str) -> bool:
        """Say whether this matcher takes ``value``, a rule value without a known prefix."""
        return False

    @classmethod
    def type_name(cls) -> str:
        """The rule type's name, as ``flask allow rules`` shows it."""
        return cls.prefix or cls.__name__

    def __init__(self, value: str, context: MatcherContext) -> None:
        self.value = value
        self.context = context

    def networks(self) -> Iterable[Network] | None:
        """Return the addresses this rule matches when they are static, or None when dynamic."""
        return None

    def spans(self) -> list[Span] | None:
        """Return ``networks()`` as folded integer spans (built-ins override this for speed)."""
        networks = self.networks()
        return None if networks is None else list(spans_of_networks(networks))

    def matches(self, client: Client) -> bool:
        """Say whether the rule matches ``client``; static matchers need not override this."""
        key = client.key
        if key is None:
            return False
        if self._lookup is None:
            self._lookup = self._build_lookup()
        starts, ends = self._lookup
        value = (key[0] << 128) | key[1]
        i = bisect_right(starts, value) - 1
        return i >= 0 and value <= ends[i]

    def _build_lookup(self) -> tuple[list[int], list[int]]:
        spans = self.spans()
        if spans is None:
            raise NotImplementedError(f"{type(self).__name__} must implement matches()")
        starts: list[int] = []
        ends: list[int] = []
        for family, first, last in sorted(spans):
            lo, hi = (family << 128) | first, (family << 128) | last
            if ends and lo <= ends[-1] + 1:
                ends[-1] = max(ends[-1], hi)
            else:
                starts.append(lo)
                ends.append(hi)
        return starts, ends

    def entry_count(self) -> int | None:
        """Return how many entries this rule's list holds (a file, a feed), or None: not a list."""
        return None

    def updated_at(self) -> float | None:
        """Return when this rule's list last changed (Unix time: a file's mtime), or None: not a list."""
        return None

    def text_lookup(self) -> Callable[[str], bool] | None:
        """For a dynamic matcher that answers from the address text alone, at once and without
        I/O (the bans), that search: ``hit(address) -> bool``, raising ``ValueError`` for text
        that is not an IP address; or None. The engine then asks it ahead of its decision cache,
        on every request, so a list whose other rules are static keeps its one-search fast path.
        """
        return None

    def detail(self, client: Client) -> str | None:
        """Return what the match rested on (a DNS answer), for reasons and logs, or None."""
        return None

    def explain(self, client: Client) -> str:
        """Say in one line why the rule does or does not match ``client`` (for the CLI trace)."""
        if self.matches(client):
            return f"matches ({self.detail(client) or self.describe()})"
        return "does not match"

    def describe(self) -> str:
        """Describe the rule's value in one line."""
        spans = self.spans()
        if spans is not None and len(spans) == 1:
            return format_span(spans[0])
        if spans is not None:
            return f"{len(spans)} networks"
        return self.value

    def close(self) -> None:
        """Release what the matcher holds (threads, sockets); called when its rules are replaced."""

"""Which rule type takes a rule value: the matcher classes the plugins provide, resolved in order."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from .addresses import is_hex_group
from .errors import ConfigError
from .matcher import Matcher

_PREFIX = re.compile(r"([A-Za-z][A-Za-z0-9_.+-]*):(.*)", re.DOTALL)


class MatcherRegistry:
    """The rule types of one app, from ``(matcher class, plugin name)`` pairs.

    A value goes to, in order: a matcher that claims it before prefixes (addresses, ``all``,
    ``localhost``); the matcher whose ``prefix`` it starts with; a matcher that claims it; a
    matcher that claims it last (bare host names).
    """

    def __init__(self, provided: Iterable[tuple[type[Matcher], str]]) -> None:
        self.by_prefix: dict[str, tuple[type[Matcher], str]] = {}
        self.early: list[tuple[type[Matcher], str]] = []
        self.late: list[tuple[type[Matcher], str]] = []
        self.last: list[tuple[type[Matcher], str]] = []
        seen: set[type[Matcher]] = set()
        for cls, plugin in provided:
            if not (isinstance(cls, type) and issubclass(cls, Matcher)):
                raise ConfigError(
                    f"plugin {plugin!r} returned {cls!r} from flask_allow_matchers, which is not a Matcher subclass"
                )
            if cls in seen:
                continue
            seen.add(cls)
            prefix = cls.prefix
            if prefix is not None:
                if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.+-]*", prefix) or is_hex_group(prefix):
                    raise ConfigError(
                        f"plugin {plugin!r}: matcher prefix {prefix!r} is not usable "
                        "(a letter then letters, digits, '_.+-'; not an IPv6 hex group)"
                    )
                key = prefix.lower()
                if key in self.by_prefix:
                    other = self.by_prefix[key][1]
                    raise ConfigError(f"rule prefix '{prefix}:' is claimed by two plugins: {other!r} and {plugin!r}")
                self.by_prefix[key] = (cls, plugin)
            if cls.claims_before_prefixes:
                self.early.append((cls, plugin))
            elif cls.claims_last:
                self.last.append((cls, plugin))
            else:
                self.late.append((cls, plugin))

    def prefixes(self) -> list[str]:
        """The registered ``NAME:`` prefixes, sorted."""
        return sorted(self.by_prefix)

    def words(self) -> list[str]:
        """The bare words the rule types claim (``all``, ``localhost``...), sorted."""
        found = {word.lower() for cls, _ in self.early + self.late + self.last for word in cls.words}
        return sorted(found)

    def resolve(self, value: str) -> tuple[type[Matcher], str]:
        """Return the matcher class for ``value`` and the value to build it with.

        Raises ``ValueError`` when no rule type takes the value or two claim it.
        """
        found = self._claimed(self.early, value)
        if found is not None:
            return found, value
        match = _PREFIX.fullmatch(value)
        if match and match.group(1).lower() in self.by_prefix:
            cls = self.by_prefix[match.group(1).lower()][0]
            if not cls.takes_value and match.group(2).strip():
                prefix = match.group(1)
                raise ValueError(f"{value!r}: '{prefix}:' takes no value; write '{prefix}:' alone")
            return cls, match.group(2)
        for tier in (self.late, self.last):
            found = self._claimed(tier, value)
            if found is not None:
                return found, value
        known = ", ".join(f"{p}:" for p in self.prefixes()) or "none"
        if match:
            hint = self._suggest(match.group(1), prefixes_only=True)
            raise ValueError(f"unknown rule type {match.group(1)!r} in {value!r}{hint} (known prefixes: {known})")
        hint = self._suggest(value)
        single = ""
        if re.fullmatch(r"[A-Za-z0-9_-]+", value) and any(c.isalpha() for c in value):
            single = f"; a bare host name needs a dot: write 'host:{value}' for a single-label name"
        raise ValueError(f"{value!r}: not a rule value{hint} (known prefixes: {known}{single})")

    def _suggest(self, text: str, prefixes_only: bool = False) -> str:
        """``; did you mean 'localhost'?`` for a word close to a keyword or a prefix, else ``""``."""
        candidates = {f"{p}:": p for p in self.prefixes()}
        if not prefixes_only:
            candidates.update({word: word for word in self.words()})
        close = difflib.get_close_matches(text.lower(), list(candidates.values()), n=1, cutoff=0.7)
        if not close:
            return ""
        shown = next(k for k, v in candidates.items() if v == close[0])
        return f"; did you mean {shown!r}?"

    @staticmethod
    def _claimed(candidates: list[tuple[type[Matcher], str]], value: str) -> type[Matcher] | None:
        claimers = [(cls, plugin) for cls, plugin in candidates if cls.claims(value)]
        if len(claimers) > 1:
            names = " and ".join(f"{cls.__name__} ({plugin})" for cls, plugin in claimers)
            raise ValueError(f"{value!r} is claimed by more than one rule type: {names}")
        return claimers[0][0] if claimers else None

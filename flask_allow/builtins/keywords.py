"""Rule types: ``all`` (also ``any`` and ``*``) and ``localhost``, without DNS."""

from __future__ import annotations

from flask_allow import Matcher, hookimpl
from flask_allow.addresses import V4_MAX, V6_MAX, Span, parse_span


class AllMatcher(Matcher):
    """Every client, IPv4 and IPv6."""

    claims_before_prefixes = True
    WORDS = words = frozenset({"all", "any", "*"})

    @classmethod
    def claims(cls, value: str) -> bool:
        return value.lower() in cls.WORDS

    @classmethod
    def type_name(cls) -> str:
        return "all"

    def spans(self) -> list[Span]:
        return [Span(4, 0, V4_MAX), Span(6, 0, V6_MAX)]

    def describe(self) -> str:
        return "every IPv4 and IPv6 address"


class LocalhostMatcher(Matcher):
    """The loopback networks 127.0.0.0/8 and ::1, never looked up in DNS."""

    claims_before_prefixes = True
    words = frozenset({"localhost"})

    @classmethod
    def claims(cls, value: str) -> bool:
        return value.lower() == "localhost"

    @classmethod
    def type_name(cls) -> str:
        return "localhost"

    def spans(self) -> list[Span]:
        return [parse_span("127.0.0.0/8")[0], parse_span("::1")[0]]

    def describe(self) -> str:
        return "127.0.0.0/8 and ::1"


@hookimpl(trylast=True)
def flask_allow_matchers() -> list[type[Matcher]]:
    return [AllMatcher, LocalhostMatcher]

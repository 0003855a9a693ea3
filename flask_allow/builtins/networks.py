"""Rule type: an IPv4/IPv6 address, a CIDR network, or an inclusive range ``a-b``."""

from __future__ import annotations

from flask_allow import Matcher, MatcherContext, hookimpl
from flask_allow.addresses import Span, format_span, looks_like_address, parse_span


class NetworkMatcher(Matcher):
    """``10.0.0.1``, ``10.0.0.0/8``, ``2001:db8::/32``, ``10.0.0.5-10.0.0.20``.

    Claims all numeric-looking text, so that ``10.0.0.300`` or ``127.1`` is a configuration
    error and never taken for a host name.
    """

    claims_before_prefixes = True

    @classmethod
    def claims(cls, value: str) -> bool:
        return looks_like_address(value)

    @classmethod
    def type_name(cls) -> str:
        return "network"

    def __init__(self, value: str, context: MatcherContext) -> None:
        super().__init__(value, context)
        self.span, warning = parse_span(value)
        if warning:
            context.warn(warning)

    def spans(self) -> list[Span]:
        return [self.span]

    def describe(self) -> str:
        return format_span(self.span)


@hookimpl(trylast=True)
def flask_allow_matchers() -> list[type[Matcher]]:
    return [NetworkMatcher]

"""Rule types ``*.example.com`` and ``ptr:NAME``: forward-confirmed reverse DNS of the client.

The client's PTR names are looked up (in-addr.arpa or ip6.arpa, the hosts file first); a name the
rule wants counts only when a forward lookup of it (A for an IPv4 client, AAAA for IPv6) gives
the client's address back. A PTR record alone never matches: anyone controls the PTR records of
their own addresses. Names are compared label by label, case-insensitively, so
``evil-example.com`` is not under ``example.com``. Answers are cached per client address (LRU,
``ALLOW_DNS_CACHE_SIZE``), and concurrent requests from one new address share one lookup.
"""

from __future__ import annotations

import re

import dns.name

from flask_allow import Client, Matcher, MatcherContext, MatchError, hookimpl
from flask_allow.dns import Verdict, parse_host_name, service_for
from flask_allow.dns.resolver import display

#: What the domain rule claims: text starting with '*' or '.', of host-name characters and '*'.
_WILDCARDISH = re.compile(r"[*.][A-Za-z0-9_.*-]*")


class ReverseMatcher(Matcher):
    """The part the two reverse rule types share; subclasses say which PTR names they want."""

    #: Answers are per client and change with time: decisions are never cached.
    cacheable = False

    def __init__(self, value: str, context: MatcherContext) -> None:
        super().__init__(value, context)
        self.service = service_for(context)
        self.settings = self.service.settings

    def accepts(self, name: dns.name.Name) -> bool:
        """Whether a PTR name is one this rule is about."""
        raise NotImplementedError

    def wanted(self) -> str:
        """What the rule wants, for explanations: ``under example.com``."""
        raise NotImplementedError

    def matches(self, client: Client) -> bool:
        key = client.key
        if key is None:
            return False
        verdict = self.service.verify(key, self.accepts)
        if verdict.matched:
            return True
        if verdict.error is not None and self.settings.deny_on_error:
            raise MatchError(f"reverse DNS of {client.ip}: {verdict.error} (ALLOW_DNS_ON_ERROR is 'deny')")
        return False

    def detail(self, client: Client) -> str | None:
        key = client.key
        if key is None:
            return None
        verdict = self.service.verify(key, self.accepts, lookup=False)
        if not verdict.matched or verdict.forward is None:
            return None
        return f"PTR {display(verdict.name)}, {verdict.forward.record(key)}"  # type: ignore[arg-type]

    def explain(self, client: Client) -> str:
        key = client.key
        if key is None:
            return "does not match: the client address is not an IP address"
        verdict = self.service.verify(key, self.accepts)
        if verdict.matched:
            return f"matches: {self.detail(client) or display(verdict.name)} (confirmed)"  # type: ignore[arg-type]
        why = self._why_not(client, verdict)
        if verdict.error is not None and self.settings.deny_on_error:
            raise MatchError(f"{why} (ALLOW_DNS_ON_ERROR is 'deny': denied)")
        return f"does not match: {why}"

    def _why_not(self, client: Client, verdict: Verdict) -> str:
        pointers = verdict.pointers
        if pointers is None:
            return verdict.error or "no reverse answer"
        if not pointers.names:
            return f"{client.ip} has {pointers.describe()}"
        if not verdict.tried:
            return f"{client.ip} has {pointers.describe()}, no name {self.wanted()}"
        parts = []
        for name, forward in verdict.tried:
            seen = forward.describe() if forward is not None else "no answer in time"
            parts.append(f"{display(name)} has {seen}, not {client.ip}")
        return f"{client.ip} has {pointers.describe()}; not confirmed: {'; '.join(parts)}"


class DomainMatcher(ReverseMatcher):
    """``*.example.com``: a client whose confirmed PTR name is example.com or any name under it."""

    @classmethod
    def claims(cls, value: str) -> bool:
        # '*' alone is the 'all' keyword; '.example.com' is claimed to say how to write it.
        return len(value) > 1 and _WILDCARDISH.fullmatch(value) is not None

    @classmethod
    def type_name(cls) -> str:
        return "ptr-domain"

    def __init__(self, value: str, context: MatcherContext) -> None:
        text = value.strip()
        if not text.startswith("*."):
            raise ValueError(
                f"{value!r}: write a domain as '*.{text.lstrip('*.')}' (forward-confirmed reverse DNS "
                "of the domain and every name under it)"
            )
        self.domain = parse_host_name(text[2:], "domain", allow_relative=False)
        super().__init__(value, context)
        if len(self.domain) <= 2:  # one label and the root
            context.warn(
                f"{value!r} lets in any client whose PTR and A/AAAA records lie under the top-level domain "
                f"'{display(self.domain)}'; anyone can register such a domain"
            )

    def accepts(self, name: dns.name.Name) -> bool:
        return name.is_subdomain(self.domain)

    def wanted(self) -> str:
        return f"under {display(self.domain)}"

    def describe(self) -> str:
        return f"confirmed PTR name under {display(self.domain)}"


class PtrMatcher(ReverseMatcher):
    """``ptr:crawl.example.com``: a client whose confirmed PTR name is exactly this name."""

    prefix = "ptr"

    def __init__(self, value: str, context: MatcherContext) -> None:
        if value.strip().startswith("*"):
            raise ValueError(f"{value!r}: ptr: takes one exact name; write '{value.strip()}' without 'ptr:'")
        self.target = parse_host_name(value, allow_relative=False)
        super().__init__(value, context)

    def accepts(self, name: dns.name.Name) -> bool:
        return name == self.target

    def wanted(self) -> str:
        return f"equal to {display(self.target)}"

    def describe(self) -> str:
        return f"confirmed PTR name {display(self.target)}"


@hookimpl(trylast=True)
def flask_allow_matchers() -> list[type[Matcher]]:
    return [DomainMatcher, PtrMatcher]

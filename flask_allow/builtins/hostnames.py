"""Rule type: a host name (``proxy.example.com``, ``db-1.``) or ``host:NAME``, matched by its A and AAAA records.

The name is looked up when the rule is built (the hosts file first, then DNS) and refreshed in
the background before its TTL runs out, so requests never wait for it after start-up. A name
that does not resolve matches nothing (it is logged and retried); with
``ALLOW_DNS_ON_ERROR = "deny"`` a name whose lookup fails denies the requests that reach it.
"""

from __future__ import annotations

import time

from flask_allow import Client, Matcher, MatcherContext, MatchError, hookimpl
from flask_allow.addresses import looks_like_address
from flask_allow.dns import ERROR, Answer, parse_host_name, service_for
from flask_allow.dns.names import HOSTNAME_CHARS
from flask_allow.dns.refresher import wait_ready
from flask_allow.dns.resolver import RDTYPE, display

#: How long past its expiry an answer is still used while its refresh is under way.
GRACE = 2.0
#: Seconds the first requests wait past ``ALLOW_DNS_TIMEOUT`` for a first lookup's result to be handed over.
HANDOFF = 0.05


#: Built-in keywords: never looked up in DNS, even when the keywords plugin is disabled.
KEYWORDS = frozenset({"all", "any", "localhost"})


class HostMatcher(Matcher):
    """A host name: the rule matches a client whose address is one of the name's A or AAAA records."""

    prefix = "host"
    #: A bare word is a host name only when no other rule type (a plugin's keyword) claims it.
    claims_last = True
    #: Decisions may be cached: ``context.changed()`` is called whenever an answer changes.
    cacheable = True

    @classmethod
    def claims(cls, value: str) -> bool:
        # Host-name text that no address, keyword or NAME:VALUE form takes (those never reach here
        # with a colon, and numeric-looking text is always the address matcher's). A bare name
        # needs a dot: a lone word ('locahost', 'admin', a plugin prefix without its colon) is a
        # mistake far more often than a single-label host name, which is written 'host:db-1'.
        return (
            "." in value
            and HOSTNAME_CHARS.fullmatch(value) is not None
            and not looks_like_address(value)
            and not value.startswith(".")
            and any(c.isalpha() for c in value)
            and value.lower() not in KEYWORDS
        )

    def __init__(self, value: str, context: MatcherContext) -> None:
        super().__init__(value, context)
        qname = parse_host_name(value)
        self.name = display(qname)
        if self.name == "localhost":
            raise ValueError(f"{value!r}: write 'localhost', the built-in keyword (loopback, never looked up)")
        self.location = context.location
        self.service = service_for(context)
        self.settings = self.service.settings
        self.entry = self.service.refresher.register(qname, self)
        self._closed = False

    # -- what the refresher calls -------------------------------------------------

    def answer_changed(self) -> None:
        """The name's answer changed: drop the decisions cached with the old one."""
        self.context.changed()

    # -- matching -------------------------------------------------------------------

    def answer(self, family: int) -> Answer:
        """The current A (4) or AAAA (6) answer; waits for the first lookup at most ``ALLOW_DNS_TIMEOUT``."""
        refresher = self.service.refresher
        refresher.ensure_running()
        state = self.entry.state
        if state is None:
            state = wait_ready(self.entry, self.settings.timeout + HANDOFF, refresher.ensure_running)
        now = time.monotonic()
        if state is None:
            self.entry.improvised = True
            error = "lookup failed: no answer yet (the first lookup has not finished)"
            return Answer(RDTYPE[family], self.name, ERROR, 0.0, now, error=error)
        answer = state.answers[family]
        if answer.status != ERROR and now > answer.expires + self.settings.timeout + GRACE:
            self.entry.improvised = True
            error = "lookup failed: the answer ran out and was not refreshed"
            return Answer(answer.rdtype, self.name, ERROR, 0.0, now, error=error)
        return answer

    def matches(self, client: Client) -> bool:
        key = client.key
        if key is None:
            return False
        answer = self.answer(key[0])
        if key in answer.addresses:
            return True
        if answer.status == ERROR and self.settings.deny_on_error:
            raise MatchError(f"host name {self.name!r}: {answer.describe()} (ALLOW_DNS_ON_ERROR is 'deny')")
        return False

    def detail(self, client: Client) -> str | None:
        key = client.key
        if key is None:
            return None
        answer = self.answer(key[0])
        return answer.record(key) if key in answer.addresses else None

    def explain(self, client: Client) -> str:
        key = client.key
        if key is None:
            return "does not match: the client address is not an IP address"
        answer = self.answer(key[0])
        state = self.entry.state
        everything = state.describe() if state is not None else answer.describe()
        if key in answer.addresses:
            return f"matches: {self.name} has {answer.record(key)} (all: {everything})"
        if answer.status == ERROR and self.settings.deny_on_error:
            raise MatchError(f"{self.name}: {answer.describe()} (ALLOW_DNS_ON_ERROR is 'deny': denied)")
        return f"does not match: {self.name} has {everything}"

    def describe(self) -> str:
        state = self.entry.state
        return f"host name {self.name} ({state.describe() if state is not None else 'not resolved yet'})"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.service.refresher.release(self.entry, self)


@hookimpl(trylast=True)
def flask_allow_matchers() -> list[type[Matcher]]:
    return [HostMatcher]

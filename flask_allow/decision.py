"""Rules as compiled, and the decisions made with them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .matcher import Matcher

if TYPE_CHECKING:
    from .client import Client

ALLOW = "ALLOW"
DENY = "DENY"


class Rule:
    """One compiled rule: ``action`` (ALLOW or DENY), ``spec`` as written, ``location`` in config."""

    __slots__ = (
        "action",
        "allowed",
        "detailed",
        "index",
        "location",
        "matcher",
        "reasons",
        "seconds",
        "spec",
        "static",
    )

    def __init__(self, action: str, spec: str, location: str, matcher: Matcher, index: int) -> None:
        self.action = action
        self.spec = spec
        self.location = location
        self.matcher = matcher
        #: Position in evaluation order.
        self.index = index
        self.allowed = action == ALLOW
        #: Whether the rule's addresses are known at start-up (compiled into an index).
        self.static = False
        #: Seconds spent building the rule and collecting its networks (a list file's reading).
        self.seconds = 0.0
        #: Whether the matcher says what a match rested on (its class overrides ``Matcher.detail``),
        #: decided once here so that a decision of any other rule never asks.
        self.detailed = getattr(type(matcher), "detail", Matcher.detail) is not Matcher.detail
        #: ``(location, denied text, allowed text)`` of ``Decision.reason``, made when first asked.
        self.reasons: tuple[str, str, str] | None = None

    @property
    def type(self) -> str:
        """The rule type's name (its prefix, or its matcher class's name)."""
        return type(self.matcher).type_name()

    def describe(self) -> str:
        """The rule as reasons and logs name it: location and value."""
        return f"{self.location} {self.spec!r}"

    def __repr__(self) -> str:
        return f"Rule({self.action} {self.spec!r} at {self.location})"


class Decision:
    """What was decided for one client.

    ``allowed`` and ``action`` are what the rules (or the default) decided; ``rule`` is the rule
    that matched, or None when the default decided or the client was denied for an error.
    ``enforced`` is False in report-only mode or for an exempt view: the request went through
    whatever was decided.
    """

    __slots__ = ("action", "allowed", "client", "enforced", "error", "exempt", "rule", "scope")

    def __init__(
        self,
        client: Client,
        rule: Rule | None,
        allowed: bool,
        error: str | None = None,
        scope: str | None = None,
    ) -> None:
        self.client = client
        self.rule = rule
        self.allowed = allowed
        self.action = ALLOW if allowed else DENY
        #: Why the client was denied without a rule deciding (bad address, a matcher failed).
        self.error = error
        self.enforced = True
        self.exempt = False
        #: Which rule list decided: None for the global one, else the route's name.
        self.scope = scope

    @property
    def detail(self) -> str | None:
        """What the rule's match rested on (a DNS answer, a country), or None.

        Asked only of a matcher that overrides ``Matcher.detail``; a static one answers from what
        it was built with, so a decision's reason never changes once made.
        """
        rule = self.rule
        if rule is None or not rule.detailed:
            return None
        try:
            return rule.matcher.detail(self.client)
        except Exception:  # a detail is for the log; it must never fail the request
            return None

    @property
    def reason(self) -> str:
        """One readable line, e.g. ``denied by ADDRESS_RESTRICTION[1].DENY '0.0.0.0/0'``."""
        rule = self.rule
        if rule is not None and self.error is None and not self.exempt:  # the usual: a rule decided
            texts = rule.reasons
            if texts is None or texts[0] is not rule.location:  # the same text for every request
                where = f"{rule.location} {rule.spec!r}"
                texts = rule.reasons = (rule.location, f"denied by {where}", f"allowed by {where}")
            text = texts[2] if self.allowed else texts[1]
            if not rule.detailed:
                return text
            detail = self.detail
            return f"{text} ({detail})" if detail else text
        verdict = "allowed" if self.allowed else "denied"
        if self.exempt:
            return f"{verdict}: exempt from the rules"
        if self.error is not None:
            return f"{verdict}: {self.error}"
        scope = f" of {self.scope}" if self.scope else ""
        return f"{verdict} by default{scope} (no rule matched)"

    def __repr__(self) -> str:
        return f"<Decision {self.client.address!r} {self.reason}>"

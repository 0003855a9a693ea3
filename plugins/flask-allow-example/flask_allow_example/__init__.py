"""flask-allow-example: the ``env:NAME`` rule type, written against flask_allow's public API only.

``ALLOW: "env:ADMIN_NETWORKS"`` matches the addresses, networks and ranges listed in the
environment variable ``ADMIN_NETWORKS`` (separated by commas or white space), so that a
deployment can hand its networks in the way it hands in its other settings.
"""

from __future__ import annotations

import os
import re

from flask_allow import Matcher, MatcherContext, hookimpl

__version__ = "1.0.0"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEPARATORS = re.compile(r"[\s,]+")


class EnvMatcher(Matcher):
    """``env:NAME``: the entries of environment variable NAME, read when the rules are built.

    The addresses are static, so ``networks()`` hands them to flask_allow, which compiles them
    into its index together with the neighbouring rules; ``reload()`` reads the variable again.
    """

    prefix = "env"

    def __init__(self, value: str, context: MatcherContext) -> None:
        super().__init__(value, context)
        name = value.strip()
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not an environment variable name")
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        self.name = name
        self.entries = [entry for entry in _SEPARATORS.split(os.environ[name]) if entry]
        try:
            self.spans()  # flask_allow parses every entry now, so a bad one fails at start-up
        except ValueError as exc:
            raise ValueError(f"environment variable {name}: {exc}") from None

    def networks(self) -> list[str]:
        return self.entries

    def describe(self) -> str:
        return f"${self.name}: {', '.join(self.entries) or 'nothing'}"


@hookimpl
def flask_allow_matchers() -> list[type[Matcher]]:
    """Provide the ``env:`` rule type."""
    return [EnvMatcher]

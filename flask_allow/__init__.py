"""flask_allow: IP access control for Flask, an ordered ALLOW/DENY list of pluggable rule types."""

from __future__ import annotations

import pluggy

hookimpl = pluggy.HookimplMarker("flask_allow")
"""Marker for plugin hook implementations: ``@hookimpl def flask_allow_matchers(): ...``."""

from .addresses import Span  # noqa: E402
from .bans.ban import Ban  # noqa: E402
from .client import Client  # noqa: E402
from .decision import Decision, Rule  # noqa: E402
from .errors import ConfigError, MatchError  # noqa: E402
from .extension import FlaskAllow  # noqa: E402
from .matcher import Matcher, MatcherContext  # noqa: E402

#: The version of flask_allow, as in its distribution's metadata.
__version__ = "3.0.0"

__all__ = [
    "Ban",
    "Client",
    "ConfigError",
    "Decision",
    "FlaskAllow",
    "MatchError",
    "Matcher",
    "MatcherContext",
    "Rule",
    "Span",
    "hookimpl",
    "__version__",
]

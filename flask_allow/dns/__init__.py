"""DNS for host-name rules: settings, the resolver (hosts file, then dnspython), caches, refresher.

The rule types themselves are built-in plugins: ``flask_allow.builtins.hostnames`` (forward) and
``flask_allow.builtins.reverse`` (forward-confirmed reverse DNS).
"""

from __future__ import annotations

from .names import parse_host_name
from .resolver import ERROR, NEGATIVE, OK, Answer
from .service import DNSService, Verdict, service_for
from .settings import DNSSettings

__all__ = [
    "ERROR",
    "NEGATIVE",
    "OK",
    "Answer",
    "DNSService",
    "DNSSettings",
    "Verdict",
    "parse_host_name",
    "service_for",
]

"""flask-allow-geoip: ``country:``, ``continent:`` and ``asn:`` rules from MaxMind DB files.

``DENY: "country:RU,BY"``, ``ALLOW: "continent:EU"``, ``DENY: "asn:AS16509"``, read from
``ALLOW_GEOIP_DATABASE`` (a country or city database) and ``ALLOW_GEOIP_ASN_DATABASE``, in the
schemas of GeoIP2/GeoLite2, DB-IP lite and IPinfo. Written against flask_allow's public API only.
"""

from __future__ import annotations

from typing import Any

from flask_allow import Matcher, hookimpl

from .matchers import AsnMatcher, ContinentMatcher, CountryMatcher, GeoMatcher, forget

__version__ = "1.0.0"

__all__ = ["AsnMatcher", "ContinentMatcher", "CountryMatcher", "GeoMatcher", "__version__"]


@hookimpl
def flask_allow_matchers() -> list[type[Matcher]]:
    """Provide the ``country:``, ``continent:`` and ``asn:`` rule types."""
    return [CountryMatcher, ContinentMatcher, AsnMatcher]


@hookimpl
def flask_allow_rules_changed(state: Any) -> None:
    """Let go of the databases read while the rules were built: each rule keeps its own networks."""
    forget(state.shared)

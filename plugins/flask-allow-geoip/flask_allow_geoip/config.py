"""The plugin's config keys, each documented once here (and in README.md and docs/geoip.md)."""

from __future__ import annotations

#: Path (str or ``os.PathLike``) of the country or city MaxMind DB file that ``country:`` and
#: ``continent:`` rules read: GeoLite2/GeoIP2 Country or City, DB-IP lite, IPinfo's country or
#: country + ASN database. A relative path is taken from the app's root path. No default.
DATABASE = "ALLOW_GEOIP_DATABASE"

#: Path (str or ``os.PathLike``) of the ASN MaxMind DB file that ``asn:`` rules read: GeoLite2
#: ASN, DB-IP ASN lite, IPinfo's ASN or country + ASN database (which may be the same file as
#: ``ALLOW_GEOIP_DATABASE``). A relative path is taken from the app's root path. No default.
ASN_DATABASE = "ALLOW_GEOIP_ASN_DATABASE"

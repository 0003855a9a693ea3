"""A MaxMind DB file read into the networks of each country, continent and ASN it names.

The database is walked once per version of the file with maxminddb's reader iteration, and each
network is filed under the codes its record gives, so that the rules can hand flask_allow's
index exactly the networks of the codes they name. The nested records of GeoIP2/GeoLite2 and
DB-IP (``country.iso_code``) and the flat ones of IPinfo (``country``, ``country_code``, ``asn``)
are read alike.
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from ipaddress import IPv6Address
from itertools import pairwise
from typing import Any

from flask_allow import Span

#: What each table is read from, as a ``ConfigError`` for a database of another kind says it.
FIELDS = {
    "country": "country.iso_code or registered_country.iso_code (GeoIP2, GeoLite2, DB-IP), "
    "country_code or a two-letter country (IPinfo)",
    "continent": "continent.code (GeoIP2, GeoLite2, DB-IP), continent_code or a two-letter continent (IPinfo)",
    "asn": "autonomous_system_number or traits.autonomous_system_number (GeoLite2 ASN, GeoIP2, DB-IP), "
    "asn (IPinfo, 'AS15169')",
}
#: The tables each kind of database is read into.
TABLES = {"country": ("country", "continent"), "asn": ("asn",)}

_MAPPED = 0xFFFF << 32  # ::ffff:0.0.0.0, shifted right by 32
#: The IPv6 prefixes MaxMind's databases answer from their IPv4 networks, which maxminddb's
#: iteration skips: ``(base, shift, length)``, the IPv4 address sits at ``base | v4 << shift``.
ALIASES = (
    (0x2002 << 112, 80, 16),  # 6to4, 2002::/16
    (0x20010000 << 96, 64, 32),  # Teredo, 2001::/32 (the server's IPv4 address)
)
_ALIAS_PROBES = 8  # IPv4 networks asked about to tell an alias from networks of its own
_ASN_MAX = (1 << 32) - 1

Stamp = tuple[int, int, int, int]


def stamp_of(path: str) -> Stamp:
    """What tells one version of a file from the next (as flask_allow's watcher tells it)."""
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


class Networks:
    """The networks filed under one code, in address order, each kept as the database has it."""

    __slots__ = ("first4", "first6", "last4", "last6")

    def __init__(self) -> None:
        self.first4 = array("I")
        self.last4 = array("I")
        self.first6: list[int] = []
        self.last6: list[int] = []

    def add(self, family: int, first: int, last: int) -> None:
        if family == 4:
            self.first4.append(first)
            self.last4.append(last)
        else:
            self.first6.append(first)
            self.last6.append(last)

    def __len__(self) -> int:
        return len(self.first4) + len(self.first6)

    def spans(self, aliases: tuple[tuple[int, int], ...] = ()) -> Iterator[Span]:
        """The networks as spans; with ``aliases`` (``Database.aliases``), the IPv4 ones under each too."""
        for first, last in zip(self.first4, self.last4, strict=True):
            yield Span(4, first, last)
        for first, last in zip(self.first6, self.last6, strict=True):
            yield Span(6, first, last)
        for base, shift in aliases:
            low = (1 << shift) - 1
            for first, last in zip(self.first4, self.last4, strict=True):
                yield Span(6, base | first << shift, base | last << shift | low)

    def find(self, family: int, value: int, aliases: tuple[tuple[int, int], ...] = ()) -> tuple[int, int] | None:
        """The ``(first, last)`` of the network holding the address (with ``aliases`` as in ``spans``), or None."""
        if family == 6:
            for base, shift in aliases:
                if value >> (shift + 32) == base >> (shift + 32):  # under the alias: its IPv4 network
                    found = self.find(4, (value >> shift) & 0xFFFFFFFF)
                    if found is None:
                        return None
                    return base | found[0] << shift, base | found[1] << shift | ((1 << shift) - 1)
        firsts: Any = self.first4 if family == 4 else self.first6
        lasts: Any = self.last4 if family == 4 else self.last6
        i = bisect_right(firsts, value) - 1
        if i >= 0 and value <= lasts[i]:
            return firsts[i], lasts[i]
        return None

    def sort(self) -> None:
        """Put the networks in address order (the tree gives them so; a merged file may not)."""
        if any(b < a for a, b in pairwise(self.first4)):
            pairs = sorted(zip(self.first4, self.last4, strict=True))
            self.first4 = array("I", (p[0] for p in pairs))
            self.last4 = array("I", (p[1] for p in pairs))
        if any(b < a for a, b in pairwise(self.first6)):
            pairs = sorted(zip(self.first6, self.last6, strict=True))
            self.first6 = [p[0] for p in pairs]
            self.last6 = [p[1] for p in pairs]


class Database:
    """One version of a database file, read whole: ``tables[name][code]`` are that code's networks."""

    def __init__(self, path: str, kind: str, stamp: Stamp, description: str) -> None:
        self.path = path
        self.kind = kind
        self.stamp = stamp
        #: The metadata's ``database_type`` (``GeoLite2-Country``, ``ipinfo country_asn.mmdb``...).
        self.description = description
        self.tables: dict[str, dict[Any, Networks]] = {name: {} for name in TABLES[kind]}
        #: ASN -> the organisation's name, as the first record of the ASN gives it.
        self.names: dict[int, str] = {}
        #: How many networks the database holds, filed or not.
        self.count = 0
        #: ``(base, shift)`` of each alias of the IPv4 networks the database has (see ``ALIASES``).
        self.aliases: tuple[tuple[int, int], ...] = ()


def read_database(path: str, kind: str) -> Database:
    """Read ``path`` (a ``kind`` database: "country" or "asn"); raise ``ValueError`` if it cannot be read."""
    import maxminddb  # only once a rule needs it: the plugin costs nothing to apps without GeoIP rules

    stamp = stamp_of(path)
    try:
        reader = maxminddb.open_database(path)
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    except Exception as exc:  # InvalidDatabaseError, or what a damaged file makes the reader raise
        raise ValueError(f"cannot read {path!r}: {exc}") from None
    with reader:
        meta = reader.metadata()
        database = Database(path, kind, stamp, str(getattr(meta, "database_type", "") or "unknown type"))
        try:
            _file(reader, database)
            database.aliases = _aliases(reader, database)
        except Exception as exc:  # a damaged tree or data section: this version is refused whole
            raise ValueError(f"cannot read {path!r}: {type(exc).__name__}: {exc}") from None
    for table in database.tables.values():
        for networks in table.values():
            networks.sort()
    return database


def _file(reader: Any, database: Database) -> None:
    """File every network of the database under the codes of its record."""
    tables = database.tables
    countries, continents, asns = tables.get("country"), tables.get("continent"), tables.get("asn")
    names = database.names
    count = 0
    for network, record in reader:
        count += 1
        first = int(network.network_address)
        last = first | ((1 << (network.max_prefixlen - network.prefixlen)) - 1)  # not broadcast_address: 3x the time
        if network.version == 4:
            family = 4
        else:
            if first >> 32 == _MAPPED:
                # ::ffff:a.b.c.d: flask_allow takes such a client as IPv4, which the database
                # answers from its IPv4 networks (as maxminddb's lookup of a.b.c.d does)
                continue
            family = 6
        if not isinstance(record, dict):
            continue
        if countries is not None:
            code = country_of(record)
            if code is not None:
                _networks(countries, code).add(family, first, last)
        if continents is not None:
            code = continent_of(record)
            if code is not None:
                _networks(continents, code).add(family, first, last)
        if asns is not None:
            found = asn_of(record)
            if found is not None:
                number, name = found
                _networks(asns, number).add(family, first, last)
                if name and number not in names:
                    names[number] = name
    database.count = count


def _aliases(reader: Any, database: Database) -> tuple[tuple[int, int], ...]:
    """The aliases of the IPv4 networks the database has.

    An alias leads to the IPv4 tree itself, so an address under it is answered as its IPv4
    address is, at a prefix length longer by the alias's: asked for a few IPv4 networks, that
    tells an alias from networks of its own (which maxminddb's iteration would have given).
    """
    if reader.metadata().ip_version != 6:
        return ()
    firsts = sorted({first for table in database.tables.values() for n in table.values() for first in n.first4})
    probes = [0, *firsts[:: max(1, len(firsts) // _ALIAS_PROBES)][:_ALIAS_PROBES]]
    found = []
    for base, shift, length in ALIASES:
        for value in probes:
            record, prefix = reader.get_with_prefix_len(IPv6Address(value))  # ::a.b.c.d: the IPv4 tree
            aliased, aliased_prefix = reader.get_with_prefix_len(IPv6Address(base | value << shift))
            if aliased != record or aliased_prefix - length != prefix - 96:
                break
        else:
            found.append((base, shift))
    return tuple(found)


def _networks(table: dict[Any, Networks], code: Any) -> Networks:
    found = table.get(code)
    if found is None:
        found = table[code] = Networks()
    return found


def country_of(record: dict[str, Any]) -> str | None:
    """The country code of a record: where the database places the network, else where it is registered."""
    code = record.get("country_code")  # IPinfo Lite, where "country" is the country's name
    if isinstance(code, str):
        return code.upper()
    for field in ("country", "registered_country"):
        value = record.get(field)
        if isinstance(value, dict):
            code = value.get("iso_code")
            if isinstance(code, str):
                return code.upper()
        elif isinstance(value, str) and len(value) == 2:  # IPinfo country, country_asn
            return value.upper()
    return None


def continent_of(record: dict[str, Any]) -> str | None:
    """The continent code of a record."""
    code = record.get("continent_code")  # IPinfo Lite
    if isinstance(code, str):
        return code.upper()
    value = record.get("continent")
    if isinstance(value, dict):
        code = value.get("code")
        return code.upper() if isinstance(code, str) else None
    if isinstance(value, str) and len(value) == 2:  # IPinfo country, country_asn
        return value.upper()
    return None


def asn_of(record: dict[str, Any]) -> tuple[int, str | None] | None:
    """The ASN of a record, and the organisation's name when the record gives one."""
    holder: Any = record
    if "autonomous_system_number" not in record and isinstance(record.get("traits"), dict):
        holder = record["traits"]  # GeoIP2 Enterprise, DB-IP ISP
    number = holder.get("autonomous_system_number")
    name = holder.get("autonomous_system_organization")
    if number is None:
        number = record.get("asn")  # IPinfo: "AS15169"
        name = record.get("as_name") or record.get("name")
    try:
        asn = parse_asn(number)
    except ValueError:
        return None
    return asn, name if isinstance(name, str) else None


def parse_asn(value: object) -> int:
    """An AS number from ``15169``, ``"15169"`` or ``"AS15169"``; ``ValueError`` for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if text[:2].upper() == "AS":
            text = text[2:]
        if not text.isascii() or not text.isdigit():
            raise ValueError(f"{value!r} is not an AS number (15169 or AS15169)")
        number = int(text)
    else:
        raise ValueError(f"{value!r} is not an AS number (15169 or AS15169)")
    if not 0 < number <= _ASN_MAX:
        raise ValueError(f"{value!r} is not an AS number: they run from 1 to {_ASN_MAX}")
    return number

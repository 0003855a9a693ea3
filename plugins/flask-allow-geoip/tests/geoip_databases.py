"""Small real MaxMind DB files, written at test time with mmdb-writer, in each schema the plugin reads.

``write_database(path, schema, places)`` writes the networks of ``places`` (network -> ``Place``)
with records shaped as that vendor's database shapes them; ``expected(record, schema)`` reads a
record back the way that vendor documents it, independently of the plugin, so that tests compare
the plugin's decisions with what maxminddb itself answers.
"""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path
from typing import Any, NamedTuple

from mmdb_writer import MMDBWriter
from netaddr import IPSet


class Place(NamedTuple):
    country: str
    continent: str
    asn: int
    organisation: str


#: A few networks in each family (documentation ranges), in four countries on three continents.
PLACES = {
    "192.0.2.0/25": Place("NL", "EU", 1136, "KPN B.V."),
    "192.0.2.128/25": Place("BE", "EU", 5432, "Proximus NV"),
    "198.51.100.0/24": Place("US", "NA", 15169, "Google LLC"),
    "203.0.113.0/24": Place("JP", "AS", 2519, "ARTERIA Networks Corporation"),
    "2001:db8:1::/48": Place("NL", "EU", 1136, "KPN B.V."),
    "2001:db8:2::/48": Place("US", "NA", 15169, "Google LLC"),
    "2001:db8:4::/47": Place("JP", "AS", 2519, "ARTERIA Networks Corporation"),
}
#: The same networks, elsewhere: what a database update could say.
MOVED = {network: Place("DE", "EU", 3320, "Deutsche Telekom AG") for network in PLACES}

ORGANISATIONS = {1136: "KPN B.V.", 3320: "Deutsche Telekom AG", 15169: "Google LLC", 16509: "Amazon.com, Inc."}
NAMES = {"NL": "Netherlands", "BE": "Belgium", "US": "United States", "JP": "Japan", "DE": "Germany"}
CONTINENT_NAMES = {"EU": "Europe", "NA": "North America", "SA": "South America", "AS": "Asia", "OC": "Oceania"}
#: schema -> (metadata database_type, kind): "country" databases answer country: and continent:
#: rules, "asn" ones asn: rules, "both" ones (IPinfo's joined databases) either.
SCHEMAS = {
    "geolite2-country": ("GeoLite2-Country", "country"),
    "geoip2-city": ("GeoIP2-City", "country"),
    "dbip-country-lite": ("DBIP-Country-Lite", "country"),
    "ipinfo-country": ("ipinfo country.mmdb", "country"),
    "ipinfo-country-asn": ("ipinfo country_asn.mmdb", "both"),
    "ipinfo-lite": ("ipinfo ipinfo_lite.mmdb", "both"),
    "geolite2-asn": ("GeoLite2-ASN", "asn"),
    "dbip-asn-lite": ("DBIP-ASN-Lite (compat=GeoLite2-ASN)", "asn"),
    "ipinfo-asn": ("ipinfo asn.mmdb", "asn"),
}
COUNTRY_SCHEMAS = [name for name, (_, kind) in SCHEMAS.items() if kind in ("country", "both")]
ASN_SCHEMAS = [name for name, (_, kind) in SCHEMAS.items() if kind in ("asn", "both")]


def record(place: Place, schema: str) -> dict[str, Any]:
    """The record the vendor's database holds for a network in ``place``."""
    names = {"en": NAMES.get(place.country, place.country), "de": NAMES.get(place.country, place.country)}
    continent = {"code": place.continent, "geoname_id": 6255148, "names": {"en": CONTINENT_NAMES[place.continent]}}
    country = {"iso_code": place.country, "geoname_id": 2750405, "names": names}
    if schema == "geolite2-country":
        return {"continent": continent, "country": country, "registered_country": dict(country)}
    if schema == "geoip2-city":
        return {
            "city": {"geoname_id": 2759794, "names": {"en": "Somewhere"}},
            "continent": continent,
            "country": {**country, "is_in_european_union": place.continent == "EU"},
            "location": {"accuracy_radius": 100, "latitude": 52.37, "longitude": 4.89, "time_zone": "Europe/Amsterdam"},
            "postal": {"code": "1012"},
            "registered_country": dict(country),
            "subdivisions": [{"iso_code": "NH", "names": {"en": "North Holland"}}],
        }
    if schema == "dbip-country-lite":
        return {"continent": continent, "country": {**country, "is_in_european_union": place.continent == "EU"}}
    joined = {
        "country": place.country,
        "country_name": NAMES.get(place.country, place.country),
        "continent": place.continent,
        "continent_name": CONTINENT_NAMES[place.continent],
    }
    if schema == "ipinfo-country":
        return joined
    asn = {"asn": f"AS{place.asn}", "as_name": place.organisation, "as_domain": "example.net"}
    if schema == "ipinfo-country-asn":
        return {**joined, **asn}
    if schema == "ipinfo-lite":  # here "country" is the name and the codes have fields of their own
        return {
            "country_code": place.country,
            "country": NAMES.get(place.country, place.country),
            "continent_code": place.continent,
            "continent": CONTINENT_NAMES[place.continent],
            **asn,
        }
    if schema in ("geolite2-asn", "dbip-asn-lite"):
        return {"autonomous_system_number": place.asn, "autonomous_system_organization": place.organisation}
    if schema == "ipinfo-asn":
        return {"asn": f"AS{place.asn}", "name": place.organisation, "domain": "example.net"}
    raise ValueError(f"unknown schema {schema!r}")


def expected(found: dict[str, Any] | None, schema: str, field: str) -> Any:
    """What the vendor's documentation says a record holds (``field``: country, continent, asn)."""
    if found is None:
        return None
    if schema.startswith("ipinfo"):
        if field == "asn":
            return int(found["asn"][2:]) if "asn" in found else None
        if schema == "ipinfo-lite":
            return found.get(f"{field}_code")
        return found.get(field)
    if field == "asn":
        return found.get("autonomous_system_number")
    if field == "continent":
        return found.get("continent", {}).get("code")
    return found.get("country", {}).get("iso_code")


def write_database(
    path: Path,
    schema: str,
    places: dict[str, Place] | None = None,
    ip_version: int = 6,
    raw: bool = False,
    aliases: bool = False,
) -> Path:
    """Write a database of ``places`` in ``schema``; ``raw``: the places are records already;
    ``aliases``: 6to4 and Teredo lead to the IPv4 networks, as in MaxMind's own databases."""
    database_type, _ = SCHEMAS.get(schema, (schema, None))
    writer = MMDBWriter(
        ip_version=ip_version,
        ipv4_compatible=ip_version == 6,
        database_type=database_type,
        languages=["en"],
        description={"en": f"flask-allow-geoip test database ({schema})"},
        int_type="u32",
    )
    for network, place in (PLACES if places is None else places).items():
        writer.insert_network(IPSet([network]), place if raw else record(place, schema))  # type: ignore[arg-type]
    if aliases:
        alias_ipv4(writer)
    writer.to_db_file(str(path))
    return path


#: The prefixes (value, length) MaxMind's databases alias to their IPv4 networks: 6to4, Teredo.
ALIASED = ((0x2002, 16), (0x20010000, 32))


def alias_ipv4(writer: MMDBWriter) -> None:
    """Make 2002::/16 and 2001::/32 lead to the IPv4 tree (::/96), as MaxMind's writer does."""
    ipv4 = writer.tree
    for _ in range(96):
        ipv4 = ipv4.get_or_create(0)  # type: ignore[assignment, union-attr]
    for value, length in ALIASED:
        bits = [(value >> (length - 1 - i)) & 1 for i in range(length)]
        node = writer.tree
        for bit in bits[:-1]:
            node = node.get_or_create(bit)  # type: ignore[assignment]
        node[bits[-1]] = ipv4


def random_places(count: int, seed: int, ip_version: int = 6) -> dict[str, Place]:
    """Disjoint random networks in random places (seeded), both families unless ``ip_version`` is 4."""
    rnd = random.Random(seed)
    countries = ["NL", "BE", "US", "JP", "DE", "FR", "BR", "AU"]
    continents = {"NL": "EU", "BE": "EU", "US": "NA", "JP": "AS", "DE": "EU", "FR": "EU", "BR": "SA", "AU": "OC"}
    found: dict[str, Place] = {}
    taken4 = ipaddress.IPv4Network("0.0.0.0/32")
    seen: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = {taken4}
    while len(found) < count:
        if ip_version == 4 or rnd.random() < 0.6:
            length = rnd.randint(16, 30)
            network: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.IPv4Network(
                (rnd.getrandbits(32) & ~((1 << (32 - length)) - 1), length)
            )
            if network.is_multicast or network.is_reserved or network.is_loopback or network.is_private:
                continue
        else:
            length = rnd.choice((32, 40, 48, 56, 64))
            value = (0x2000 << 112) | rnd.getrandbits(125)
            network = ipaddress.IPv6Network((value >> (128 - length) << (128 - length), length))
        if any(network.overlaps(other) for other in seen if other.version == network.version):  # type: ignore[arg-type]
            continue
        seen.add(network)
        country = rnd.choice(countries)
        asn = rnd.choice(list(ORGANISATIONS))
        found[str(network)] = Place(country, continents[country], asn, ORGANISATIONS[asn])
    return found


def probes(places: dict[str, Place], seed: int, extra: int = 200) -> list[str]:
    """Addresses to ask about: each network's first, last and a middle one, their outside
    neighbours, IPv4-mapped forms, and random addresses of both families."""
    rnd = random.Random(seed)
    found: list[str] = []
    for text in places:
        network = ipaddress.ip_network(text)
        first, last = int(network.network_address), int(network.broadcast_address)
        top = (1 << network.max_prefixlen) - 1
        make = ipaddress.IPv4Address if network.version == 4 else ipaddress.IPv6Address
        for value in (first, last, (first + last) // 2, first - 1, last + 1):
            if 0 <= value <= top:
                found.append(str(make(value)))
        if network.version == 4:
            found.append(f"::ffff:{make(first)}")
            for value in (first, last):  # under the 6to4 and Teredo prefixes
                found.append(str(ipaddress.IPv6Address((0x2002 << 112) | (value << 80) | 1)))
                found.append(str(ipaddress.IPv6Address((0x20010000 << 96) | (value << 64) | 0xFFFF)))
    found += [str(ipaddress.IPv4Address(rnd.getrandbits(32))) for _ in range(extra)]
    found += [str(ipaddress.IPv6Address((0x2001 << 112) | rnd.getrandbits(112))) for _ in range(extra // 4)]
    return found

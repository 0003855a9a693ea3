"""A ``country:`` rule (flask-allow-geoip) against a ``file:`` rule holding the same networks.

A GeoLite2-style country database of N seeded random networks (IPv4 and IPv6, 40 % of them in
US, the rest spread over 19 other countries) is written at bench time with mmdb-writer; the list
file holds exactly the networks maxminddb's iteration gives for US. Both apps deny that one rule;
each round decides for the same stream of client addresses (half inside the networks) with each,
the order rotated, as a request does (``Engine.decide`` of a new ``Client``). The goal: the
country rule costs at most 1.1x the file rule per decision. The control row is a second file-rule
app measured the same way. Building each rule set is timed too (the database walk is extra).

    pip install -e './plugins/flask-allow-geoip[test]'   # maxminddb, mmdb-writer, netaddr
    python benchmarks/geoip.py [--quick] [--json PATH] [--networks N]
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as common
import maxminddb
from flask import Flask
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from flask_allow import Client, FlaskAllow

#: The countries besides US, by continent.
CONTINENTS = {
    "EU": ["NL", "BE", "DE", "FR", "GB", "RU", "SE", "PL", "IT", "ES"],
    "AS": ["JP", "CN", "IN", "KR"],
    "NA": ["CA", "MX"],
    "SA": ["BR"],
    "OC": ["AU"],
    "AF": ["ZA"],
}
OTHERS = [country for countries in CONTINENTS.values() for country in countries]


def write_country_database(path: Path, count: int, seed: int) -> None:
    """A GeoLite2-Country-shaped database of ``count`` random networks (later ones win overlaps)."""
    rnd = random.Random(seed)
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country", int_type="u32")
    four = common.random_networks(count * 3 // 4, seed, 4)
    six = common.random_networks(count - len(four), seed + 1, 6)
    records: dict[str, dict[str, Any]] = {}
    for network in four + six:
        country = "US" if rnd.random() < 0.4 else rnd.choice(OTHERS)
        if country not in records:
            continent = next((c for c, countries in CONTINENTS.items() if country in countries), "NA")
            records[country] = {
                "continent": {"code": continent, "names": {"en": continent}},
                "country": {"iso_code": country, "names": {"en": country}},
                "registered_country": {"iso_code": country, "names": {"en": country}},
            }
        writer.insert_network(IPSet([network]), records[country])
    writer.to_db_file(str(path))


def networks_of(path: Path, country: str) -> list[str]:
    """The networks maxminddb's iteration gives for ``country``."""
    with maxminddb.open_database(str(path)) as reader:
        return [str(network) for network, record in reader if record["country"]["iso_code"] == country]  # type: ignore[index, call-overload]


def guarded(name: str, config: dict[str, Any]) -> tuple[Flask, float]:
    """A guarded app (entry points on: the GeoIP plugin is found as in production), and its build time."""
    app = Flask(name)
    app.config.update(config)
    start = time.perf_counter()
    FlaskAllow(app)
    return app, time.perf_counter() - start


def main() -> None:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--networks", type=int, help="networks in the database (default 100,000)")

    args = common.arguments(__doc__.splitlines()[0], extra)
    count = args.networks or (2_000 if args.quick else 100_000)
    rounds, clients_count = (3, 2_000) if args.quick else (30, 20_000)
    common.print_header(
        "GeoIP country rule against a file: rule of the same networks",
        [f"{count:,} networks in the database; {rounds} rounds of {clients_count:,} decisions per app"],
    )
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "GeoLite2-Country.mmdb"
        start = time.perf_counter()
        write_country_database(database, count, args.seed)
        written = time.perf_counter() - start
        listed = networks_of(database, "US")
        list_file = common.write_list(Path(tmp) / "us.txt", listed)
        print(f"database written in {written:.1f} s; US holds {len(listed):,} of its networks\n")

        country, country_build = guarded(
            "country", {"ALLOW_GEOIP_DATABASE": str(database), "ADDRESS_RESTRICTION": [{"DENY": "country:US"}]}
        )
        listed_app, file_build = guarded("file", {"ADDRESS_RESTRICTION": [{"DENY": f"file:{list_file}"}]})
        control, _ = guarded("control", {"ADDRESS_RESTRICTION": [{"DENY": f"file:{list_file}"}]})
        apps = {"file: rule": listed_app, "country: rule": country, "file: rule (control)": control}

        rnd = random.Random(args.seed)
        inside = []
        for text in rnd.sample(listed, min(len(listed), clients_count // 2)):
            network = ipaddress.ip_network(text)
            inside.append(str(network.network_address + rnd.randrange(network.num_addresses)))
        clients = common.fresh(inside + common.random_clients(clients_count - len(inside), args.seed))
        rnd.shuffle(clients)
        for name, app in apps.items():  # the same answers, or the comparison means nothing
            engine = app.extensions["flask_allow"].engine
            if not engine.static:
                raise SystemExit(f"{name}: not compiled into the index")
        engines = [app.extensions["flask_allow"].engine for app in apps.values()]
        answers = [[engine.decide(Client(a)).allowed for a in clients] for engine in engines]
        if answers[0] != answers[1]:
            raise SystemExit("the country rule and the file rule decide differently")

        def variant(app: Flask) -> Callable[[], float]:
            decide = app.extensions["flask_allow"].engine.decide
            batch = common.fresh(clients)

            def run() -> float:
                start = time.perf_counter()
                for address in batch:
                    decide(Client(address))
                return (time.perf_counter() - start) / len(batch)

            return run

        variants = {name: variant(app) for name, app in apps.items()}
        for run in variants.values():
            run()
        found = common.interleave(variants, rounds)
        rows = common.ratio_rows(found, "file: rule", 1e9)
        common.table(
            ["rule", "ns per decision", "÷ file: rule (median of rounds)", "range"],
            rows,
            "Decision time, country: rule against file: rule",
        )
        searched = {name: app.extensions["flask_allow"].engine.searched_in for name, app in apps.items()}
        common.table(
            ["rule", "build (s)", "searched in"],
            [
                ["file: rule", file_build, searched["file: rule"]],
                ["country: rule (walks the database)", country_build, searched["country: rule"]],
            ],
            "Building the rules",
        )
        for app in apps.values():
            app.extensions["flask_allow"].close()
    common.write_json(
        args.json,
        "geoip",
        args,
        {"seconds": found, "table": rows, "build": {"file": file_build, "country": country_build}, "us": len(listed)},
    )


if __name__ == "__main__":
    sys.exit(main())

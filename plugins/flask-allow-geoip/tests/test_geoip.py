"""Tests of flask-allow-geoip on real MaxMind DB files written at test time, in every schema it reads.

The plugin is found through its entry point (the README's test command installs it), as in an
app. Decisions are compared with what maxminddb itself answers for the same address.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask_allow_geoip
import maxminddb
import pytest
from flask import Flask
from flask_allow_geoip import matchers
from geoip_databases import (
    ASN_SCHEMAS,
    COUNTRY_SCHEMAS,
    MOVED,
    PLACES,
    Place,
    expected,
    probes,
    random_places,
    write_database,
)

from flask_allow import Client, ConfigError, FlaskAllow, hookimpl

MakeApp = Callable[..., Flask]


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[MakeApp]:
    """``make_app(config, plugins=...)``: a guarded app rooted in ``tmp_path``, closed at teardown."""
    apps: list[Flask] = []

    def factory(config: dict[str, Any], plugins: list[object] | None = None) -> Flask:
        app = Flask("geoip", root_path=str(tmp_path))
        app.config.update(config)
        app.add_url_rule("/", "index", lambda: "ok")
        FlaskAllow(app, plugins=plugins or [])
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["flask_allow"].close()


def status(app: Flask, address: str) -> int:
    return app.test_client().get("/", environ_base={"REMOTE_ADDR": address}).status_code


def answer(reader: Any, address: str) -> Any:
    """maxminddb's record for ``address``; an IPv4-mapped address is asked as its IPv4 address
    (flask_allow always takes ``::ffff:a.b.c.d`` as ``a.b.c.d``)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6 and reader.metadata().ip_version == 4:
        return None
    return reader.get(ip)


def test_the_entry_point_provides_the_rule_types(make_app: MakeApp, tmp_path: Path) -> None:
    database = write_database(tmp_path / "country.mmdb", "geolite2-country")
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "country:NL"}], "ALLOW_GEOIP_DATABASE": str(database)})
    state = app.extensions["flask_allow"]
    assert state.pm.get_plugin("geoip") is flask_allow_geoip
    assert state.pm.flask_allow_origins["geoip"] == "entry point (flask-allow-geoip 1.0.0)"
    state.pm.check_pending()
    assert status(app, "192.0.2.1") == 403 and status(app, "192.0.2.129") == 200


@pytest.mark.parametrize("schema", COUNTRY_SCHEMAS)
@pytest.mark.parametrize("layout", ["IPv6", "IPv6 with aliases", "IPv4"])
def test_country_and_continent_rules_decide_as_the_database_says(
    make_app: MakeApp, tmp_path: Path, schema: str, layout: str
) -> None:
    ip_version = 4 if layout == "IPv4" else 6
    places = random_places(120, seed=len(schema) + len(layout), ip_version=ip_version)
    places.update({k: v for k, v in PLACES.items() if ip_version == 6 or ":" not in k})
    database = write_database(
        tmp_path / f"{schema}.mmdb", schema, places, ip_version=ip_version, aliases=layout.endswith("aliases")
    )
    config = {"ALLOW_GEOIP_DATABASE": str(database)}
    countries = make_app({**config, "ADDRESS_RESTRICTION": [{"DENY": "country:nl, us ,JP"}]})
    continents = make_app({**config, "ADDRESS_RESTRICTION": [{"ALLOW": "continent:eu,OC", "DENY": "all"}]})
    assert countries.extensions["flask_allow"].engine.static  # compiled into the index, no lookup per request
    with maxminddb.open_database(str(database)) as reader:
        for address in probes(places, seed=len(layout)):
            found = answer(reader, address)
            country = expected(found, schema, "country")
            continent = expected(found, schema, "continent")
            decision = countries.extensions["flask_allow"].engine.decide(Client(address))
            assert decision.allowed == (country not in ("NL", "US", "JP")), (address, found)
            if not decision.allowed:
                assert decision.reason.endswith(f"'country:nl, us ,JP' (country {country})")
            decision = continents.extensions["flask_allow"].engine.decide(Client(address))
            assert decision.allowed == (continent in ("EU", "OC")), (address, found)
            if decision.allowed:
                assert decision.reason.endswith(f"(continent {continent})")
    assert status(countries, "::ffff:192.0.2.1") == 403  # IPv4-mapped is the IPv4 address
    if layout == "IPv6 with aliases":  # 6to4 and Teredo addresses are their IPv4 address's country
        assert status(countries, "2002:c000:201::1") == 403 and status(countries, "2001:0:c000:201::1") == 403
        assert countries.extensions["flask_allow"].engine.rules[0].matcher.explain(Client("2002:c000:201::1")) == (
            f"matches: country NL (2002:c000:200::/41 in {database})"
        )
    else:
        assert status(countries, "2002:c000:201::1") == 200


@pytest.mark.parametrize("schema", ASN_SCHEMAS)
def test_asn_rules_decide_as_the_database_says(make_app: MakeApp, tmp_path: Path, schema: str) -> None:
    places = {**random_places(120, seed=7), **PLACES}
    database = write_database(tmp_path / f"{schema}.mmdb", schema, places)
    app = make_app({"ALLOW_GEOIP_ASN_DATABASE": str(database), "ADDRESS_RESTRICTION": [{"DENY": "asn:15169,as16509"}]})
    engine = app.extensions["flask_allow"].engine
    with maxminddb.open_database(str(database)) as reader:
        for address in probes(places, seed=3):
            asn = expected(answer(reader, address), schema, "asn")
            decision = engine.decide(Client(address))
            assert decision.allowed == (asn not in (15169, 16509)), address
    assert engine.decide(Client("198.51.100.7")).reason.endswith("'asn:15169,as16509' (AS15169 Google LLC)")
    assert engine.decide(Client("2001:db8:2::1")).detail == "AS15169 Google LLC"


def test_one_joined_database_serves_country_and_asn_rules(make_app: MakeApp, tmp_path: Path) -> None:
    database = str(write_database(tmp_path / "ipinfo_lite.mmdb", "ipinfo-lite"))
    app = make_app(
        {
            "ALLOW_GEOIP_DATABASE": database,
            "ALLOW_GEOIP_ASN_DATABASE": database,
            "ADDRESS_RESTRICTION": [{"DENY": "asn:AS2519"}, {"ALLOW": "country:NL", "DENY": "all"}],
        }
    )
    assert status(app, "192.0.2.1") == 200 and status(app, "2001:db8:1::9") == 200
    assert status(app, "203.0.113.1") == 403 and status(app, "192.0.2.129") == 403
    assert app.extensions["flask_allow"].engine.decide(Client("203.0.113.1")).rule.location == (  # type: ignore[union-attr]
        "ADDRESS_RESTRICTION[0].DENY"
    )


def test_a_client_the_database_does_not_know_matches_no_rule(make_app: MakeApp, tmp_path: Path) -> None:
    database = str(write_database(tmp_path / "country.mmdb", "dbip-country-lite"))
    allow_nl = make_app({"ALLOW_GEOIP_DATABASE": database, "ADDRESS_RESTRICTION": [{"ALLOW": "country:NL"}]})
    deny_nl = make_app({"ALLOW_GEOIP_DATABASE": database, "ADDRESS_RESTRICTION": [{"DENY": "continent:EU"}]})
    for address in ("10.0.0.1", "2001:db8:ff::1", "::1"):
        assert allow_nl.extensions["flask_allow"].engine.decide(Client(address)).rule is None
        assert status(deny_nl, address) == 200


def test_rules_are_compiled_with_their_static_neighbours(make_app: MakeApp, tmp_path: Path) -> None:
    database = str(write_database(tmp_path / "country.mmdb", "geoip2-city"))
    app = make_app(
        {
            "ALLOW_GEOIP_DATABASE": database,
            "ADDRESS_RESTRICTION": [
                {"DENY": ["192.0.2.7", "country:JP"]},
                {"ALLOW": "continent:EU"},
                {"DENY": "all"},
            ],
        }
    )
    engine = app.extensions["flask_allow"].engine
    assert engine.static and all(rule.static for rule in engine.rules)
    assert [status(app, a) for a in ("192.0.2.7", "192.0.2.8", "203.0.113.1", "198.51.100.1")] == [403, 200, 403, 403]
    country = engine.rules[1].matcher
    assert country.describe() == f"country JP: 2 networks from {database}"
    assert country.explain(Client("2001:db8:5::1")) == f"matches: country JP (2001:db8:4::/47 in {database})"
    assert country.explain(Client("192.0.2.1")) == f"does not match: {database} places the client in none of JP"


def test_several_rules_read_one_database_once_and_let_it_go(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = str(write_database(tmp_path / "country.mmdb", "geolite2-country"))
    reads: list[str] = []
    real = matchers.read_database

    def counted(path: str, kind: str) -> Any:
        reads.append(kind)
        return real(path, kind)

    monkeypatch.setattr(matchers, "read_database", counted)
    app = make_app(
        {
            "ALLOW_GEOIP_DATABASE": database,
            "ADDRESS_RESTRICTION": [{"DENY": ["country:JP", "continent:NA"]}, {"ALLOW": "country:NL,BE"}],
        }
    )
    assert reads == ["country"]
    state = app.extensions["flask_allow"]
    assert matchers.SHARED not in state.shared  # the rules keep their own networks, nothing more
    FlaskAllow.reload(state.extension, app)
    assert reads == ["country", "country"]


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ("country:XX", "unknown country code 'XX': not an ISO 3166-1 alpha-2 code"),
        ("country:UK", "did you mean GB?"),
        ("country:NL,", "an empty country code in 'NL,'"),
        ("country:", "name one or more country codes after 'country:'"),
        ("continent:EA", "unknown continent code 'EA': one of AF, AN, AS, EU, NA, OC, SA"),
        ("asn:AS15169x", "'AS15169x' is not an AS number"),
        ("asn:0", "'0' is not an AS number: they run from 1 to 4294967295"),
    ],
)
def test_a_bad_code_is_a_config_error_naming_the_rule(
    make_app: MakeApp, tmp_path: Path, rule: str, fragment: str
) -> None:
    database = str(write_database(tmp_path / "both.mmdb", "ipinfo-country-asn"))
    with pytest.raises(ConfigError) as info:
        make_app(
            {
                "ALLOW_GEOIP_DATABASE": database,
                "ALLOW_GEOIP_ASN_DATABASE": database,
                "ADDRESS_RESTRICTION": [{"ALLOW": "country:NL"}, {"DENY": rule}],
            }
        )
    assert info.value.location == "ADDRESS_RESTRICTION[1].DENY"
    assert fragment in str(info.value)


def test_the_iso_list_is_the_real_one() -> None:
    from flask_allow_geoip.codes import CONTINENTS, COUNTRIES, ISO_3166_1

    assert len(ISO_3166_1) == 249
    assert ISO_3166_1 | {"XK"} == COUNTRIES
    assert {"NL", "GB", "SS", "CW", "SX", "BQ", "AX", "AQ"} <= ISO_3166_1  # newer and odd ones
    assert not {"UK", "EU", "AP", "YU", "AN", "CS", "ZR"} & ISO_3166_1  # not (or no longer) assigned
    assert sorted(CONTINENTS) == ["AF", "AN", "AS", "EU", "NA", "OC", "SA"]


def _database_errors(tmp_path: Path) -> list[tuple[dict[str, Any], str, str]]:
    country = str(write_database(tmp_path / "country.mmdb", "geolite2-country"))
    asn = str(write_database(tmp_path / "asn.mmdb", "geolite2-asn"))
    other = str(write_database(tmp_path / "other.mmdb", "Weather", {"192.0.2.0/24": {"rain": "yes"}}, raw=True))  # type: ignore[dict-item]
    garbage = tmp_path / "garbage.mmdb"
    garbage.write_bytes(b"not a database\n" * 100)
    missing = str(tmp_path / "missing.mmdb")
    return [
        ({}, "country:NL", "ALLOW_GEOIP_DATABASE is not set: give the path of the MaxMind DB file"),
        ({"ALLOW_GEOIP_DATABASE": 5}, "country:NL", "ALLOW_GEOIP_DATABASE must be the path of a MaxMind DB file"),
        ({"ALLOW_GEOIP_DATABASE": missing}, "continent:EU", f"ALLOW_GEOIP_DATABASE {missing!r} does not exist"),
        ({"ALLOW_GEOIP_DATABASE": str(garbage)}, "country:NL", f"cannot read {str(garbage)!r}"),
        ({"ALLOW_GEOIP_DATABASE": str(tmp_path)}, "country:NL", "does not exist or is not a file"),
        ({"ALLOW_GEOIP_DATABASE": country}, "asn:15169", "ALLOW_GEOIP_ASN_DATABASE is not set"),
        (
            {"ALLOW_GEOIP_DATABASE": asn},
            "country:NL",
            f"ALLOW_GEOIP_DATABASE {asn!r} (GeoLite2-ASN, 7 networks) holds no country codes: "
            "looked for country.iso_code or registered_country.iso_code",
        ),
        (
            {"ALLOW_GEOIP_ASN_DATABASE": country},
            "asn:15169",
            "holds no asn codes: looked for autonomous_system_number or traits.autonomous_system_number",
        ),
        ({"ALLOW_GEOIP_DATABASE": other}, "continent:EU", "(Weather, 1 networks) holds no continent codes"),
    ]


def test_a_missing_unreadable_or_foreign_database_is_a_config_error_naming_the_rule(
    make_app: MakeApp, tmp_path: Path
) -> None:
    for config, rule, fragment in _database_errors(tmp_path):
        with pytest.raises(ConfigError) as info:
            make_app({**config, "ADDRESS_RESTRICTION": [{"ALLOW": "127.0.0.1"}, {"DENY": rule}]})
        assert info.value.location == "ADDRESS_RESTRICTION[1].DENY", (config, rule)
        assert fragment in str(info.value), (config, rule)


def test_a_relative_path_is_taken_from_the_app_root(make_app: MakeApp, tmp_path: Path) -> None:
    write_database(tmp_path / "country.mmdb", "ipinfo-country")
    app = make_app({"ALLOW_GEOIP_DATABASE": "country.mmdb", "ADDRESS_RESTRICTION": [{"DENY": "country:BE"}]})
    assert status(app, "192.0.2.200") == 403 and status(app, "192.0.2.1") == 200


# -- live: the database file is watched ------------------------------------------------------------


class Errors:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    @hookimpl
    def flask_allow_error(self, kind: str) -> None:
        self.kinds.append(kind)


def _replace(path: Path, schema: str, places: dict[str, Place] | None = None, content: bytes | None = None) -> None:
    """Replace the database as update tools do: a new file renamed over the old one."""
    new = path.with_name(path.name + ".new")
    if content is None:
        write_database(new, schema, places)
    else:
        new.write_bytes(content)
    os.replace(new, path)


def _until(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def test_a_replaced_database_is_followed_and_an_unreadable_one_keeps_the_rules(
    make_app: MakeApp, tmp_path: Path
) -> None:
    path = tmp_path / "GeoLite2-Country.mmdb"
    write_database(path, "geolite2-country")
    errors = Errors()
    app = make_app(
        {
            "ALLOW_GEOIP_DATABASE": str(path),
            "ALLOW_WATCH_INTERVAL": 0.05,
            "ADDRESS_RESTRICTION": [{"DENY": "country:NL"}],
        },
        plugins=[errors],
    )
    assert status(app, "192.0.2.1") == 403 and status(app, "2001:db8:1::1") == 403
    _replace(path, "geolite2-country", MOVED)  # NL's networks are in DE now
    _until(lambda: status(app, "192.0.2.1") == 200, "the new database in force")
    assert status(app, "2001:db8:1::1") == 200

    _replace(path, "geolite2-country", content=b"truncated download\n" * 50)
    _until(lambda: "source_refused" in errors.kinds, "the unreadable database refused")
    assert status(app, "192.0.2.1") == 200  # the last good rules stay in force

    _replace(path, "geolite2-country")  # back to NL
    _until(lambda: status(app, "192.0.2.1") == 403, "the good database in force again")


# -- what the decision rested on: the access log and `flask allow check` ---------------------------


@pytest.mark.parametrize("queue", [False, True])
def test_the_access_log_names_the_country_and_the_asn(make_app: MakeApp, tmp_path: Path, queue: bool) -> None:
    log = tmp_path / "access.log"
    app = make_app(
        {
            "ALLOW_GEOIP_DATABASE": str(write_database(tmp_path / "country.mmdb", "dbip-country-lite")),
            "ALLOW_GEOIP_ASN_DATABASE": str(write_database(tmp_path / "asn.mmdb", "dbip-asn-lite")),
            "ACCESS_LOG": {"filename": str(log), "queue": queue},
            "ADDRESS_RESTRICTION": [{"DENY": "asn:15169"}, {"ALLOW": "country:NL,BE", "DENY": "all"}],
        }
    )
    for address in ("198.51.100.9", "192.0.2.200", "10.0.0.1"):
        status(app, address)
    app.extensions["flask_allow"].close()
    lines = log.read_text().splitlines()
    assert "198.51.100.9 denied by ADDRESS_RESTRICTION[0].DENY 'asn:15169' (AS15169 Google LLC) GET" in lines[0]
    assert "192.0.2.200 allowed by ADDRESS_RESTRICTION[1].ALLOW 'country:NL,BE' (country BE) GET" in lines[1]
    assert "10.0.0.1 denied by ADDRESS_RESTRICTION[1].DENY 'all' GET" in lines[2]


def test_flask_allow_check_shows_what_the_decision_rested_on(tmp_path: Path) -> None:
    write_database(tmp_path / "city.mmdb", "geoip2-city")
    write_database(tmp_path / "asn.mmdb", "ipinfo-asn")
    (tmp_path / "app.py").write_text(
        "from flask import Flask\n"
        "from flask_allow import FlaskAllow\n"
        "app = Flask(__name__)\n"
        "app.config.update(ALLOW_GEOIP_DATABASE='city.mmdb', ALLOW_GEOIP_ASN_DATABASE='asn.mmdb',\n"
        "    ADDRESS_RESTRICTION=[{'DENY': 'asn:AS2519'}, {'ALLOW': 'continent:EU', 'DENY': 'all'}])\n"
        "FlaskAllow(app)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}

    def check(address: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app.py", "allow", "check", address],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout + done.stderr

    shown = check("2001:db8:1::5")
    assert "allowed by ADDRESS_RESTRICTION[1].ALLOW 'continent:EU' (continent EU)" in shown, shown
    assert f"matches: continent EU (2001:db8:1::/48 in {tmp_path / 'city.mmdb'})" in shown, shown
    shown = check("203.0.113.77")
    assert "denied by ADDRESS_RESTRICTION[0].DENY 'asn:AS2519' (AS2519 ARTERIA Networks Corporation)" in shown, shown
    assert "matches: AS2519 ARTERIA Networks Corporation (203.0.113.0/24 in" in shown, shown


def test_a_code_without_networks_is_a_warning(
    make_app: MakeApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = str(write_database(tmp_path / "asn.mmdb", "ipinfo-asn"))
    app = make_app({"ALLOW_GEOIP_ASN_DATABASE": database, "ADDRESS_RESTRICTION": [{"DENY": "asn:15169,AS64496"}]})
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"flask_allow: ADDRESS_RESTRICTION[0].DENY: {database} holds no network of AS64496" in warned
    assert app.extensions["flask_allow"].engine.rules[0].matcher.describe() == (
        f"asn AS15169, AS64496: 2 networks from {database}"
    )

"""Every built-in rule type, with IPv4 and IPv6 clients, through the Flask test client."""

from __future__ import annotations

import bisect
import ipaddress
import logging
import random
import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import BLOCKLISTS, MakeApp, get, require_blocklists, status, warnings_of
from flask import Flask

from flask_allow import Client, ConfigError, FlaskAllow, Matcher, MatchError, hookimpl

DENY = 403


def decision(app: Flask, address: str):
    return app.extensions["flask_allow"].extension.check(address, app=app)


# -- addresses, networks, ranges ---------------------------------------------


@pytest.mark.parametrize(
    ("rule", "denied", "allowed"),
    [
        ("192.0.2.1", ["192.0.2.1", "::ffff:192.0.2.1"], ["192.0.2.2", "192.0.2.0", "::1"]),
        ("2001:db8::1", ["2001:db8::1", "2001:DB8:0:0:0:0:0:1", "2001:db8:0::1"], ["2001:db8::2", "192.0.2.1"]),
        ("10.0.0.0/8", ["10.0.0.0", "10.255.255.255", "10.1.2.3"], ["9.255.255.255", "11.0.0.0", "::a00:1"]),
        ("2001:db8::/32", ["2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"], ["2001:db9::", "2001:db7::1"]),
        ("10.0.0.5-10.0.0.20", ["10.0.0.5", "10.0.0.12", "10.0.0.20"], ["10.0.0.4", "10.0.0.21", "10.0.1.5"]),
        ("2001:db8::5-2001:db8::20", ["2001:db8::5", "2001:db8::1f", "2001:db8::20"], ["2001:db8::4", "2001:db8::21"]),
        ("10.0.0.0/255.0.0.0", ["10.9.9.9"], ["11.0.0.1"]),
        ("0.0.0.0/0", ["0.0.0.0", "255.255.255.255", "::ffff:1.2.3.4"], ["::1", "2001:db8::1"]),
        ("::/0", ["::", "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"], ["10.0.0.1", "::ffff:10.0.0.1"]),
    ],
)
def test_address_network_range(make_app: MakeApp, rule: str, denied: list[str], allowed: list[str]) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": rule}]})
    for address in denied:
        assert status(app, address) == DENY, address
        d = decision(app, address)
        assert (d.allowed, d.action, d.rule.spec, d.rule.location) == (
            False,
            "DENY",
            rule,
            "ADDRESS_RESTRICTION[0].DENY",
        )
    for address in allowed:
        assert status(app, address) == 200, address
        d = decision(app, address)
        assert (d.allowed, d.action, d.rule) == (True, "ALLOW", None)


@pytest.mark.parametrize(
    ("rule", "normalised", "inside", "outside"),
    [
        ("10.1.2.3/8", "10.0.0.0/8", "10.200.0.1", "11.0.0.1"),
        ("192.168.1.77/24", "192.168.1.0/24", "192.168.1.1", "192.168.2.1"),
        ("2001:db8::1/32", "2001:db8::/32", "2001:db8:abcd::9", "2001:db9::1"),
    ],
)
def test_cidr_with_host_bits_is_normalised_with_a_warning(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture, rule: str, normalised: str, inside: str, outside: str
) -> None:
    with caplog.at_level(logging.WARNING):
        app = make_app({"ADDRESS_RESTRICTION": [{"DENY": rule}]})
    warned = [w for w in warnings_of(caplog, app) if "host bits" in w]
    assert len(warned) == 1
    assert "ADDRESS_RESTRICTION[0].DENY" in warned[0]
    assert rule in warned[0] and normalised in warned[0]
    assert status(app, inside) == DENY
    assert status(app, outside) == 200
    assert decision(app, inside).rule.matcher.describe() == normalised


def test_reverse_range_and_mixed_family_range_are_errors(make_app: MakeApp) -> None:
    for bad in ("10.0.0.20-10.0.0.5", "10.0.0.1-2001:db8::1"):
        with pytest.raises(ConfigError) as info:
            make_app({"ADDRESS_RESTRICTION": [{"DENY": bad}]})
        assert info.value.location == "ADDRESS_RESTRICTION[0].DENY"
        assert bad in str(info.value)


# -- keywords ------------------------------------------------------------------


@pytest.mark.parametrize("word", ["all", "any", "*", "ALL", "Any"])
def test_all_any_star_match_every_client(make_app: MakeApp, word: str) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": word}]})
    for address in ("0.0.0.0", "10.0.0.1", "255.255.255.255", "::", "::1", "2001:db8::1", "fe80::1%eth0"):
        assert status(app, address) == DENY, address
        assert decision(app, address).rule.spec == word


def test_localhost_is_loopback_without_dns(make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a DNS lookup was made: {args!r}")

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo"):
        monkeypatch.setattr(socket, name, no_dns)
    hosts = tmp_path / "hosts"
    hosts.write_text("10.9.9.9 localhost\n192.0.2.1 localhost.localdomain\n", encoding="utf-8")
    app = make_app(
        {
            "ADDRESS_RESTRICTION": [{"ALLOW": "localhost", "DENY": "all"}],
            "ALLOW_DNS_HOSTS_FILE": str(hosts),
        }
    )
    for address in ("127.0.0.1", "127.255.255.254", "127.0.0.2", "::1", "::ffff:127.0.0.1"):
        assert status(app, address) == 200, address
    for address in ("10.9.9.9", "192.0.2.1", "128.0.0.1", "126.255.255.255", "::2", "::", "fe80::1"):
        assert status(app, address) == DENY, address


# -- list files ------------------------------------------------------------------


LIST_TEXT = (
    "# a header comment\n"
    "; another header comment\n"
    "\n"
    "   \n"
    "192.0.2.0/24 ; SBL123\n"
    "198.51.100.7# tight comment\n"
    "\t203.0.113.10-203.0.113.20\t# range with a tab\n"
    "2001:db8:1::/48 ; an IPv6 network\n"
    "2001:db8:2::42\n"
    "::ffff:100.64.0.0/112\n"
    "# 10.0.0.0/8 commented out\n"
    "; 172.16.0.0/12 commented out too\n"
    "   ; EOF\n"
)


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_file_list_comments_blanks_crlf_mixed_families(make_app: MakeApp, tmp_path: Path, newline: str) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(LIST_TEXT.replace("\n", newline).encode("ascii"))
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": f"file:{path}"}]})
    denied = [
        "192.0.2.0",
        "192.0.2.255",
        "198.51.100.7",
        "203.0.113.10",
        "203.0.113.20",
        "2001:db8:1::1",
        "2001:db8:1:ffff::1",
        "2001:db8:2::42",
        "100.64.0.1",
        "::ffff:100.64.255.255",
        "::ffff:192.0.2.9",
    ]
    allowed = [
        "192.0.3.0",
        "198.51.100.8",
        "203.0.113.9",
        "203.0.113.21",
        "2001:db8:3::1",
        "2001:db8:2::43",
        "10.0.0.1",
        "172.16.0.1",
        "100.65.0.0",
    ]
    for address in denied:
        assert status(app, address) == DENY, address
        assert decision(app, address).rule.spec == f"file:{path}"
    for address in allowed:
        assert status(app, address) == 200, address


def test_file_relative_path_is_from_the_app_root(make_app: MakeApp, tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "block.txt").write_text("10.0.0.0/8\n", encoding="utf-8")
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "file:lists/block.txt"}]})
    assert app.root_path == str(tmp_path)
    assert status(app, "10.1.1.1") == DENY
    assert status(app, "11.1.1.1") == 200


def test_file_with_a_bad_line_names_the_file_and_line(make_app: MakeApp, tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("10.0.0.1\n# fine\n10.0.0.300\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        make_app({"ADDRESS_RESTRICTION": [{"DENY": f"file:{path}"}]})
    message = str(info.value)
    assert "ADDRESS_RESTRICTION[0].DENY" in message
    assert "line 3" in message and "10.0.0.300" in message


def _entries(path: Path) -> list[str]:
    """A list file's entries, read independently of flask_allow (the SOURCES.md definition)."""
    found = []
    for line in path.read_text(encoding="ascii").splitlines():
        entry = line.split("#", 1)[0].split(";", 1)[0].strip()
        if entry:
            found.append(entry)
    return found


class _Reference:
    """Membership in a list of networks, by ``ipaddress``: the ground truth."""

    def __init__(self, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        spans = sorted((n.version, int(n.network_address), int(n.broadcast_address)) for n in networks)
        merged: list[list[int]] = []
        for version, first, last in spans:
            if merged and merged[-1][0] == version and first <= merged[-1][2] + 1:
                merged[-1][2] = max(merged[-1][2], last)
            else:
                merged.append([version, first, last])
        self.keys = [(v, f) for v, f, _ in merged]
        self.spans = merged

    def __contains__(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        key = (address.version, int(address))
        i = bisect.bisect_right(self.keys, key) - 1
        return i >= 0 and self.spans[i][0] == address.version and self.spans[i][1] <= int(address) <= self.spans[i][2]


def _blocklists() -> list[Any]:
    if not BLOCKLISTS.is_dir():
        return [pytest.param(None, id="absent")]  # the test fails in CI, is skipped elsewhere
    return [pytest.param(p, id=p.name) for p in sorted(BLOCKLISTS.iterdir()) if p.is_file() and p.suffix != ".md"]


@pytest.mark.parametrize("path", _blocklists())
def test_published_blocklists_load_as_they_are(tmp_path: Path, path: Path) -> None:
    require_blocklists(path or BLOCKLISTS)
    entries = _entries(path)
    networks = [ipaddress.ip_network(e) for e in entries]
    reference = _Reference(networks)
    app = Flask("blocklist", root_path=str(tmp_path))
    app.config["ADDRESS_RESTRICTION"] = [{"DENY": f"file:{path}"}]
    allow = FlaskAllow(app)
    try:
        rule = allow.check(str(networks[0].network_address)).rule
        assert rule is not None and rule.spec == f"file:{path}"
        assert str(len(entries)) in rule.matcher.describe()  # every entry was read

        candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        top = (1 << networks[0].max_prefixlen) - 1
        for net in networks:
            first, last = int(net.network_address), int(net.broadcast_address)
            for value in (first, last, (first + last) // 2, first - 1, last + 1):
                if 0 <= value <= top:
                    candidates.append(ipaddress.ip_address(value) if net.version == 4 else ipaddress.IPv6Address(value))
        rng = random.Random(path.name)
        if networks[0].version == 4:
            candidates += [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(2000)]
        else:  # random addresses inside the covered /16s, or nothing would ever hit
            for _ in range(2000):
                net = rng.choice(networks).supernet(new_prefix=16)
                candidates.append(net.network_address + rng.getrandbits(112))
        hits = misses = 0
        for address in candidates:
            expected = address in reference
            text = str(address)
            got = allow.check(text)
            assert got.allowed is not expected, (text, got.reason)
            hits += expected
            misses += not expected
            if address.version == 4:  # the same client as IPv4-mapped IPv6
                assert allow.check(f"::ffff:{text}").allowed is not expected, text
        assert hits and misses
        # and through the request path, a few of each
        client = app.test_client()
        for address in candidates[:50]:
            response = client.get("/", environ_base={"REMOTE_ADDR": str(address)})
            assert response.status_code == (DENY if address in reference else 404)
    finally:
        allow.state(app).close()


# -- client normalisation ----------------------------------------------------------


def test_ipv4_mapped_client_is_matched_as_ipv4(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}]})
    for address in ("::ffff:10.0.0.1", "::FFFF:10.0.0.1", "::ffff:a00:1", "0:0:0:0:0:ffff:10.255.255.255"):
        assert status(app, address) == DENY, address
        d = decision(app, address)
        assert d.client.ip is not None and d.client.ip.version == 4
    assert status(app, "::ffff:11.0.0.1") == 200
    assert status(app, "::a00:1") == 200  # IPv4-compatible (deprecated) is not mapped


def test_ipv4_mapped_rule_matches_ipv4_clients(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "::ffff:10.0.0.0/104"}, {"DENY": "::ffff:192.0.2.1"}]})
    assert status(app, "10.2.3.4") == DENY
    assert status(app, "::ffff:10.2.3.4") == DENY
    assert status(app, "192.0.2.1") == DENY
    assert status(app, "11.2.3.4") == 200


def test_scoped_ipv6_client_is_matched_as_its_address(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "fe80::1"}, {"DENY": "fe80::/10"}]})
    assert status(app, "fe80::1%eth0") == 200
    assert status(app, "fe80::1%1") == 200
    assert status(app, "fe80::2%eth0") == DENY
    d = decision(app, "fe80::2%eth0")
    assert d.client.ip == ipaddress.IPv6Address("fe80::2")
    assert d.client.address == "fe80::2%eth0"


def test_scoped_rule_is_a_config_error(make_app: MakeApp) -> None:
    with pytest.raises(ConfigError, match="scoped"):
        make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "fe80::1%eth0"}]})


# -- order and default --------------------------------------------------------------


def test_first_match_wins_across_dicts(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "10.0.0.1"}, {"DENY": "10.0.0.0/8"}, {"ALLOW": "10.0.0.2"}]})
    assert status(app, "10.0.0.1") == 200
    assert decision(app, "10.0.0.1").rule.location == "ADDRESS_RESTRICTION[0].ALLOW"
    assert status(app, "10.0.0.2") == DENY  # the later ALLOW is shadowed
    assert decision(app, "10.0.0.2").rule.location == "ADDRESS_RESTRICTION[1].DENY"

    swapped = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}, {"ALLOW": "10.0.0.1"}]})
    assert status(swapped, "10.0.0.1") == DENY


def test_allow_before_deny_within_a_dict_whatever_the_key_order(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8", "ALLOW": "10.0.0.1"}]})
    assert status(app, "10.0.0.1") == 200
    assert decision(app, "10.0.0.1").reason == "allowed by ADDRESS_RESTRICTION[0].ALLOW '10.0.0.1'"
    assert status(app, "10.0.0.2") == DENY


def test_list_values_keep_their_order_and_locations(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": ["192.0.2.1", "2001:db8::/32"]}, {"ALLOW": ["all"]}]})
    assert decision(app, "192.0.2.1").rule.location == "ADDRESS_RESTRICTION[0].DENY[0]"
    assert decision(app, "2001:db8::9").rule.location == "ADDRESS_RESTRICTION[0].DENY[1]"
    assert decision(app, "192.0.2.2").rule.location == "ADDRESS_RESTRICTION[1].ALLOW"
    assert status(app, "2001:db8::9") == DENY
    assert status(app, "2001:db9::9") == 200


@pytest.mark.parametrize(("default", "expected"), [("allow", 200), ("deny", DENY), ("DENY", DENY), ("Allow", 200)])
def test_allow_default(make_app: MakeApp, default: str, expected: int) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ALLOW_DEFAULT": default})
    for address in ("192.0.2.1", "2001:db8::1"):
        assert status(app, address) == expected
        d = decision(app, address)
        assert d.rule is None
        assert d.allowed is (expected == 200)
        assert d.reason == f"{'allowed' if expected == 200 else 'denied'} by default (no rule matched)"
    assert status(app, "10.0.0.1") == DENY


def test_default_deny_without_rules_denies_everyone(make_app: MakeApp) -> None:
    app = make_app({"ALLOW_DEFAULT": "deny"})
    assert status(app, "127.0.0.1") == DENY
    assert status(app, "::1") == DENY


# -- the Flask-Allow 2.0.x README -----------------------------------------------------


def test_readme_simple_example(make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # "access.log" is relative to the working directory, as in 2.0.x
    app = make_app(
        {
            "ACCESS_LOG": "access.log",
            "ADDRESS_RESTRICTION": [{"ALLOW": "127.0.0.1", "DENY": "0.0.0.0/0"}],
        }
    )
    assert status(app, "127.0.0.1") == 200
    assert get(app, "127.0.0.1").get_data(as_text=True) == "ok"
    assert status(app, "192.168.110.2") == DENY
    log = (tmp_path / "access.log").read_text(encoding="utf-8").splitlines()
    assert len(log) == 3
    assert " -    INFO - 127.0.0.1 allowed by ADDRESS_RESTRICTION[0].ALLOW '127.0.0.1'" in log[0]
    assert " -   ERROR - 192.168.110.2 denied by ADDRESS_RESTRICTION[0].DENY '0.0.0.0/0'" in log[2]


def test_readme_localhost_then_deny_and_swapped(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "localhost"}, {"DENY": "0.0.0.0/0"}]})
    assert status(app, "127.0.0.1") == 200
    assert status(app, "192.168.110.2") == DENY
    swapped = make_app({"ADDRESS_RESTRICTION": [{"DENY": "0.0.0.0/0"}, {"ALLOW": "localhost"}]})
    assert status(swapped, "127.0.0.1") == DENY  # "swapping localhost and 0.0.0.0/0 shall exclude the localhost"


# -- what is never a host name -------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "010.0.0.1",
        "0x7f.0.0.1",
        "2130706433",
        "127.1",
        "10.0.0.300",
        "0177.0.0.1",
        "1.2.3",
        "10.0.0.1/33",
        "10.0.0.1/08",
    ],
)
def test_numeric_looking_values_are_config_errors(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    def no_dns(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a DNS lookup was made: {args!r}")

    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        monkeypatch.setattr(socket, name, no_dns)
    with pytest.raises(ConfigError) as info:
        make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "localhost"}, {"DENY": value}]})
    assert info.value.location == "ADDRESS_RESTRICTION[1].DENY"
    assert repr(value) in str(info.value)


# -- clients that are not IP addresses, and matchers that fail ------------------------


@pytest.mark.parametrize("address", ["", "unix:/run/app.sock", "garbage", "10.0.0.300", "::g", "localhost"])
def test_unparsable_client_is_denied_and_logged(
    make_app: MakeApp, tmp_path: Path, caplog: pytest.LogCaptureFixture, address: str
) -> None:
    log = tmp_path / "access.log"
    app = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "all"}], "ACCESS_LOG": str(log)})
    with caplog.at_level(logging.WARNING):
        response = get(app, address)
    assert response.status_code == DENY
    d = decision(app, address)
    assert not d.allowed and d.rule is None and "is not an IP address" in d.reason
    written = log.read_text(encoding="utf-8").splitlines()
    assert len(written) == 1
    assert " -   ERROR - " in written[0] and "is not an IP address" in written[0]
    assert any("is not an IP address" in w for w in warnings_of(caplog, app))


def test_warnings_about_unparsable_clients_are_throttled(make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "all"}]})
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            assert get(app, "unix:/run/app.sock").status_code == DENY
    said = [w for w in warnings_of(caplog, app) if "is not an IP address" in w]
    assert len(said) == 1  # every request denied, but one warning a minute, not one per request


def test_unparsable_client_without_rules_gets_the_default(make_app: MakeApp, tmp_path: Path) -> None:
    # Nothing to match against: a unix-socket deployment with only ACCESS_LOG keeps working (2.0.x).
    app = make_app({"ACCESS_LOG": str(tmp_path / "access.log")})
    assert status(app, "") == 200
    assert status(app, "unix:/run/app.sock") == 200
    closed = make_app({"ALLOW_DEFAULT": "deny"})
    assert status(closed, "unix:/run/app.sock") == DENY


class Exploding(Matcher):
    """A dynamic matcher that fails for one address (and MatchError for another)."""

    prefix = "explode"

    def matches(self, client: Client) -> bool:
        if client.address == "10.0.0.66":
            raise RuntimeError("the database is gone")
        if client.address == "10.0.0.67":
            raise MatchError("the resolver timed out")
        return client.address == "10.0.0.99"


class ExplodingPlugin:
    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [Exploding]


def test_matcher_that_raises_denies_and_logs_the_rule(
    make_app: MakeApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "access.log"
    app = make_app(
        {"ADDRESS_RESTRICTION": [{"DENY": "192.0.2.0/24"}, {"ALLOW": "explode:x"}], "ACCESS_LOG": str(log)},
        plugins=[ExplodingPlugin()],
    )
    with caplog.at_level(logging.ERROR):
        response = get(app, "10.0.0.66")
    assert response.status_code == DENY
    errors = [r for r in caplog.records if r.name == app.logger.name and r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "ADDRESS_RESTRICTION[1].ALLOW 'explode:x'" in errors[0].getMessage()
    assert "RuntimeError" in errors[0].getMessage() and "the database is gone" in errors[0].getMessage()
    assert errors[0].exc_info is not None
    assert "ADDRESS_RESTRICTION[1].ALLOW" in log.read_text(encoding="utf-8")

    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert status(app, "10.0.0.67") == DENY  # MatchError: denied, no traceback
    assert not any(r.exc_info for r in caplog.records)
    d = decision(app, "10.0.0.67")
    assert not d.allowed and "the resolver timed out" in d.reason

    assert status(app, "10.0.0.99") == 200  # the same rule still works for others
    assert status(app, "10.0.0.1") == 200  # no rule matched, default allow
    assert status(app, "192.0.2.5") == DENY  # static rule before it still decides


# -- the guard runs first --------------------------------------------------------------


def test_guard_runs_before_every_other_before_request(make_app: MakeApp) -> None:
    app = Flask("order")
    app.config["ADDRESS_RESTRICTION"] = [{"DENY": "10.0.0.0/8"}]
    called: list[str] = []

    @app.before_request
    def earlier() -> None:
        called.append("earlier")

    bp_app_routes = []

    @app.route("/")
    def index() -> str:
        bp_app_routes.append("view")
        return "ok"

    allow = FlaskAllow(app)

    @app.before_request
    def later() -> None:
        called.append("later")

    try:
        assert status(app, "10.0.0.1") == DENY
        assert called == [] and bp_app_routes == []
        assert status(app, "192.0.2.1") == 200
        assert called == ["earlier", "later"]
        funcs = app.url_value_preprocessors[None]
        assert funcs[0].__name__ == "flask_allow_guard"
        assert sum(f.__name__ == "flask_allow_guard" for f in funcs) == 1
    finally:
        allow.state(app).close()


def test_guard_runs_before_blueprint_before_request(make_app: MakeApp) -> None:
    from flask import Blueprint

    app = Flask("bp")
    app.config["ADDRESS_RESTRICTION"] = [{"DENY": "10.0.0.0/8"}]
    bp = Blueprint("admin", __name__)
    called: list[str] = []

    @bp.before_request
    def bp_hook() -> None:
        called.append("bp")

    @bp.route("/admin")
    def admin() -> str:
        return "admin"

    app.register_blueprint(bp)
    allow = FlaskAllow(app)
    try:
        assert status(app, "10.0.0.1", "/admin") == DENY
        assert called == []
        assert status(app, "192.0.2.1", "/admin") == 200
        assert called == ["bp"]
    finally:
        allow.state(app).close()

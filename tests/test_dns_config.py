"""Host-name rules at start-up: invalid names and ``ALLOW_DNS_*`` values are ``ConfigError``s; what they claim."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MakeApp, status
from dns_server import DNSServer, dns_config

from flask_allow import ConfigError
from flask_allow.builtins.hostnames import HostMatcher
from flask_allow.builtins.reverse import DomainMatcher, PtrMatcher
from flask_allow.dns import DNSSettings, parse_host_name

LONG_LABEL = "a" * 64


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (f"{LONG_LABEL}.example.com", "longer than 63"),
        ("a..example.com", "empty label"),
        ("bad_name.example.com", "'_' cannot be part"),
        ("-lead.example.com", "starts or ends with '-'"),
        ("trail-.example.com", "starts or ends with '-'"),
        (".".join(["abcdefghi"] * 26), "at most 253"),
        ("host:", "empty host name"),
        ("host:exa mple.com", "' ' cannot be part"),
        ("host:bücher.example", "xn--"),
        ("host:*.example.com", "'*' cannot be part"),
        ("host:10.0.0.1", "is an IP address"),
        ("host:example.123", "all digits"),
        ("localhost.", "built-in keyword"),
        ("host:localhost", "built-in keyword"),
        ("*example.com", "write a domain as '*.example.com'"),
        (".example.com", "write a domain as '*.example.com'"),
        ("*.*.example.com", "'*' cannot be part"),
        ("*.", "empty domain"),
        ("*.a..b", "empty label"),
        ("ptr:*.example.com", "without 'ptr:'"),
        ("ptr:", "empty host name"),
        (f"ptr:{LONG_LABEL}.example.com", "longer than 63"),
    ],
)
def test_invalid_names_are_config_errors(dns: DNSServer, make_app: MakeApp, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_app(dns_config(dns, [{"ALLOW": ["10.0.0.0/8", value]}]))
    assert info.value.location == "ADDRESS_RESTRICTION[0].ALLOW[1]"
    assert says in str(info.value)
    assert dns.count() == 0


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("10.0.0.300", "not a valid IPv4 address"),  # numeric text is the address matcher's
        ("127.1", "not a valid IPv4 address"),
        ("1abc.de", "not a valid IPv4 address"),  # hex-looking: an address, never a host name
        ("nope:example.com", "unknown rule type 'nope'"),
        ("exa mple.com", "not a rule value"),
    ],
)
def test_host_names_do_not_swallow_other_values(dns: DNSServer, make_app: MakeApp, value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        make_app(dns_config(dns, [{"ALLOW": value}]))


def test_claims() -> None:
    for value in ("proxy.example.com", "db-1.", "DB-1.Example.COM.", "bad_name.lan", "a..b"):
        assert HostMatcher.claims(value), value
    # a bare word is a mistake far more often than a single-label name (written host:db-1)
    for value in ("db-1", "locahost", "admin", "even"):
        assert not HostMatcher.claims(value), value
    for value in ("10.0.0.1", "::1", "10.0.0.0/8", "1abc.de", "*.example.com", "host:x", "a b", "123", ".x"):
        assert not HostMatcher.claims(value), value
    for value in ("*.example.com", ".example.com", "*example.com"):
        assert DomainMatcher.claims(value) and not HostMatcher.claims(value)
    assert not DomainMatcher.claims("*")  # the "all" keyword
    assert PtrMatcher.prefix == "ptr" and HostMatcher.prefix == "host"


def test_parse_host_name() -> None:
    assert parse_host_name("Proxy.Example.COM.").to_text() == "proxy.example.com."
    assert parse_host_name("proxy.example.com").is_absolute()
    assert not parse_host_name("db-1").is_absolute()  # the system's search domains apply, as in 2.0.x
    assert parse_host_name("db-1.").is_absolute()
    assert parse_host_name("db-1", allow_relative=False).is_absolute()
    assert parse_host_name("xn--bcher-kva.example").to_text() == "xn--bcher-kva.example."
    assert parse_host_name("1password.com").to_text() == "1password.com."


def test_a_top_level_wildcard_is_warned_about(
    dns: DNSServer, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    make_app(dns_config(dns, [{"ALLOW": "*.com"}]))
    assert any("anyone can register" in r.getMessage() for r in caplog.records)


# -- ALLOW_DNS_* ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ALLOW_DNS_TIMEOUT", 0),
        ("ALLOW_DNS_TIMEOUT", -1),
        ("ALLOW_DNS_TIMEOUT", "2"),
        ("ALLOW_DNS_TIMEOUT", True),
        ("ALLOW_DNS_TIMEOUT", float("nan")),
        ("ALLOW_DNS_MIN_TTL", -1),
        ("ALLOW_DNS_MIN_TTL", None),
        ("ALLOW_DNS_MAX_TTL", 0),
        ("ALLOW_DNS_MAX_TTL", 2),  # below the default minimum of 5
        ("ALLOW_DNS_NEGATIVE_TTL", -5),
        ("ALLOW_DNS_NEGATIVE_TTL", "60"),
        ("ALLOW_DNS_CACHE_SIZE", 0),
        ("ALLOW_DNS_CACHE_SIZE", 1.5),
        ("ALLOW_DNS_CACHE_SIZE", "100"),
        ("ALLOW_DNS_ON_ERROR", "block"),
        ("ALLOW_DNS_ON_ERROR", None),
        ("ALLOW_DNS_NAMESERVERS", []),
        ("ALLOW_DNS_NAMESERVERS", ["127.0.0.1:53"]),
        ("ALLOW_DNS_NAMESERVERS", ["dns.example.com"]),
        ("ALLOW_DNS_NAMESERVERS", [53]),
        ("ALLOW_DNS_NAMESERVERS", {"127.0.0.1"}),
        ("ALLOW_DNS_PORT", 0),
        ("ALLOW_DNS_PORT", 65536),
        ("ALLOW_DNS_PORT", "53"),
        ("ALLOW_DNS_HOSTS_FILE", ""),
        ("ALLOW_DNS_HOSTS_FILE", 1),
        ("ALLOW_DNS_HOSTS_FILE", "/no/such/hosts"),
    ],
)
def test_bad_dns_settings_are_config_errors_naming_the_key(
    dns: DNSServer, make_app: MakeApp, key: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=key):
        make_app(dns_config(dns, [{"ALLOW": "proxy.example.com"}], **{key: value}))
    with pytest.raises(ConfigError, match=key):
        DNSSettings.from_config(dns_config(dns, [], **{key: value}))
    with pytest.raises(ConfigError, match=key):  # checked at start-up even without a host-name rule
        make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "10.0.0.0/8"}], key: value})


def test_good_dns_settings(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    settings = DNSSettings.from_config(
        {
            "ALLOW_DNS_NAMESERVERS": "::1",
            "ALLOW_DNS_PORT": 5353,
            "ALLOW_DNS_ON_ERROR": "DENY",
            "ALLOW_DNS_MIN_TTL": 0,
            "ALLOW_DNS_MAX_TTL": 10,
            "ALLOW_DNS_HOSTS_FILE": "hosts",
        },
        root_path=str(tmp_path),
    )
    assert settings.nameservers == ("::1",) and settings.port == 5353 and settings.deny_on_error
    assert settings.hosts_file == str(hosts)
    assert settings.clamp(300) == 10 and settings.clamp(0) == 0 and settings.hosts_ttl == 10
    defaults = DNSSettings.from_config({"ALLOW_DNS_HOSTS_FILE": None})
    assert (defaults.timeout, defaults.min_ttl, defaults.max_ttl, defaults.negative_ttl) == (2.0, 5.0, 3600.0, 60.0)
    assert defaults.cache_size == 10000 and not defaults.deny_on_error and defaults.nameservers is None


def test_the_default_hosts_file_may_be_missing(tmp_path: Path) -> None:
    class Config(dict):
        """A config whose default hosts file does not exist (as in some containers)."""

    from flask_allow import config as keys

    original = keys.DEFAULTS[keys.ALLOW_DNS_HOSTS_FILE]
    keys.DEFAULTS[keys.ALLOW_DNS_HOSTS_FILE] = str(tmp_path / "missing")
    try:
        assert DNSSettings.from_config(Config()).hosts_file is None
    finally:
        keys.DEFAULTS[keys.ALLOW_DNS_HOSTS_FILE] = original


def test_a_reload_with_new_dns_settings_uses_them(dns: DNSServer, make_app: MakeApp) -> None:
    other = DNSServer().start()
    try:
        dns.set("proxy.example.com", "A", ["192.0.2.10"])
        other.set("proxy.example.com", "A", ["192.0.2.20"])
        app = make_app(dns_config(dns, [{"ALLOW": "proxy.example.com", "DENY": "all"}]))
        assert status(app, "192.0.2.10") == 200
        old = app.extensions["flask_allow"].shared["flask_allow.dns"]
        app.config["ALLOW_DNS_PORT"] = other.port
        app.extensions["flask_allow"].extension.reload(app)
        assert status(app, "192.0.2.20") == 200
        assert status(app, "192.0.2.10") == 403
        assert not old.refresher.names  # the old rules let go of it
        app.config["ALLOW_DNS_TIMEOUT"] = "soon"
        with pytest.raises(ConfigError, match="ALLOW_DNS_TIMEOUT"):
            app.extensions["flask_allow"].extension.reload(app)
        assert status(app, "192.0.2.20") == 200  # a failed reload keeps the running rules
    finally:
        other.stop()

"""Forward-confirmed reverse DNS (``*.example.com``, ``ptr:NAME``) against a real DNS server on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from conftest import MakeApp, status
from dns_server import DNSServer, check, dns_config, service_of, wait_for

from flask_allow import Client

DENIED = 403


def host(dns: DNSServer, address: str, name: str, forward: str | None = None, ttl: int = 300) -> None:
    """Give ``address`` the PTR ``name``, and ``name`` the A/AAAA record ``forward`` (default: the address)."""
    dns.set_ptr(address, [name], ttl=ttl)
    forward = address if forward is None else forward
    dns.set(name, "AAAA" if ":" in forward else "A", [forward], ttl=ttl)


def only(rule: str) -> list[dict[str, str]]:
    return [{"ALLOW": rule, "DENY": "all"}]


# -- the check itself -----------------------------------------------------------------------


def test_a_confirmed_ptr_name_matches(dns: DNSServer, make_app: MakeApp) -> None:
    host(dns, "192.0.2.20", "crawl-1.googlebot.example.com")
    app = make_app(dns_config(dns, only("*.example.com")))
    assert status(app, "192.0.2.20") == 200
    assert check(app, "192.0.2.20").reason == (
        "allowed by ADDRESS_RESTRICTION[0].ALLOW '*.example.com' "
        "(PTR crawl-1.googlebot.example.com, A 192.0.2.20, ttl 300)"
    )
    assert dns.count("20.2.0.192.in-addr.arpa", "PTR") == 1


def test_a_ptr_alone_never_matches(dns: DNSServer, make_app: MakeApp) -> None:
    dns.set_ptr("192.0.2.21", ["liar.example.com"])  # no forward record at all
    host(dns, "192.0.2.22", "elsewhere.example.com", forward="192.0.2.99")  # forward points elsewhere
    dns.set_ptr("192.0.2.23", ["aaaa-only.example.com"])
    dns.set("aaaa-only.example.com", "AAAA", ["::ffff:192.0.2.23"])  # an IPv4 client is confirmed by A only
    app = make_app(dns_config(dns, only("*.example.com")))
    for address in ("192.0.2.21", "192.0.2.22", "192.0.2.23"):
        assert status(app, address) == DENIED, address
    assert dns.count("liar.example.com", "A") == 1


def test_a_ptr_outside_the_domain_does_not_match(dns: DNSServer, make_app: MakeApp) -> None:
    for address, name in [
        ("192.0.2.30", "host.example.org"),
        ("192.0.2.31", "evil-example.com"),
        ("192.0.2.32", "example.com.evil.org"),
        ("192.0.2.33", "notexample.com"),
        ("192.0.2.34", "evil\\.example.com"),  # one label holding a dot, under "com"
    ]:
        host(dns, address, name)
    app = make_app(dns_config(dns, only("*.example.com")))
    for address in ("192.0.2.30", "192.0.2.31", "192.0.2.32", "192.0.2.33", "192.0.2.34"):
        assert status(app, address) == DENIED, address
    assert dns.count(rdtype="A") == 0  # names outside the domain are never even confirmed


def test_the_wildcard_matches_the_domain_and_names_under_it(dns: DNSServer, make_app: MakeApp) -> None:
    host(dns, "192.0.2.40", "example.com")
    host(dns, "192.0.2.41", "www.example.com")
    host(dns, "192.0.2.42", "a.b.c.example.com")
    host(dns, "192.0.2.43", "CAPS.Example.COM")
    app = make_app(dns_config(dns, only("*.EXAMPLE.com.")))
    for address in ("192.0.2.40", "192.0.2.41", "192.0.2.42", "192.0.2.43"):
        assert status(app, address) == 200, address


def test_one_confirmed_name_among_several_ptr_names_matches(dns: DNSServer, make_app: MakeApp) -> None:
    dns.set_ptr("192.0.2.50", ["other.example.org", "fake.example.com", "real.example.com"])
    dns.set("fake.example.com", "A", ["192.0.2.99"])
    dns.set("real.example.com", "A", ["192.0.2.50"])
    app = make_app(dns_config(dns, only("*.example.com")))
    assert status(app, "192.0.2.50") == 200
    assert check(app, "192.0.2.50").reason.endswith("(PTR real.example.com, A 192.0.2.50, ttl 300)")


def test_ptr_prefix_matches_one_exact_name(dns: DNSServer, make_app: MakeApp) -> None:
    host(dns, "192.0.2.60", "crawl.example.com")
    host(dns, "192.0.2.61", "sub.crawl.example.com")
    host(dns, "192.0.2.62", "example.com")
    app = make_app(dns_config(dns, only("ptr:Crawl.Example.com")))
    assert status(app, "192.0.2.60") == 200
    assert status(app, "192.0.2.61") == DENIED
    assert status(app, "192.0.2.62") == DENIED


def test_ipv6_clients_use_ip6_arpa_and_aaaa(dns: DNSServer, make_app: MakeApp) -> None:
    host(dns, "2001:db8::70", "v6.example.com")
    app = make_app(dns_config(dns, only("*.example.com")))
    assert status(app, "2001:db8::70") == 200
    assert status(app, "fe80::70%eth0") == DENIED
    assert dns.count("0.7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", "PTR") == 1
    assert dns.count("v6.example.com", "AAAA") == 1 and dns.count("v6.example.com", "A") == 0


def test_ipv4_mapped_clients_use_in_addr_arpa(dns: DNSServer, make_app: MakeApp) -> None:
    host(dns, "192.0.2.80", "mapped.example.com")
    app = make_app(dns_config(dns, only("*.example.com")))
    assert status(app, "::ffff:192.0.2.80") == 200
    assert dns.count("80.2.0.192.in-addr.arpa", "PTR") == 1
    assert dns.count(rdtype="PTR") == 1


def test_deny_by_domain(dns: DNSServer, make_app: MakeApp) -> None:
    host(dns, "192.0.2.90", "bad.spam.example")
    app = make_app(dns_config(dns, [{"DENY": "*.spam.example"}]))
    assert status(app, "192.0.2.90") == DENIED
    assert status(app, "192.0.2.91") == 200  # NXDOMAIN for its PTR: the rule does not match


# -- caching ------------------------------------------------------------------------------


def test_answers_are_cached_by_ttl_and_negative_answers_too(dns: DNSServer, make_app: MakeApp) -> None:
    host(dns, "192.0.2.100", "cached.example.com", ttl=1)
    app = make_app(
        dns_config(dns, only("*.example.com"), ALLOW_DNS_MIN_TTL=1, ALLOW_DNS_NEGATIVE_TTL=30, ALLOW_DNS_TIMEOUT=0.5)
    )
    for _ in range(3):
        assert status(app, "192.0.2.100") == 200
        assert status(app, "192.0.2.101") == DENIED  # NXDOMAIN, kept for the negative TTL
    assert dns.count("100.2.0.192.in-addr.arpa") == 1
    assert dns.count("101.2.0.192.in-addr.arpa") == 1
    dns.set_ptr("192.0.2.100", ["moved.example.org"], ttl=1)
    assert wait_for(lambda: status(app, "192.0.2.100") == DENIED)  # after the TTL, asked again
    assert dns.count("100.2.0.192.in-addr.arpa") >= 2
    assert dns.count("101.2.0.192.in-addr.arpa") == 1


def test_concurrent_requests_from_one_new_address_share_one_lookup(dns: DNSServer, make_app: MakeApp) -> None:
    host(dns, "192.0.2.110", "busy.example.com")
    dns.delay = 0.3  # every request arrives while the first lookup is under way
    app = make_app(dns_config(dns, only("*.example.com")))
    barrier = threading.Barrier(12)
    results: list[int] = []

    def request() -> None:
        client = app.test_client()
        barrier.wait()
        results.append(client.get("/", environ_base={"REMOTE_ADDR": "192.0.2.110"}).status_code)

    threads = [threading.Thread(target=request) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 12
    assert dns.count("110.2.0.192.in-addr.arpa", "PTR") == 1
    assert dns.count("busy.example.com", "A") == 1


def test_the_per_client_cache_is_bounded(dns: DNSServer, make_app: MakeApp) -> None:
    for i in range(1, 13):
        host(dns, f"192.0.2.{i}", f"h{i}.example.com")
    app = make_app(dns_config(dns, only("*.example.com"), ALLOW_DNS_CACHE_SIZE=4))
    for i in range(1, 13):
        assert status(app, f"192.0.2.{i}") == 200
    service = service_of(app)
    assert len(service.pointers) <= 4 and len(service.confirmations) <= 4
    assert status(app, "192.0.2.12") == 200  # still cached
    assert dns.count("12.2.0.192.in-addr.arpa") == 1
    assert status(app, "192.0.2.1") == 200  # pushed out: looked up again
    assert dns.count("1.2.0.192.in-addr.arpa") == 2


# -- failures -------------------------------------------------------------------------------


def test_a_server_that_never_answers_is_decided_within_the_timeout(
    dns: DNSServer, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    host(dns, "192.0.2.120", "slow.example.com")
    dns.drop = True
    app = make_app(dns_config(dns, [{"DENY": "*.example.com"}], ALLOW_DNS_TIMEOUT=0.3))
    started = time.monotonic()
    assert status(app, "192.0.2.120") == 200  # the rule does not match ("ignore")
    assert time.monotonic() - started < 3.0  # a bound against hanging, not a speed test
    assert status(app, "192.0.2.120") == 200  # the failure is kept: no second wait
    assert dns.count("120.2.0.192.in-addr.arpa") == 1
    failures = [
        r.getMessage() for r in caplog.records if "120.2.0.192" in r.getMessage() or "192.0.2.120" in r.getMessage()
    ]
    assert len(failures) == 1 and "no answer within 0.3 s" in failures[0]


def test_on_error_deny_denies_when_the_reverse_lookup_fails(dns: DNSServer, make_app: MakeApp) -> None:
    host(dns, "192.0.2.130", "slow.example.com")
    dns.drop = True
    app = make_app(
        dns_config(
            dns,
            [{"DENY": "*.example.com"}, {"ALLOW": "all"}],
            ALLOW_DNS_TIMEOUT=0.3,
            ALLOW_DNS_ON_ERROR="deny",
            ALLOW_DNS_NEGATIVE_TTL=1,
        )
    )
    assert status(app, "192.0.2.130") == DENIED
    decision = check(app, "192.0.2.130")
    assert "reverse DNS of 192.0.2.130" in decision.reason and "ALLOW_DNS_ON_ERROR" in decision.reason
    dns.drop = False
    dns.set_ptr("192.0.2.130", ["fine.example.org"])
    assert wait_for(lambda: status(app, "192.0.2.130") == 200)


def test_on_error_deny_also_when_the_confirming_lookup_fails(dns: DNSServer, make_app: MakeApp) -> None:
    dns.set_ptr("192.0.2.140", ["broken.example.com"])
    dns.failing.add(("broken.example.com", "A"))  # the PTR answers; the forward lookup of its name fails
    rules = [{"DENY": "*.example.com"}]
    lenient = make_app(dns_config(dns, rules, ALLOW_DNS_TIMEOUT=0.3))
    strict = make_app(dns_config(dns, rules, ALLOW_DNS_ON_ERROR="deny", ALLOW_DNS_TIMEOUT=0.3), name="strict")
    assert status(lenient, "192.0.2.140") == 200
    assert status(strict, "192.0.2.140") == DENIED
    assert "broken.example.com" in check(strict, "192.0.2.140").reason
    assert "SERVFAIL" in check(strict, "192.0.2.140").reason


def test_hosts_file_names_an_address_and_confirms_it(dns: DNSServer, make_app: MakeApp, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.150 build.corp.example.com build\n")
    app = make_app(dns_config(dns, only("*.corp.example.com"), ALLOW_DNS_HOSTS_FILE=str(hosts)))
    assert status(app, "192.0.2.150") == 200
    assert dns.count() == 0


def test_explain_shows_the_reverse_answers(dns: DNSServer, make_app: MakeApp) -> None:
    host(dns, "192.0.2.160", "ok.example.com")
    host(dns, "192.0.2.161", "fake.example.com", forward="192.0.2.99")
    host(dns, "192.0.2.162", "else.example.org")
    app = make_app(dns_config(dns, [{"ALLOW": "*.example.com"}]))
    engine = app.extensions["flask_allow"].engine
    ((_, outcome, why),) = engine.explain(Client("192.0.2.160"))
    assert outcome == "match" and "PTR ok.example.com, A 192.0.2.160, ttl 300" in why
    ((_, outcome, why),) = engine.explain(Client("192.0.2.161"))
    assert outcome == "no match" and "fake.example.com has A 192.0.2.99" in why
    ((_, outcome, why),) = engine.explain(Client("192.0.2.162"))
    assert "no name under example.com" in why
    ((_, outcome, why),) = engine.explain(Client("192.0.2.163"))
    assert "NXDOMAIN" in why


def test_reverse_rules_are_never_cached_as_decisions(dns: DNSServer, make_app: MakeApp) -> None:
    host(dns, "192.0.2.170", "flip.example.com", ttl=1)
    app = make_app(dns_config(dns, only("*.example.com"), ALLOW_DNS_MIN_TTL=1))
    assert status(app, "192.0.2.170") == 200
    dns.set("flip.example.com", "A", ["192.0.2.99"], ttl=1)
    assert wait_for(lambda: status(app, "192.0.2.170") == DENIED)


def test_failures_are_logged_at_warning(dns: DNSServer, make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    dns.servfail = True
    app = make_app(dns_config(dns, [{"DENY": "*.example.com"}]))
    assert status(app, "192.0.2.180") == 200
    messages = [r for r in caplog.records if r.levelno == logging.WARNING and "192.0.2.180" in r.getMessage()]
    assert len(messages) == 1 and "SERVFAIL" in messages[0].getMessage()

"""Host-name rules (``proxy.example.com``, ``host:NAME``) against a real DNS server on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeApp, status
from dns_server import DNSServer, check, dns_config, service_of, wait_for
from flask import Flask

from flask_allow import Client, FlaskAllow
from flask_allow.dns import refresher as refresher_module

DENIED = 403


def dns_warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage()]


# -- addresses of a name ---------------------------------------------------------------


def test_every_a_and_aaaa_address_of_a_name_matches(dns: DNSServer, make_app: MakeApp) -> None:
    dns.set("proxy.example.com", "A", ["192.0.2.10", "192.0.2.11"])
    dns.set("proxy.example.com", "AAAA", ["2001:db8::10", "2001:db8::11"])
    app = make_app(dns_config(dns, [{"ALLOW": "proxy.example.com", "DENY": "all"}]))
    for address in ("192.0.2.10", "192.0.2.11", "2001:db8::10", "2001:db8::11", "::ffff:192.0.2.10"):
        assert status(app, address) == 200, address
    for address in ("192.0.2.12", "2001:db8::12", "::ffff:192.0.2.12", "10.0.0.1"):
        assert status(app, address) == DENIED, address


def test_reason_and_access_log_say_what_dns_answered(dns: DNSServer, make_app: MakeApp, tmp_path: Path) -> None:
    dns.set("proxy.example.com", "A", ["192.0.2.10"], ttl=300)
    dns.set("proxy.example.com", "AAAA", ["2001:db8::10"], ttl=600)
    log = tmp_path / "access.log"
    app = make_app(dns_config(dns, [{"ALLOW": "proxy.example.com", "DENY": "all"}], ACCESS_LOG=str(log)))
    assert check(app, "192.0.2.10").reason == (
        "allowed by ADDRESS_RESTRICTION[0].ALLOW 'proxy.example.com' (A 192.0.2.10, ttl 300)"
    )
    assert check(app, "2001:db8::10").reason == (
        "allowed by ADDRESS_RESTRICTION[0].ALLOW 'proxy.example.com' (AAAA 2001:db8::10, ttl 600)"
    )
    assert check(app, "192.0.2.99").reason == "denied by ADDRESS_RESTRICTION[0].DENY 'all'"
    assert status(app, "192.0.2.10") == 200
    text = log.read_text(encoding="utf-8")
    assert "allowed by ADDRESS_RESTRICTION[0].ALLOW 'proxy.example.com' (A 192.0.2.10, ttl 300)" in text


def test_host_prefix_and_case_and_final_dot(dns: DNSServer, make_app: MakeApp) -> None:
    dns.set("db.example.com", "A", ["192.0.2.20"])
    for rule in ("host:db.example.com", "DB.Example.COM.", "host:db.EXAMPLE.com."):
        app = make_app(dns_config(dns, [{"ALLOW": rule, "DENY": "all"}]))
        assert status(app, "192.0.2.20") == 200, rule
        assert status(app, "192.0.2.21") == DENIED, rule


def test_a_cname_is_followed_and_its_ttl_counts(dns: DNSServer, make_app: MakeApp) -> None:
    dns.set("www.example.com", "CNAME", ["lb.example.net."], ttl=120)
    dns.set("lb.example.net", "A", ["192.0.2.30"], ttl=3000)
    app = make_app(dns_config(dns, [{"DENY": "www.example.com"}]))
    assert status(app, "192.0.2.30") == DENIED
    assert check(app, "192.0.2.30").reason.endswith("'www.example.com' (A 192.0.2.30, ttl 120)")


def test_a_name_is_looked_up_at_start_up_not_per_request(dns: DNSServer, make_app: MakeApp) -> None:
    dns.set("proxy.example.com", "A", ["192.0.2.10"])
    app = make_app(dns_config(dns, [{"ALLOW": "proxy.example.com", "DENY": "all"}]))
    assert wait_for(lambda: dns.count("proxy.example.com") == 2)  # A and AAAA, started by init_app
    for address in ("192.0.2.10", "192.0.2.11", "192.0.2.12", "2001:db8::1") * 3:
        status(app, address)
    assert dns.count("proxy.example.com") == 2


# -- following changes ------------------------------------------------------------------


def test_a_changed_record_is_followed_after_its_ttl(dns: DNSServer, make_app: MakeApp) -> None:
    dns.set("proxy.example.com", "A", ["192.0.2.10"], ttl=1)
    app = make_app(dns_config(dns, [{"ALLOW": "proxy.example.com", "DENY": "all"}], ALLOW_DNS_MIN_TTL=1))
    assert status(app, "192.0.2.10") == 200
    assert status(app, "192.0.2.11") == DENIED  # this decision is now in the engine's cache
    dns.set("proxy.example.com", "A", ["192.0.2.11"], ttl=1)
    assert wait_for(lambda: status(app, "192.0.2.11") == 200)
    assert status(app, "192.0.2.10") == DENIED
    assert check(app, "192.0.2.11").reason.endswith("(A 192.0.2.11, ttl 1)")


def test_ttl_is_raised_to_the_configured_minimum(dns: DNSServer, make_app: MakeApp) -> None:
    dns.set("proxy.example.com", "A", ["192.0.2.10"], ttl=0)
    make_app(dns_config(dns, [{"ALLOW": "proxy.example.com"}], ALLOW_DNS_MIN_TTL=30))
    assert wait_for(lambda: dns.count("proxy.example.com", "A") == 1)
    time.sleep(1.0)  # a TTL of 0 honoured as such would have refreshed it by now
    assert dns.count("proxy.example.com", "A") == 1


def test_nxdomain_matches_nothing_is_logged_and_retried(
    dns: DNSServer, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = make_app(
        dns_config(dns, [{"ALLOW": "late.example.com", "DENY": "all"}], ALLOW_DNS_NEGATIVE_TTL=1, ALLOW_DNS_MIN_TTL=1)
    )
    assert status(app, "192.0.2.40") == DENIED
    assert wait_for(lambda: dns_warnings(caplog, "'late.example.com' does not resolve"))
    assert "NXDOMAIN" in dns_warnings(caplog, "late.example.com")[0]
    dns.set("late.example.com", "A", ["192.0.2.40"])
    assert wait_for(lambda: status(app, "192.0.2.40") == 200)
    assert any("resolves again" in r.getMessage() for r in caplog.records)


def test_a_server_down_at_start_up_is_retried_until_it_answers(
    dns: DNSServer, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    dns.set("proxy.example.com", "A", ["192.0.2.10"])
    dns.stop()
    app = make_app(
        dns_config(
            dns, [{"ALLOW": "proxy.example.com", "DENY": "all"}], ALLOW_DNS_TIMEOUT=0.3, ALLOW_DNS_NEGATIVE_TTL=1
        )
    )
    assert status(app, "192.0.2.10") == DENIED  # not a ConfigError, not a 500: it matches nothing
    assert dns_warnings(caplog, "'proxy.example.com' does not resolve")
    dns.start()
    assert wait_for(lambda: status(app, "192.0.2.10") == 200)


def test_a_server_that_never_answers_is_decided_within_the_timeout(dns: DNSServer, make_app: MakeApp) -> None:
    dns.set("blocked.example.com", "A", ["192.0.2.66"])
    dns.drop = True
    app = make_app(dns_config(dns, [{"DENY": "blocked.example.com"}], ALLOW_DNS_TIMEOUT=0.3))
    started = time.monotonic()
    assert status(app, "192.0.2.66") == 200  # the rule does not match (ALLOW_DNS_ON_ERROR "ignore")
    # A bound against hanging, not a speed test: dnspython alone would wait 5 s.
    assert time.monotonic() - started < 3.0
    assert dns.count("blocked.example.com") >= 1


def test_on_error_deny_denies_while_dns_fails(
    dns: DNSServer, make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    dns.set("blocked.example.com", "A", ["192.0.2.66"])
    dns.drop = True
    app = make_app(
        dns_config(
            dns,
            [{"DENY": "blocked.example.com"}, {"ALLOW": "10.0.0.0/8"}],
            ALLOW_DNS_TIMEOUT=0.3,
            ALLOW_DNS_ON_ERROR="deny",
            ALLOW_DNS_NEGATIVE_TTL=1,
        )
    )
    for _ in range(3):
        assert status(app, "10.1.2.3") == DENIED
    decision = check(app, "10.1.2.3")
    assert not decision.allowed and decision.rule is not None
    assert "blocked.example.com" in decision.reason and "ALLOW_DNS_ON_ERROR" in decision.reason
    assert not [r for r in caplog.records if r.exc_info]  # no traceback per request
    assert len(dns_warnings(caplog, "'blocked.example.com' does not resolve")) == 1  # once, not per request
    dns.drop = False
    assert wait_for(lambda: status(app, "10.1.2.3") == 200)
    assert status(app, "192.0.2.66") == DENIED


def test_ignore_lets_a_failing_name_match_nothing(dns: DNSServer, make_app: MakeApp) -> None:
    dns.servfail = True
    app = make_app(dns_config(dns, [{"DENY": "blocked.example.com"}], ALLOW_DNS_NEGATIVE_TTL=1))
    assert status(app, "192.0.2.66") == 200
    (entry,) = service_of(app).refresher.names.values()
    assert entry.state is not None and "answered SERVFAIL" in entry.state.describe()


# -- the hosts file and localhost --------------------------------------------------------------


def test_hosts_file_answers_before_dns(dns: DNSServer, make_app: MakeApp, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("# comment\n192.0.2.50  intranet.example.com db-1  # trailing\n2001:db8::50 db-1\n")
    dns.set("intranet.example.com", "A", ["192.0.2.99"])
    app = make_app(
        dns_config(
            dns,
            [{"ALLOW": ["intranet.example.com", "host:db-1"], "DENY": "all"}],
            ALLOW_DNS_HOSTS_FILE=str(hosts),
            ALLOW_DNS_MIN_TTL=1,
            ALLOW_DNS_MAX_TTL=1,
        )
    )
    assert status(app, "192.0.2.50") == 200
    assert status(app, "2001:db8::50") == 200
    assert status(app, "192.0.2.99") == DENIED  # DNS is not asked for a name the hosts file has
    assert dns.count() == 0
    assert check(app, "192.0.2.50").reason.endswith("'intranet.example.com' (hosts file, A 192.0.2.50)")
    hosts.write_text("192.0.2.51 intranet.example.com\n")
    assert wait_for(lambda: status(app, "192.0.2.51") == 200)
    assert status(app, "192.0.2.50") == DENIED
    assert wait_for(lambda: dns.count("db-1") >= 1)  # no longer in the file: asked in DNS


def test_localhost_is_the_keyword_never_dns(dns: DNSServer, make_app: MakeApp) -> None:
    dns.set("localhost", "A", ["192.0.2.1"])
    app = make_app(dns_config(dns, [{"ALLOW": "localhost", "DENY": "all"}]))
    assert status(app, "127.0.0.1") == 200
    assert status(app, "192.0.2.1") == DENIED
    assert dns.count() == 0


# -- lifecycle ---------------------------------------------------------------------------------


def test_reload_keeps_answers_and_close_stops_the_refresher(dns: DNSServer, make_app: MakeApp) -> None:
    dns.set("proxy.example.com", "A", ["192.0.2.10"])
    app = make_app(dns_config(dns, [{"ALLOW": "proxy.example.com", "DENY": "all"}]))
    assert status(app, "192.0.2.10") == 200
    service = service_of(app)
    assert service.refresher.running
    queries = dns.count()
    app.extensions["flask_allow"].extension.reload(app)
    assert service_of(app) is service and service.refresher.running
    assert status(app, "192.0.2.10") == 200
    assert dns.count() == queries  # the answer is still good: no new lookup
    app.config["ADDRESS_RESTRICTION"] = [{"ALLOW": "10.0.0.0/8"}]
    app.extensions["flask_allow"].extension.reload(app)
    assert wait_for(lambda: not service.refresher.running)
    assert not service.refresher.names


def test_closing_the_app_stops_the_refresher(dns: DNSServer, make_app: MakeApp) -> None:
    dns.set("proxy.example.com", "A", ["192.0.2.10"])
    app = make_app(dns_config(dns, [{"ALLOW": "proxy.example.com"}]))
    service = service_of(app)
    assert wait_for(lambda: service.refresher.running)
    app.extensions["flask_allow"].close()
    assert wait_for(lambda: not service.refresher.running)


def test_explain_shows_what_dns_answered(dns: DNSServer, make_app: MakeApp) -> None:
    dns.set("proxy.example.com", "A", ["192.0.2.10", "192.0.2.11"], ttl=300)
    app = make_app(dns_config(dns, [{"DENY": "missing.example.com"}, {"ALLOW": "proxy.example.com"}]))
    engine = app.extensions["flask_allow"].engine
    trace = engine.explain(Client("192.0.2.11"))
    assert [outcome for _, outcome, _ in trace] == ["no match", "match"]
    assert "NXDOMAIN" in trace[0][2]
    assert "A 192.0.2.11, ttl 300" in trace[1][2] and "192.0.2.10" in trace[1][2]
    trace = engine.explain(Client("192.0.2.12"))
    assert trace[1][1] == "no match" and "A 192.0.2.10, 192.0.2.11 (ttl 300)" in trace[1][2]


def test_two_apps_keep_their_own_dns(dns: DNSServer, make_app: MakeApp) -> None:
    other = DNSServer().start()
    try:
        dns.set("proxy.example.com", "A", ["192.0.2.10"])
        other.set("proxy.example.com", "A", ["192.0.2.20"])
        first = make_app(dns_config(dns, [{"ALLOW": "proxy.example.com", "DENY": "all"}]))
        second = make_app(dns_config(other, [{"ALLOW": "proxy.example.com", "DENY": "all"}]), name="second")
        assert status(first, "192.0.2.10") == 200 and status(first, "192.0.2.20") == DENIED
        assert status(second, "192.0.2.20") == 200 and status(second, "192.0.2.10") == DENIED
    finally:
        other.stop()


def test_a_fresh_extension_on_a_new_app_checks_without_request(dns: DNSServer) -> None:
    dns.set("proxy.example.com", "A", ["192.0.2.10"])
    app = Flask("standalone")
    app.config.update(dns_config(dns, [{"ALLOW": "proxy.example.com", "DENY": "all"}]))
    allow = FlaskAllow(app)
    try:
        assert allow.check("192.0.2.10").allowed
        assert not allow.check("192.0.2.11").allowed
    finally:
        app.extensions["flask_allow"].close()


def test_a_stuck_refresh_is_taken_over_and_its_late_answer_dropped(
    dns: DNSServer, make_app: MakeApp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A refresh whose thread never comes back (as one waiting for a lock held across a fork) must
    not freeze the name: another starts, and the stuck one's answer, if it ever ends, is dropped."""
    monkeypatch.setattr(refresher_module, "STUCK_EXTRA", 0.5)
    dns.set("proxy.example.com", "A", ["192.0.2.10"], ttl=1)
    app = make_app(
        dns_config(dns, [{"ALLOW": "proxy.example.com", "DENY": "all"}], ALLOW_DNS_MIN_TTL=1, ALLOW_DNS_TIMEOUT=0.3)
    )
    assert status(app, "192.0.2.10") == 200
    service = service_of(app)
    real, release, stuck = service.forward, threading.Event(), threading.Event()

    def forward(qname: Any) -> Any:  # stands in for a thread that cannot be made to hang for real here
        if stuck.is_set():
            return real(qname)
        stuck.set()
        answer = real(qname)  # 192.0.2.10, which is about to change
        release.wait(30)
        return answer

    monkeypatch.setattr(service, "forward", forward)
    assert wait_for(stuck.is_set)
    dns.set("proxy.example.com", "A", ["192.0.2.11"], ttl=1)
    assert wait_for(lambda: status(app, "192.0.2.11") == 200)  # after 2 x 0.3 s + 0.5 s, another refresh
    assert any("'proxy.example.com' has not ended in" in r.getMessage() for r in caplog.records)
    release.set()  # the stuck one ends with its old answer: dropped
    assert wait_for(lambda: not any(t.name == "flask_allow DNS proxy.example.com" for t in threading.enumerate()))
    assert status(app, "192.0.2.10") == DENIED and status(app, "192.0.2.11") == 200

"""Errors handled without failing a request reach ``flask_allow_error``; plugins check their own config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeApp, get, status
from dns_server import DNSServer, dns_config, wait_for
from flask import Config, Flask

from flask_allow import Client, ConfigError, Matcher, hookimpl


class Errors:
    """A plugin that records every reported error."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []

    @hookimpl
    def flask_allow_error(self, kind: str, message: str, location: str | None) -> None:
        self.seen.append((kind, message, location))

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.seen]


class Broken(Matcher):
    """``broken:``: a dynamic rule that always raises."""

    prefix = "broken"

    def matches(self, client: Client) -> bool:
        raise RuntimeError("the rule's back end is down")


class BrokenPlugin:
    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [Broken]


# -- client_address ------------------------------------------------------------------------------


@pytest.mark.parametrize("rules", [[{"DENY": "10.0.0.0/8"}], [{"DENY": "broken:"}]], ids=["static", "dynamic"])
def test_an_unreadable_client_address_is_reported(make_app: MakeApp, rules: list[Any]) -> None:
    errors = Errors()
    app = make_app({"ADDRESS_RESTRICTION": rules}, plugins=[errors, BrokenPlugin()])
    assert status(app, "not-an-address") == 403
    [(kind, message, location)] = errors.seen
    assert kind == "client_address" and "'not-an-address' is not an IP address" in message and location is None


def test_an_unreadable_proxy_header_is_reported(make_app: MakeApp) -> None:
    errors = Errors()
    app = make_app(
        {"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ALLOW_TRUSTED_PROXIES": ["127.0.0.1"]}, plugins=[errors]
    )
    assert get(app, "127.0.0.1", headers={"X-Forwarded-For": "garbage"}).status_code == 403
    assert get(app, "127.0.0.1", headers={"X-Forwarded-For": "192.0.2.1"}).status_code == 200
    assert errors.kinds() == ["client_address"]
    assert "X-Forwarded-For unreadable" in errors.seen[0][1]


def test_a_failing_client_address_hook_is_reported(make_app: MakeApp) -> None:
    class Failing:
        @hookimpl
        def flask_allow_client_address(self) -> str:
            raise LookupError("no header")

    errors = Errors()
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}]}, plugins=[errors, Failing()])
    assert status(app, "192.0.2.1") == 403
    assert errors.kinds() == ["client_address"]


# -- matcher ---------------------------------------------------------------------------------------


def test_a_failing_rule_is_reported_with_its_location(make_app: MakeApp) -> None:
    errors = Errors()
    app = make_app(
        {"ADDRESS_RESTRICTION": [{"ALLOW": "192.0.2.0/24"}, {"ALLOW": "broken:"}], "ALLOW_DEFAULT": "allow"},
        plugins=[errors, BrokenPlugin()],
    )
    assert status(app, "192.0.2.1") == 200  # decided before the broken rule: nothing failed
    assert status(app, "198.51.100.1") == 403  # fail closed, even for an ALLOW rule
    [(kind, message, location)] = errors.seen
    assert kind == "matcher" and location == "ADDRESS_RESTRICTION[1].ALLOW"
    assert "the rule's back end is down" in message


def test_a_failing_route_rule_is_reported(make_app: MakeApp) -> None:
    errors = Errors()
    app = make_app({}, plugins=[errors, BrokenPlugin()])
    allow = app.extensions["flask_allow"].extension
    allow.restrict([{"ALLOW": "broken:"}])(app.view_functions["other"])
    assert status(app, "192.0.2.1", "/anything") == 403
    assert status(app, "192.0.2.1") == 200
    where = "view:other[0].ALLOW"  # named for its endpoint
    assert [(kind, location) for kind, _, location in errors.seen] == [("matcher", where)]


def test_decisions_without_errors_report_nothing(make_app: MakeApp) -> None:
    errors = Errors()
    app = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "192.0.2.0/24"}, {"DENY": "all"}]}, plugins=[errors])
    assert status(app, "192.0.2.1") == 200 and status(app, "10.0.0.1") == 403 and status(app, "::1") == 403
    assert errors.seen == []


# -- dns -----------------------------------------------------------------------------------------


def test_a_failed_forward_lookup_is_reported(dns: DNSServer, make_app: MakeApp) -> None:
    dns.servfail = True
    errors = Errors()
    app = make_app(dns_config(dns, [{"DENY": "blocked.example.com"}], ALLOW_DNS_NEGATIVE_TTL=1), plugins=[errors])
    assert wait_for(lambda: "dns" in errors.kinds())
    _, message, location = next(e for e in errors.seen if e[0] == "dns")
    assert "blocked.example.com" in message and "SERVFAIL" in message and location is None
    assert status(app, "192.0.2.66") == 200  # ALLOW_DNS_ON_ERROR "ignore": the name matches nothing


def test_a_failed_reverse_lookup_is_reported_and_a_reload_keeps_reporting(dns: DNSServer, make_app: MakeApp) -> None:
    dns.servfail = True
    errors = Errors()
    app = make_app(
        dns_config(dns, [{"ALLOW": "ptr:crawl.example.com"}, {"DENY": "all"}], ALLOW_DNS_ON_ERROR="deny"),
        plugins=[errors],
    )
    assert status(app, "192.0.2.7") == 403
    assert "dns" in errors.kinds() and "matcher" in errors.kinds()
    app.extensions["flask_allow"].extension.reload(app)  # the DNS service is kept; its errors still count
    errors.seen.clear()
    assert status(app, "192.0.2.8") == 403
    assert "dns" in errors.kinds()


# -- flask_allow_check_config --------------------------------------------------------------------


class Checked:
    """A plugin with a config key of its own, ``GREETING``: a string."""

    def __init__(self) -> None:
        self.checked: list[Flask] = []

    @hookimpl
    def flask_allow_check_config(self, config: Config, app: Flask) -> None:
        self.checked.append(app)
        value = config.get("GREETING", "hello")
        if not isinstance(value, str):
            raise ConfigError("must be a string", "GREETING", value)


def test_a_plugin_checks_its_config_at_start_up_with_the_other_errors(make_app: MakeApp) -> None:
    with pytest.raises(ConfigError) as info:
        make_app({"GREETING": 42, "ALLOW_DEFAULT": "maybe"}, plugins=[Checked()])
    assert {error.location for error in info.value.errors} == {"GREETING", "ALLOW_DEFAULT"}


def test_a_reload_with_a_bad_plugin_key_keeps_the_running_rules(make_app: MakeApp) -> None:
    checked = Checked()
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}]}, plugins=[checked])
    assert checked.checked == [app]
    state = app.extensions["flask_allow"]
    app.config.update(ADDRESS_RESTRICTION=[{"DENY": "192.0.2.0/24"}], GREETING=["not", "a", "string"])
    with pytest.raises(ConfigError, match="GREETING: must be a string"):
        state.extension.reload(app)
    assert app.extensions["flask_allow"] is state and status(app, "10.0.0.1") == 403
    assert len(checked.checked) == 2


def test_a_plugin_that_fails_to_check_is_a_config_error_naming_it(make_app: MakeApp) -> None:
    class Buggy:
        @hookimpl
        def flask_allow_check_config(self) -> None:
            raise KeyError("oops")

    with pytest.raises(ConfigError, match=r"Buggy.*failed to check the configuration: KeyError"):
        make_app({}, plugins=[Buggy()])


# -- what a list rule says about its list ----------------------------------------------------------


def test_a_file_list_says_how_many_entries_and_when_it_changed(make_app: MakeApp, tmp_path: Path) -> None:
    listed = tmp_path / "blocklist.txt"
    listed.write_text("# a published list\n192.0.2.0/24\n198.51.100.7\n2001:db8::/32\n", encoding="utf-8")
    os.utime(listed, (1_700_000_000, 1_700_000_000))
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": f"file:{listed}"}, {"DENY": "10.0.0.0/8"}]})
    listed_rule, network_rule = app.extensions["flask_allow"].engine.rules
    assert listed_rule.matcher.entry_count() == 3
    assert listed_rule.matcher.updated_at() == 1_700_000_000
    assert network_rule.matcher.entry_count() is None and network_rule.matcher.updated_at() is None

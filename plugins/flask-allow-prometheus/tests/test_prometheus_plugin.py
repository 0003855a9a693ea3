"""Tests of flask-allow-prometheus, installed (the README's test command installs it) and found by its entry point."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask_allow_prometheus
import pytest
from flask import Flask
from flask_allow_prometheus import ENDPOINT, EXTENSION_KEY
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from flask_allow import Client, ConfigError, FlaskAllow, Matcher, hookimpl

ROOT = Path(__file__).resolve().parent.parent
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    """Apps made by ``make``, closed at teardown."""
    made: list[Flask] = []
    yield made
    for app in made:
        state = app.extensions.get("flask_allow")
        if state is not None:
            state.close()


def make(apps: list[Flask], config: dict[str, Any], plugins: tuple[object, ...] = ()) -> Flask:
    app = Flask("metered", root_path=str(ROOT))
    app.config.update(config)

    @app.route("/")
    def index() -> str:
        return "ok"

    @app.route("/admin")
    def admin() -> str:
        return "admin"

    apps.append(app)
    FlaskAllow(app, plugins=plugins)
    return app


def get(app: Flask, address: str, path: str = "/", **kwargs: Any) -> Any:
    return app.test_client().get(path, environ_base={"REMOTE_ADDR": address}, **kwargs)


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(app: Flask, address: str = "127.0.0.1") -> Samples:
    response = get(app, address, "/metrics")
    assert response.status_code == 200, response.status_code
    return parse(response.get_data(as_text=True))


def decisions(samples: Samples) -> dict[tuple[str, str, str], float]:
    """``flask_allow_decisions_total`` by ``(action, rule, enforced)``."""
    return {
        (labels["action"], labels["rule"], labels["enforced"]): value
        for (name, pairs), value in samples.items()
        if name == "flask_allow_decisions_total"
        for labels in [dict(pairs)]
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


RULES = [{"ALLOW": "127.0.0.1"}, {"DENY": "10.0.0.0/8"}]


def test_the_plugin_is_found_by_its_entry_point(apps: list[Flask]) -> None:
    app = make(apps, {"ADDRESS_RESTRICTION": RULES, "ALLOW_METRICS_PATH": "/metrics"})
    pm = app.extensions["flask_allow"].pm
    assert pm.get_plugin("prometheus") is flask_allow_prometheus
    assert pm.flask_allow_origins["prometheus"].startswith("entry point (flask-allow-prometheus ")
    pm.check_pending()


def test_decisions_are_counted_by_action_rule_and_enforced(apps: list[Flask]) -> None:
    app = make(apps, {"ADDRESS_RESTRICTION": RULES, "ALLOW_METRICS_PATH": "/metrics"})
    for address in ("10.0.0.1", "10.0.0.2", "192.0.2.1", "2001:db8::1", "::ffff:10.9.9.9"):
        get(app, address)
    assert get(app, "10.0.0.3", "/metrics").status_code == 403  # the rules guard the metrics too
    found = decisions(scrape(app))
    assert found == {
        ("allow", "ADDRESS_RESTRICTION[0].ALLOW", "true"): 1.0,  # this scrape
        ("deny", "ADDRESS_RESTRICTION[1].DENY", "true"): 4.0,
        ("default", "default", "true"): 2.0,
    }


def test_report_only_denials_are_counted_apart(apps: list[Flask]) -> None:
    app = make(apps, {"ADDRESS_RESTRICTION": RULES, "ALLOW_METRICS_PATH": "/metrics", "ALLOW_REPORT_ONLY": True})
    assert get(app, "10.0.0.1").status_code == 200  # let through: only reported
    assert get(app, "192.0.2.1").status_code == 200
    found = decisions(scrape(app))
    assert found[("deny", "ADDRESS_RESTRICTION[1].DENY", "false")] == 1.0
    assert ("deny", "ADDRESS_RESTRICTION[1].DENY", "true") not in found
    assert found[("default", "default", "true")] == 1.0


def test_a_default_deny_in_report_only_mode(apps: list[Flask]) -> None:
    app = make(
        apps,
        {
            "ADDRESS_RESTRICTION": [{"ALLOW": "127.0.0.1"}],
            "ALLOW_DEFAULT": "deny",
            "ALLOW_REPORT_ONLY": True,
            "ALLOW_METRICS_PATH": "/metrics",
        },
    )
    get(app, "192.0.2.1")
    assert decisions(scrape(app))[("default", "default", "false")] == 1.0


class Broken(Matcher):
    prefix = "broken"

    def matches(self, client: Client) -> bool:
        raise RuntimeError("down")


class BrokenPlugin:
    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [Broken]


def test_errors_are_counted_by_kind(apps: list[Flask]) -> None:
    app = make(
        apps,
        {"ADDRESS_RESTRICTION": [{"ALLOW": "127.0.0.1"}, {"ALLOW": "broken:"}], "ALLOW_METRICS_PATH": "/metrics"},
        plugins=(BrokenPlugin(),),
    )
    get(app, "not-an-address")
    get(app, "192.0.2.1")
    get(app, "192.0.2.2")
    samples = scrape(app)
    assert value(samples, "flask_allow_errors_total", kind="client_address") == 1.0
    assert value(samples, "flask_allow_errors_total", kind="matcher") == 2.0
    assert value(samples, "flask_allow_errors_total", kind="dns") == 0.0  # known kinds are there from the start
    found = decisions(samples)
    assert found[("deny", "error", "true")] == 1.0
    assert found[("deny", "ADDRESS_RESTRICTION[1].ALLOW", "true")] == 2.0  # a failing ALLOW rule denies


def test_a_refused_list_is_counted(apps: list[Flask], tmp_path: Path) -> None:
    listed = tmp_path / "blocklist.txt"
    listed.write_text("192.0.2.0/24\n", encoding="utf-8")
    app = make(
        apps,
        {
            "ADDRESS_RESTRICTION": [{"ALLOW": "127.0.0.1"}, {"DENY": f"file:{listed}"}],
            "ALLOW_METRICS_PATH": "/metrics",
            "ALLOW_WATCH_INTERVAL": 0.05,
        },
    )
    new = listed.with_name("new.txt")
    new.write_text("192.0.2.0/33\n", encoding="utf-8")
    os.replace(new, listed)
    deadline = time.monotonic() + 10
    while value(scrape(app), "flask_allow_errors_total", kind="source_refused") != 1.0:
        assert time.monotonic() < deadline, "the refused list was not counted"
        time.sleep(0.05)


def test_the_gauges_follow_the_rules_and_the_lists(apps: list[Flask], tmp_path: Path) -> None:
    listed = tmp_path / "blocklist.txt"
    listed.write_text("192.0.2.0/24\n198.51.100.7\n2001:db8::/32\n", encoding="utf-8")
    os.utime(listed, (1_700_000_000, 1_700_000_000))
    proxies = tmp_path / "proxies.txt"
    proxies.write_text("127.0.0.1\n", encoding="utf-8")
    app = make(
        apps,
        {
            "ADDRESS_RESTRICTION": [{"ALLOW": "127.0.0.1", "DENY": f"file:{listed}"}],
            "ALLOW_TRUSTED_PROXIES": [f"file:{proxies}"],
            "ALLOW_METRICS_PATH": "/metrics",
        },
    )
    samples = scrape(app)
    assert value(samples, "flask_allow_rules") == 2.0
    assert value(samples, "flask_allow_list_entries", rule="ADDRESS_RESTRICTION[0].DENY") == 3.0
    assert value(samples, "flask_allow_list_updated_timestamp_seconds", rule="ADDRESS_RESTRICTION[0].DENY") == (
        1_700_000_000
    )
    assert value(samples, "flask_allow_list_entries", rule="ALLOW_TRUSTED_PROXIES[0]") == 1.0
    assert value(samples, "flask_allow_list_entries", rule="ADDRESS_RESTRICTION[0].ALLOW") is None  # not a list

    app.config["ADDRESS_RESTRICTION"] = [{"ALLOW": "127.0.0.1"}, {"DENY": "10.0.0.0/8"}, {"DENY": "all"}]
    app.extensions["flask_allow"].extension.reload(app)
    samples = scrape(app)
    assert value(samples, "flask_allow_rules") == 3.0
    assert value(samples, "flask_allow_list_entries", rule="ADDRESS_RESTRICTION[0].DENY") is None  # gone with it
    assert value(samples, "flask_allow_list_entries", rule="ALLOW_TRUSTED_PROXIES[0]") == 1.0


def test_route_rules_and_exempt_views_have_their_own_labels(apps: list[Flask]) -> None:
    allow = FlaskAllow()
    app = Flask("routes")
    app.config.update(ADDRESS_RESTRICTION=RULES, ALLOW_METRICS_PATH="/metrics")

    @app.route("/admin")
    @allow.restrict([{"ALLOW": "192.0.2.0/24"}])
    def admin() -> str:
        return "admin"

    @app.route("/health")
    @allow.exempt
    def health() -> str:
        return "ok"

    apps.append(app)
    allow.init_app(app)
    get(app, "192.0.2.1", "/admin")
    get(app, "198.51.100.1", "/admin")
    get(app, "10.0.0.1", "/health")
    found = decisions(scrape(app))
    label = "view:admin"  # the endpoint
    assert found[("allow", f"{label}[0].ALLOW", "true")] == 1.0
    assert found[("default", f"{label}.default", "true")] == 1.0
    assert found[("allow", "exempt", "false")] == 1.0
    assert value(scrape(app), "flask_allow_rules") == 3.0


def test_the_metrics_view_can_be_restricted_further(apps: list[Flask]) -> None:
    app = make(apps, {"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ALLOW_METRICS_PATH": "/internal/metrics"})
    allow = app.extensions["flask_allow"].extension
    assert get(app, "192.0.2.1", "/internal/metrics").status_code == 200  # the rules let the world in
    allow.restrict([{"ALLOW": "127.0.0.1"}])(app.view_functions[ENDPOINT])
    assert get(app, "192.0.2.1", "/internal/metrics").status_code == 403
    assert get(app, "127.0.0.1", "/internal/metrics").status_code == 200


def test_openmetrics_when_the_scraper_asks_for_it(apps: list[Flask]) -> None:
    app = make(apps, {"ADDRESS_RESTRICTION": RULES, "ALLOW_METRICS_PATH": "/metrics"})
    response = get(app, "127.0.0.1", "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).endswith("# EOF\n")


def test_a_registry_the_app_chooses(apps: list[Flask]) -> None:
    registry = CollectorRegistry()
    app = make(apps, {"ADDRESS_RESTRICTION": RULES, "ALLOW_METRICS_REGISTRY": registry})
    assert ENDPOINT not in app.view_functions  # no path: the app exports the registry itself
    get(app, "10.0.0.1")
    labels = {"action": "deny", "rule": "ADDRESS_RESTRICTION[1].DENY", "enforced": "true"}
    assert registry.get_sample_value("flask_allow_decisions_total", labels) == 1.0


def test_the_default_registry_shared_by_two_apps(apps: list[Flask]) -> None:
    labels = {"action": "deny", "rule": "ADDRESS_RESTRICTION[1].DENY", "enforced": "true"}
    before = REGISTRY.get_sample_value("flask_allow_decisions_total", labels) or 0.0
    first = make(apps, {"ADDRESS_RESTRICTION": RULES, "ALLOW_METRICS_REGISTRY": "default"})
    second = make(apps, {"ADDRESS_RESTRICTION": RULES, "ALLOW_METRICS_REGISTRY": "default"})  # no duplicate
    get(first, "10.0.0.1")
    get(second, "10.0.0.2")
    assert REGISTRY.get_sample_value("flask_allow_decisions_total", labels) == before + 2


def test_the_path_serves_the_default_registry_when_chosen(apps: list[Flask]) -> None:
    app = make(
        apps, {"ADDRESS_RESTRICTION": RULES, "ALLOW_METRICS_PATH": "/metrics", "ALLOW_METRICS_REGISTRY": "default"}
    )
    samples = scrape(app)
    assert any(name.startswith("python_info") for name, _ in samples)  # the default registry's own collectors


def test_an_app_without_the_keys_counts_nothing(apps: list[Flask]) -> None:
    app = make(apps, {"ADDRESS_RESTRICTION": RULES})
    assert EXTENSION_KEY not in app.extensions and ENDPOINT not in app.view_functions
    assert get(app, "10.0.0.1").status_code == 403


def test_the_plugin_can_be_disabled(apps: list[Flask]) -> None:
    app = make(
        apps, {"ADDRESS_RESTRICTION": RULES, "ALLOW_METRICS_PATH": "/metrics", "ALLOW_DISABLE_PLUGINS": ["prometheus"]}
    )
    assert EXTENSION_KEY not in app.extensions and ENDPOINT not in app.view_functions


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"ALLOW_METRICS_PATH": "metrics"}, "ALLOW_METRICS_PATH: must be a URL path"),
        ({"ALLOW_METRICS_PATH": 8000}, "ALLOW_METRICS_PATH: must be a URL path"),
        ({"ALLOW_METRICS_REGISTRY": "mine"}, "ALLOW_METRICS_REGISTRY: must be 'default'"),
    ],
)
def test_bad_keys_fail_at_start_up(apps: list[Flask], config: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        make(apps, {"ADDRESS_RESTRICTION": RULES, **config})
    apps.clear()


def test_both_bad_keys_are_named_at_once(apps: list[Flask]) -> None:
    with pytest.raises(ConfigError) as info:
        make(apps, {"ALLOW_METRICS_PATH": "x", "ALLOW_METRICS_REGISTRY": 1, "ALLOW_DEFAULT": "perhaps"})
    apps.clear()
    assert {e.location for e in info.value.errors} == {"ALLOW_METRICS_PATH", "ALLOW_METRICS_REGISTRY", "ALLOW_DEFAULT"}


def test_a_path_set_by_a_reload_is_served_after_a_restart(apps: list[Flask], caplog: pytest.LogCaptureFixture) -> None:
    app = make(apps, {"ADDRESS_RESTRICTION": RULES, "ALLOW_METRICS_REGISTRY": CollectorRegistry()})
    get(app, "127.0.0.1")  # the app has served: Flask takes no new route
    app.config["ALLOW_METRICS_PATH"] = "/metrics"
    app.extensions["flask_allow"].extension.reload(app)
    assert ENDPOINT not in app.view_functions
    assert any("served after a restart" in r.getMessage() for r in caplog.records)


def test_a_reload_that_turns_the_metrics_off(apps: list[Flask]) -> None:
    app = make(apps, {"ADDRESS_RESTRICTION": RULES, "ALLOW_METRICS_PATH": "/metrics"})
    del app.config["ALLOW_METRICS_PATH"]
    app.extensions["flask_allow"].extension.reload(app)
    assert EXTENSION_KEY not in app.extensions
    assert get(app, "127.0.0.1", "/metrics").status_code == 404


def test_bans_in_force_are_a_gauge_where_bans_are_in_use(apps: list[Flask]) -> None:
    app = make(apps, {"ALLOW_METRICS_PATH": "/metrics", "ALLOW_BANS": True, "ALLOW_BAN_STORE": "memory"})
    allow = app.extensions["flask_allow"].extension
    assert value(scrape(app), "flask_allow_bans") == 0
    allow.ban("192.0.2.7", reason="tests")
    allow.ban("2001:db8::/64")
    assert value(scrape(app), "flask_allow_bans") == 2
    allow.unban("192.0.2.7")
    assert value(scrape(app), "flask_allow_bans") == 1
    plain = make(apps, {"ALLOW_METRICS_PATH": "/metrics"})
    assert value(scrape(plain), "flask_allow_bans") is None  # no bans in use: no such series

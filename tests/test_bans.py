"""Bans in one process: the API, the implied rule, the stores, expiry, outages, the CLI and the settings."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeApp, flask_allow_command, get, status

from flask_allow import Ban, ConfigError, FlaskAllow, hookimpl
from flask_allow.bans import BanService, BanSettings, StoreError, store_from_string
from flask_allow.bans.stores.memory import MemoryStore
from flask_allow.builtins.bans import SHARED_KEY


def missing(app: Any) -> Any:
    """Answer ``/missing`` with a 404 (the test app answers every other path with "ok")."""
    app.add_url_rule("/missing", "missing", lambda: ("no such page", 404))
    return app


BANS: dict[str, Any] = {"ALLOW_BANS": True, "ALLOW_BAN_STORE": "memory", "ADDRESS_RESTRICTION": [{"ALLOW": "all"}]}


def test_a_ban_by_hand_is_in_force_at_once_and_says_why(make_app: MakeApp) -> None:
    app = make_app(BANS)
    allow: FlaskAllow = app.extensions["flask_allow"].extension
    with app.app_context():
        made = allow.ban("192.0.2.0/24", ttl=timedelta(minutes=5), reason="scanner")
        assert isinstance(made, Ban) and made.network == ipaddress.ip_network("192.0.2.0/24")
        assert made.until is not None and (made.until - made.since) == timedelta(minutes=5)
        assert made.since.tzinfo is not None and made.source == "api"
        assert status(app, "192.0.2.77") == 403 and status(app, "192.0.3.1") == 200
        reason = allow.check("192.0.2.77").reason
        assert "banned 192.0.2.0/24 until" in reason and "(scanner)" in reason
        assert [b.network for b in allow.bans()] == [made.network]
        assert allow.unban("192.0.2.0/24") is True and allow.unban("192.0.2.0/24") is False
        assert status(app, "192.0.2.77") == 200 and allow.bans() == []
        forever = allow.ban("2001:db8::1", ttl=0)
        assert forever.until is None and forever.network.prefixlen == 128
        assert status(app, "2001:db8::1") == 403 and status(app, "::ffff:192.0.2.77") == 200
        with pytest.raises(ValueError, match="exempt"):
            allow.ban("127.0.0.1")
        with pytest.raises(ValueError):
            allow.ban("not an address")


def test_ban_many_from_the_app(make_app: MakeApp) -> None:
    app = make_app(BANS)
    allow: FlaskAllow = app.extensions["flask_allow"].extension
    with app.app_context():
        made = allow.ban_many(
            ["192.0.2.0/24", ipaddress.ip_address("2001:db8::7")], ttl=timedelta(hours=1), reason="list"
        )
        assert [str(b.network) for b in made] == ["192.0.2.0/24", "2001:db8::7/128"]
        assert all(b.reason == "list" and b.until is not None for b in made)
        assert status(app, "192.0.2.1") == 403 and status(app, "2001:db8::7") == 403
        with pytest.raises(ValueError, match="exempt"):
            allow.ban_many(["198.51.100.1", "127.0.0.1"])
        assert status(app, "198.51.100.1") == 200 and len(allow.bans()) == 2


def test_the_implied_rule_comes_first_and_keeps_the_fast_path(make_app: MakeApp) -> None:
    app = make_app({**BANS, "ADDRESS_RESTRICTION": [{"ALLOW": "10.0.0.0/8"}, {"DENY": "all"}]})
    state = app.extensions["flask_allow"]
    assert state.engine.rules[0].location == "ALLOW_BANS (implied)"
    assert state.engine.static and state._short_way is state.engine
    state.bans.ban("10.1.2.3", 60)
    assert status(app, "10.1.2.3") == 403 and status(app, "10.1.2.4") == 200 and status(app, "garbage") == 403


def test_an_allow_before_banned_keeps_an_office_in(make_app: MakeApp) -> None:
    rules = [{"ALLOW": "10.0.0.0/8"}, {"DENY": "banned"}, {"ALLOW": "all"}]
    app = make_app({**BANS, "ADDRESS_RESTRICTION": rules})
    state = app.extensions["flask_allow"]
    assert len(state.engine.rules) == 3 and state.engine.static
    state.bans.ban("0.0.0.0/0", 60)
    assert status(app, "10.9.9.9") == 200 and status(app, "192.0.2.1") == 403


def test_banned_ahead_of_dynamic_rules_is_never_cached(make_app: MakeApp, dns: Any) -> None:
    dns.set("office.example.com", "A", ["192.0.2.10"])
    app = make_app(
        {
            **BANS,
            "ADDRESS_RESTRICTION": [{"ALLOW": "office.example.com"}, {"DENY": "all"}],
            "ALLOW_DNS_NAMESERVERS": ["127.0.0.1"],
            "ALLOW_DNS_PORT": dns.port,
            "ALLOW_DNS_HOSTS_FILE": None,
        }
    )
    state = app.extensions["flask_allow"]
    assert status(app, "192.0.2.10") == 200
    state.bans.ban("192.0.2.10", 60)
    assert status(app, "192.0.2.10") == 403
    state.bans.unban("192.0.2.10")
    assert status(app, "192.0.2.10") == 200


def test_autoban_counts_statuses_and_strikes_and_grows(make_app: MakeApp) -> None:
    autoban = {"status": [404], "limit": 3, "window": 60, "ttl": 10, "factor": 3, "max_ttl": 50, "prefix_v6": 64}
    app = missing(make_app({**BANS, "ALLOW_BANS": False, "ALLOW_AUTOBAN": autoban}))
    state = app.extensions["flask_allow"]
    allow: FlaskAllow = state.extension
    now = [1_000_000.0]
    service: BanService = state.bans
    service.clock = lambda: now[0]
    service.snapshot.clock = service.clock
    for _ in range(2):
        assert status(app, "198.51.100.7", "/missing") == 404
    service.sync()
    assert status(app, "198.51.100.7") == 200
    with app.test_request_context(environ_base={"REMOTE_ADDR": "198.51.100.7"}):
        app.preprocess_request()
        assert allow.strike(reason="failed login") is True
    service.sync()
    [ban] = allow.bans(app=app)
    assert ban.source == "autoban" and ban.strikes == 3 and "failed login" in ban.reason
    assert ban.until is not None and (ban.until - ban.since).total_seconds() == 10
    assert status(app, "198.51.100.7") == 403
    now[0] += 10.5  # expired: never served again, even before the next sync
    assert status(app, "198.51.100.7") == 200
    for ttl in (30, 50, 50):  # 10 * 3, 10 * 9 bounded by max_ttl
        allow.strike("198.51.100.7", weight=3, app=app)
        service.sync()
        [ban] = allow.bans(app=app)
        assert (ban.until - ban.since).total_seconds() == ttl  # type: ignore[operator]
        now[0] += ttl + 0.5
        service.sync()
    # IPv6 is counted by its /64; the exempt and the denied are not counted
    assert allow.strike("2001:db8:1:2::5", weight=3, app=app)
    assert not allow.strike("127.0.0.1", weight=3, app=app)
    service.sync()
    assert [str(b.network) for b in allow.bans(app=app)] == ["2001:db8:1:2::/64"]
    assert status(app, "2001:db8:1:2:ffff::1") == 403


def test_responses_are_counted_by_client_and_the_exempt_never(make_app: MakeApp) -> None:
    """Responses are counted by address text (IPv4) or /64 key (IPv6) in the request; the sync
    parses, merges the spellings of one client and leaves out the exempt, of either family."""
    autoban = {"status": [404], "limit": 3, "prefix_v6": 64}
    exempt = ["127.0.0.0/8", "::1", "2001:db8:e::/48"]
    app = missing(make_app({**BANS, "ALLOW_AUTOBAN": autoban, "ALLOW_BAN_EXEMPT": exempt}))
    service: BanService = app.extensions["flask_allow"].bans
    for client in ("127.0.0.1", "::1", "2001:db8:e::7", "::ffff:127.0.0.2"):  # exempt: 5 each, never banned
        for _ in range(5):
            assert status(app, client, "/missing") == 404
    for client in ("198.51.100.9", "::ffff:198.51.100.9", "198.51.100.9"):  # one client, two spellings
        assert status(app, client, "/missing") == 404
    for client in ("2001:db8:5::1", "2001:db8:5::2", "2001:db8:5:0:ffff::3"):  # one /64
        assert status(app, client, "/missing") == 404
    assert status(app, "203.0.113.1", "/missing") == 404  # once: below the limit
    service.sync()
    assert sorted(str(b.network) for b in service.bans()) == ["198.51.100.9/32", "2001:db8:5::/64"]
    assert not service._events


def test_behind_a_proxy_the_client_is_counted_never_the_proxy(make_app: MakeApp) -> None:
    autoban = {"status": [404], "limit": 2}
    config = {**BANS, "ALLOW_AUTOBAN": autoban, "ALLOW_TRUSTED_PROXIES": ["192.0.2.1"], "ALLOW_BAN_EXEMPT": []}
    app = missing(make_app(config))
    state = app.extensions["flask_allow"]
    for _ in range(2):
        get(app, "192.0.2.1", "/missing", headers={"X-Forwarded-For": "203.0.113.9"})
    state.bans.sync()
    assert [str(b.network) for b in state.bans.bans()] == ["203.0.113.9/32"]
    with pytest.raises(ValueError, match="exempt"):
        state.bans.ban("192.0.2.1", 60)
    assert get(app, "192.0.2.1", headers={"X-Forwarded-For": "203.0.113.8"}).status_code == 200


def test_the_response_hook(make_app: MakeApp) -> None:
    seen: list[tuple[str, int]] = []

    class Statuses:
        @hookimpl
        def flask_allow_response(self, decision: Any, response: Any, app: Any) -> None:
            seen.append((decision.client.address, response.status_code))

    plain = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "all"}]}, name="plain")
    assert not any("flask_allow_response" in f.__name__ for f in plain.after_request_funcs.get(None, []))
    app = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "all"}]}, plugins=[Statuses()])
    get(app, "192.0.2.3", "/x")
    assert seen == [("192.0.2.3", 200)]
    # with auto-ban counting too, the plugin still sees every response (a status not counted
    # skips the request only when the counting is the only response hook)
    seen.clear()
    autoban = {"status": [404], "limit": 2, "window": 60, "ttl": 60}
    both = missing(make_app({**BANS, "ALLOW_AUTOBAN": autoban}, plugins=[Statuses()], name="both"))
    for path in ("/x", "/missing", "/missing"):
        get(both, "192.0.2.4", path)
    both.extensions["flask_allow"].bans.sync()
    assert seen == [("192.0.2.4", 200), ("192.0.2.4", 404), ("192.0.2.4", 404)]
    assert status(both, "192.0.2.4") == 403
    alone = missing(make_app({**BANS, "ALLOW_AUTOBAN": autoban}, name="alone"))
    for path in ("/x", "/missing", "/x", "/missing"):
        get(alone, "192.0.2.5", path)
    alone.extensions["flask_allow"].bans.sync()
    assert status(alone, "192.0.2.5") == 403  # the counted statuses are counted all the same


def test_sqlite_is_the_default_store_in_wal_mode(make_app: MakeApp, tmp_path: Path) -> None:
    app = make_app({"ALLOW_BANS": True})
    state = app.extensions["flask_allow"]
    state.bans.ban("192.0.2.5", 60, "x")
    state.bans.sync()
    path = Path(app.instance_path) / "flask_allow_bans.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = store_from_string(f"sqlite:///{path}")
    try:
        assert [str(b.network) for b in again.active(0)] == ["192.0.2.5/32"]
    finally:
        again.close()


def test_an_unreachable_store(make_app: MakeApp, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dead = "redis://127.0.0.1:1/0"
    with pytest.raises(ConfigError, match=r"ALLOW_BAN_STORE.*cannot be reached"):
        make_app({**BANS, "ALLOW_BAN_STORE": dead})
    errors: list[str] = []

    class Errors:
        @hookimpl
        def flask_allow_error(self, kind: str) -> None:
            errors.append(kind)

    app = make_app({**BANS, "ALLOW_BAN_STORE": dead, "ALLOW_BAN_STORE_REQUIRED": False}, plugins=[Errors()])
    state = app.extensions["flask_allow"]
    assert state.bans.down
    state.bans.ban("192.0.2.9", 60)
    state.bans.sync()
    state.bans.sync()
    assert status(app, "192.0.2.9") == 403 and status(app, "192.0.2.8") == 200
    assert [m for m in caplog.messages if "cannot be reached" in m][:2] and len(errors) <= 1


def test_outage_keeps_bans_and_merges_counts() -> None:
    class Flaky(MemoryStore):
        broken = False

        def _check(self) -> None:
            if self.broken:
                raise StoreError("down")

        def ping(self) -> None:
            self._check()

        def version(self) -> str:
            self._check()
            return super().version()

        def count(self, *args: Any) -> Any:
            self._check()
            return super().count(*args)

        def put(self, ban: Ban) -> None:
            self._check()
            super().put(ban)

    errors: list[ConfigError] = []
    settings = BanSettings.from_config({"ALLOW_AUTOBAN": {"limit": 4}, "ALLOW_BAN_EXEMPT": []}, errors)
    store = Flaky()
    now = [100.0]
    service = BanService(settings, store, __import__("logging").getLogger("test"), clock=lambda: now[0])
    service.start()
    service.ban("192.0.2.1", 30)
    service.sync()
    store.broken = True
    service.count((4, 0xC6336401), 3)  # 198.51.100.1
    service.sync()
    assert service.down and service.banned("192.0.2.1")
    now[0] += 31
    assert not service.banned("192.0.2.1")  # its expiry honoured while the store is down
    store.broken = False
    store.count({"198.51.100.1/32": 0}, settings.autoban, now[0])  # type: ignore[arg-type]
    service.count((4, 0xC6336401), 1)
    service.sync()
    assert not service.down and service.banned("198.51.100.1")  # 3 counted while down + 1 = the limit
    assert [str(b.network) for b in store.active(now[0])] == ["198.51.100.1/32"]
    service.close()


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("ALLOW_BANS", "yes", "ALLOW_BANS"),
        ("ALLOW_AUTOBAN", {"limit": 0}, r"ALLOW_AUTOBAN\['limit'\]"),
        ("ALLOW_AUTOBAN", {"status": ["404"]}, r"ALLOW_AUTOBAN\['status'\]"),
        ("ALLOW_AUTOBAN", {"ttl": 100, "max_ttl": 50}, r"ALLOW_AUTOBAN\['max_ttl'\]"),
        ("ALLOW_AUTOBAN", {"prefix_v6": 129}, "prefix_v6"),
        ("ALLOW_AUTOBAN", {"factor": 0.5}, "factor"),
        ("ALLOW_AUTOBAN", {"window": -1}, "window"),
        ("ALLOW_AUTOBAN", {"nope": 1}, "unknown field"),
        ("ALLOW_AUTOBAN", [1], "ALLOW_AUTOBAN"),
        ("ALLOW_BAN_TTL", -1, "ALLOW_BAN_TTL"),
        ("ALLOW_BAN_EXEMPT", ["10.0.0.300"], r"ALLOW_BAN_EXEMPT\[0\]"),
        ("ALLOW_BAN_STORE", "mongodb://x", "ALLOW_BAN_STORE"),
        ("ALLOW_BAN_STORE", "sqlite://x.db", "three slashes"),
        ("ALLOW_BAN_STORE_REQUIRED", 1, "ALLOW_BAN_STORE_REQUIRED"),
        ("ALLOW_BAN_SYNC_INTERVAL", 0, "ALLOW_BAN_SYNC_INTERVAL"),
        ("ALLOW_BAN_MAX_TRACKED", 0, "ALLOW_BAN_MAX_TRACKED"),
    ],
)
def test_every_bad_setting_is_a_config_error(make_app: MakeApp, key: str, value: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_app({**BANS, key: value})


def test_the_api_needs_bans_in_use(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "all"}]})
    allow: FlaskAllow = app.extensions["flask_allow"].extension
    with pytest.raises(RuntimeError, match="ALLOW_BANS"):
        allow.bans(app=app)
    assert app.extensions["flask_allow"].active_bans == 0


def test_a_reload_keeps_the_service_and_its_bans(make_app: MakeApp) -> None:
    app = make_app(BANS)
    state = app.extensions["flask_allow"]
    service = state.bans
    service.ban("192.0.2.1", 60)
    state.extension.reload(app)
    assert app.extensions["flask_allow"].bans is service and status(app, "192.0.2.1") == 403
    assert app.extensions["flask_allow"].active_bans == 1
    app.config["ALLOW_BANS"] = False
    app.extensions["flask_allow"].extension.reload(app)
    assert app.extensions["flask_allow"].shared.get(SHARED_KEY) is None
    service.task._thread.join(5)  # type: ignore[union-attr]
    assert not service.task.running  # the unused service was closed


def test_a_failed_reload_closes_the_service_it_started(make_app: MakeApp, tmp_path: Path) -> None:
    app = make_app(BANS)
    state = app.extensions["flask_allow"]
    running = state.bans
    running.ban("192.0.2.1", 60)
    before = {id(t) for t in threading.enumerate()}
    app.config.update(ALLOW_BAN_STORE=f"sqlite:///{tmp_path / 'other.sqlite3'}")  # a new service...
    app.config["ADDRESS_RESTRICTION"] = [{"DENY": "banned"}, {"ALLOW": "not-a-rule"}]  # ...then a bad rule
    with pytest.raises(ConfigError, match="not-a-rule"):
        state.extension.reload(app)
    assert app.extensions["flask_allow"] is state and state.bans is running and running.task.running
    assert "flask_allow.bans.building" not in state.shared
    started = [t for t in threading.enumerate() if id(t) not in before]
    for thread in started:
        thread.join(5)
    assert not [t for t in started if t.is_alive()]  # the new service's sync thread stopped
    assert status(app, "192.0.2.1") == 403  # the running bans stay in force
    app.config.update(ALLOW_BAN_STORE="memory", ADDRESS_RESTRICTION=[{"ALLOW": "all"}])
    state.extension.reload(app)
    assert app.extensions["flask_allow"].bans is running


APP = """
import os
from flask import Flask
from flask_allow import FlaskAllow
app = Flask(__name__, instance_path=os.environ["BANS_INSTANCE"])
app.config.update(ALLOW_BANS=True, ALLOW_BAN_EXEMPT=[])
FlaskAllow(app)
"""


def test_the_cli(tmp_path: Path) -> None:
    (tmp_path / "bans_app.py").write_text(APP, encoding="utf-8")
    from conftest import checkout_environ

    env = {**checkout_environ(), "BANS_INSTANCE": str(tmp_path / "instance")}

    def run(*args: str) -> Any:
        return flask_allow_command(tmp_path, "bans_app", *args, environ=env)

    made = run("ban", "192.0.2.0/24", "--ttl", "1h", "--reason", "scanner")
    assert made.returncode == 0 and "192.0.2.0/24" in made.stdout, made.stderr
    listed = run("bans", "--json")
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["network"] == "192.0.2.0/24" and row["reason"] == "scanner" and row["source"] == "cli"
    assert row["until"].endswith("Z") and row["strikes"] == 0
    check = run("check", "192.0.2.4")
    assert check.returncode == 1 and "banned 192.0.2.0/24 until" in check.stdout
    rules = run("rules")
    assert "ALLOW_BANS (implied)" in rules.stdout
    assert run("unban", "192.0.2.0/24").returncode == 0
    assert run("unban", "192.0.2.0/24").returncode == 1
    assert run("ban", "192.0.2.1", "--ttl", "soon").returncode == 2
    several = run("ban", "198.51.100.1", "2001:db8::/64", "--ttl", "10m")
    assert several.returncode == 0 and several.stdout.count("banned ") == 2, several.stderr
    assert run("ban", "203.0.113.1", "not-an-address").returncode == 2  # all or none
    listed = {json.loads(line)["network"] for line in run("bans", "--json").stdout.splitlines()}
    assert listed == {"198.51.100.1/32", "2001:db8::/64"}


def test_counts_waiting_for_a_sync_are_bounded_oldest_dropped() -> None:
    """A counted response waits as one entry, at most max(ALLOW_BAN_MAX_TRACKED, EVENTS_MIN) of
    them; the sync adds them up for at most ALLOW_BAN_MAX_TRACKED clients, the least recently
    counted dropped first."""
    import logging

    from flask_allow.bans import service as service_module

    config = {"ALLOW_AUTOBAN": {"status": [404], "limit": 10**6}, "ALLOW_BAN_MAX_TRACKED": 2, "ALLOW_BAN_EXEMPT": []}
    errors: list[Any] = []
    settings = BanSettings.from_config(config, errors)
    assert not errors
    service = BanService(settings, MemoryStore(), logging.getLogger("test"))
    try:
        oldest = (4, int(ipaddress.ip_address("198.51.100.1")))
        service.count(oldest)
        for _ in range(service_module.EVENTS_MIN):
            service.count((4, int(ipaddress.ip_address("198.51.100.2"))))
        assert len(service._events) == service_module.EVENTS_MIN
        assert service._events[0][0] != oldest  # the oldest count was dropped
        service._events.clear()
        for last in (1, 2, 3, 2):
            service.count((4, int(ipaddress.ip_address(f"198.51.100.{last}"))), reason=f"r{last}")
        pending = service._pending()
        assert [(str(ipaddress.ip_address(k[1])), v) for k, v in pending.items()] == [
            ("198.51.100.3", [1, "r3"]),
            ("198.51.100.2", [2, "r2"]),
        ]
        assert not service._events
    finally:
        service.close()

"""Configuration errors (location and value named, all at once, nothing half-applied), reload, lints."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeApp, new_app, status, warnings_of
from flask import Flask

from flask_allow import ConfigError, FlaskAllow, Matcher, MatcherContext, hookimpl

ACCESS_LOGGER = logging.getLogger("flask.allow")


def init_error(config: dict[str, Any], plugins: list[object] | None = None) -> ConfigError:
    """The ConfigError ``init_app`` raises for ``config`` (and check nothing was applied)."""
    app = new_app(config)
    handlers = list(ACCESS_LOGGER.handlers)
    with pytest.raises(ConfigError) as info:
        FlaskAllow(app, plugins=plugins or [])
    assert "flask_allow" not in app.extensions
    assert not any(f.__name__ == "flask_allow_guard" for f in app.url_value_preprocessors.get(None, []))
    assert ACCESS_LOGGER.handlers == handlers
    assert isinstance(info.value, ValueError)
    return info.value


# -- ADDRESS_RESTRICTION ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("restriction", "location", "shown"),
    [
        ({"DENY": "10.0.0.0/8"}, "ADDRESS_RESTRICTION", "{'DENY': '10.0.0.0/8'}"),
        ("10.0.0.1", "ADDRESS_RESTRICTION", "'10.0.0.1'"),
        (["10.0.0.1"], "ADDRESS_RESTRICTION[0]", "'10.0.0.1'"),
        ([{"ALLOW": "all"}, ["DENY", "x"]], "ADDRESS_RESTRICTION[1]", "['DENY', 'x']"),
        ([{"ALOW": "10.0.0.1"}], "ADDRESS_RESTRICTION[0]", "'ALOW'"),
        ([{"ALLOW": "10.0.0.1", "deny": "all"}], "ADDRESS_RESTRICTION[0]", "'deny'"),
        ([{}], "ADDRESS_RESTRICTION[0]", "{}"),
        ([{"DENY": 10}], "ADDRESS_RESTRICTION[0].DENY", "10"),
        ([{"DENY": None}], "ADDRESS_RESTRICTION[0].DENY", "None"),
        ([{"DENY": ["10.0.0.1", 5]}], "ADDRESS_RESTRICTION[0].DENY", "['10.0.0.1', 5]"),
        ([{"DENY": {"10.0.0.1"}}], "ADDRESS_RESTRICTION[0].DENY", "{'10.0.0.1'}"),
        ([{"DENY": b"10.0.0.1"}], "ADDRESS_RESTRICTION[0].DENY", "b'10.0.0.1'"),
        ([{"DENY": ""}], "ADDRESS_RESTRICTION[0].DENY", "''"),
        ([{"DENY": "   "}], "ADDRESS_RESTRICTION[0].DENY", "'   '"),
        ([{"DENY": "10.0.0.300"}], "ADDRESS_RESTRICTION[0].DENY", "'10.0.0.300'"),
        ([{"ALLOW": "all"}, {"DENY": ["all", "10.0.0.1/40"]}], "ADDRESS_RESTRICTION[1].DENY[1]", "'10.0.0.1/40'"),
        ([{"DENY": "no such host name"}], "ADDRESS_RESTRICTION[0].DENY", "'no such host name'"),
    ],
)
def test_restriction_errors_name_location_and_value(restriction: Any, location: str, shown: str) -> None:
    error = init_error({"ADDRESS_RESTRICTION": restriction})
    assert error.location == location
    assert str(error).startswith(f"{location}: ")
    assert shown in str(error)


def test_unknown_prefix_lists_the_known_prefixes() -> None:
    # entry points off: an installed plugin (flask-allow-geoip) provides asn:
    error = init_error({"ADDRESS_RESTRICTION": [{"DENY": "asn:64496"}], "ALLOW_LOAD_ENTRY_POINTS": False})
    assert error.location == "ADDRESS_RESTRICTION[0].DENY"
    message = str(error)
    assert "'asn'" in message and "asn:64496" in message
    assert "known prefixes:" in message
    assert "file:" in message.split("known prefixes:")[1]


def test_unknown_prefix_lists_plugin_prefixes_too() -> None:
    class Even(Matcher):
        prefix = "even"

        def matches(self, client: Any) -> bool:
            return False

    class Plugin:
        @hookimpl
        def flask_allow_matchers(self) -> list[type[Matcher]]:
            return [Even]

    error = init_error({"ADDRESS_RESTRICTION": [{"DENY": "evn:x"}]}, plugins=[Plugin()])
    known = str(error).split("known prefixes:")[1]
    assert "even:" in known and "file:" in known


def test_list_file_missing_directory_and_not_text(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    error = init_error({"ADDRESS_RESTRICTION": [{"DENY": f"file:{missing}"}]})
    assert error.location == "ADDRESS_RESTRICTION[0].DENY"
    assert str(missing) in str(error) and "does not exist" in str(error)

    error = init_error({"ADDRESS_RESTRICTION": [{"DENY": f"file:{tmp_path}"}]})
    assert str(tmp_path) in str(error)

    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"10.0.0.1\n\xff\xfe\x00garbage\n")
    error = init_error({"ADDRESS_RESTRICTION": [{"DENY": f"file:{binary}"}]})
    assert str(binary) in str(error) and "UTF-8" in str(error)


def test_list_file_unreadable(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        path = tmp_path / "secret.txt"
        path.write_text("10.0.0.1\n", encoding="utf-8")
        path.chmod(0)
    else:  # root reads any file whatever its mode; this regular file fails on read (EIO)
        path = Path("/proc/self/mem")
    error = init_error({"ADDRESS_RESTRICTION": [{"DENY": f"file:{path}"}]})
    assert error.location == "ADDRESS_RESTRICTION[0].DENY"
    assert str(path) in str(error) and "cannot read" in str(error)


def test_list_file_path_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file.txt"
    path.write_text("10.0.0.1\n", encoding="utf-8")
    error = init_error({"ADDRESS_RESTRICTION": [{"DENY": f"file:{path}/inner.txt"}]})
    assert error.location == "ADDRESS_RESTRICTION[0].DENY"
    assert f"{path}/inner.txt" in str(error)


# -- ACCESS_LOG and the other keys ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (5, "(got 5)"),
        (["access.log"], "['access.log']"),
        (True, "(got True)"),
        ({}, "'filename'"),
        ({"filename": ""}, "'filename'"),
        ({"filename": "x.log", "maxbytes": 10}, "'maxbytes'"),
        ({"filename": "x.log", "maxBytes": "5MB"}, "'5MB'"),
        ({"filename": "x.log", "maxBytes": -1}, "-1"),
        ({"filename": "x.log", "backupCount": 1.5}, "1.5"),
        ({"filename": "x.log", "backupCount": True}, "'backupCount'"),
        ({"filename": "x.log", "formatter": 7}, "'formatter'"),
        ({"filename": "x.log", "formatter": "%(nosuchfield)s"}, "nosuchfield"),
        ({"filename": "x.log", "encoding": "klingon"}, "'klingon'"),
        ({"filename": "x.log", "encoding": "base64"}, "'base64'"),
        ({"filename": "x.log", "encoding": 8}, "'encoding'"),
        ({"filename": "x.log", "queue": "yes"}, "'queue'"),
    ],
)
def test_access_log_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: Any, fragment: str) -> None:
    monkeypatch.chdir(tmp_path)
    error = init_error({"ACCESS_LOG": value})
    assert error.location == "ACCESS_LOG"
    assert str(error).startswith("ACCESS_LOG: ")
    assert fragment in str(error)
    assert not (tmp_path / "x.log").exists()


def test_access_log_that_cannot_be_opened(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "access.log"
    error = init_error({"ACCESS_LOG": str(path)})
    assert error.location == "ACCESS_LOG" and str(path) in str(error)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ALLOW_DEFAULT", "maybe"),
        ("ALLOW_DEFAULT", None),
        ("ALLOW_DEFAULT", True),
        ("ALLOW_DENY_STATUS", 200),
        ("ALLOW_DENY_STATUS", 302),
        ("ALLOW_DENY_STATUS", "403"),
        ("ALLOW_DENY_STATUS", True),
        ("ALLOW_DENY_STATUS", 499),
        ("ALLOW_DENY_STATUS", 600),
        ("ALLOW_REPORT_ONLY", "yes"),
        ("ALLOW_REPORT_ONLY", 1),
        ("ALLOW_REPORT_ONLY", None),
        ("ALLOW_LOAD_ENTRY_POINTS", "false"),
        ("ALLOW_CACHE_SIZE", -1),
        ("ALLOW_PLUGINS", 5),
        ("ALLOW_PLUGINS", ["ok", 5]),
        ("ALLOW_DISABLE_PLUGINS", {"a": 1}),
    ],
)
def test_setting_errors(key: str, value: Any) -> None:
    error = init_error({key: value})
    assert error.location == key
    assert str(error).startswith(f"{key}: ")
    assert repr(value) in str(error)


@pytest.mark.parametrize(("status", "name"), [(401, "Unauthorized"), (404, "Not Found"), (451, "Legal"), (503, "Serv")])
def test_deny_status_accepted(make_app: MakeApp, status: int, name: str) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "all"}], "ALLOW_DENY_STATUS": status})
    response = app.test_client().get("/", environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert response.status_code == status
    assert name in response.get_data(as_text=True)


# -- plugins ------------------------------------------------------------------------------------


def _prefix_plugin(prefix: str) -> object:
    matcher = type(f"M_{prefix}", (Matcher,), {"prefix": prefix, "networks": lambda self: ["192.0.2.0/24"]})

    class Plugin:
        @hookimpl
        def flask_allow_matchers(self) -> list[type[Matcher]]:
            return [matcher]

    return Plugin()


def test_two_plugins_claiming_one_prefix_are_named() -> None:
    first, second = _prefix_plugin("dup"), _prefix_plugin("DUP")
    error = init_error({}, plugins=[first, second])
    message = str(error)
    assert "'dup:'" in message or "'DUP:'" in message
    names = [f"@{id(first):x}", f"@{id(second):x}"]
    assert all(n in message for n in names), message


def test_plugin_claiming_a_builtin_prefix_names_the_builtin() -> None:
    error = init_error({}, plugins=[_prefix_plugin("file")])
    assert "flask_allow.builtins.listfile" in str(error)


def test_plugins_module_that_does_not_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    error = init_error({"ALLOW_PLUGINS": ["flask_allow_no_such_module"]})
    assert error.location == "ALLOW_PLUGINS"
    assert "'flask_allow_no_such_module'" in str(error) and "ModuleNotFoundError" in str(error)

    (tmp_path / "broken_allow_plugin.py").write_text("raise RuntimeError('half written')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    error = init_error({"ALLOW_PLUGINS": ["broken_allow_plugin"]})
    assert "'broken_allow_plugin'" in str(error) and "half written" in str(error)


def test_matchers_hook_returning_a_non_matcher() -> None:
    class Plugin:
        @hookimpl
        def flask_allow_matchers(self) -> list[Any]:
            return [str]

    error = init_error({}, plugins=[Plugin()])
    assert "not a Matcher subclass" in str(error)


@pytest.mark.parametrize("prefix", ["fe80", "ab", "1abc", "has space", ""])
def test_unusable_prefix(prefix: str) -> None:
    error = init_error({}, plugins=[_prefix_plugin(prefix)])
    assert repr(prefix) in str(error)


# -- all errors at once, nothing half-applied ------------------------------------------------


def test_several_rule_errors_reported_together() -> None:
    error = init_error(
        {
            "ADDRESS_RESTRICTION": [
                {"ALOW": "10.0.0.1"},
                {"DENY": "10.0.0.300"},
                {"ALLOW": ["localhost", "nope:1", "127.1"]},
                "x",
            ]
        }
    )
    locations = [e.location for e in error.errors]
    assert locations == [
        "ADDRESS_RESTRICTION[0]",
        "ADDRESS_RESTRICTION[1].DENY",
        "ADDRESS_RESTRICTION[2].ALLOW[1]",
        "ADDRESS_RESTRICTION[2].ALLOW[2]",
        "ADDRESS_RESTRICTION[3]",
    ]
    message = str(error)
    assert message.startswith("5 configuration errors")
    for fragment in ("'ALOW'", "'10.0.0.300'", "'nope:1'", "'127.1'", "'x'"):
        assert fragment in message
    assert all(isinstance(e, ConfigError) for e in error.errors)


def test_several_setting_errors_reported_together() -> None:
    error = init_error(
        {"ALLOW_DEFAULT": "sometimes", "ALLOW_DENY_STATUS": 200, "ALLOW_REPORT_ONLY": "no", "ACCESS_LOG": 3}
    )
    assert {e.location for e in error.errors} == {
        "ALLOW_DEFAULT",
        "ALLOW_DENY_STATUS",
        "ALLOW_REPORT_ONLY",
        "ACCESS_LOG",
    }


def test_errors_of_settings_rules_proxies_and_log_reported_together(tmp_path: Path) -> None:
    error = init_error(
        {
            "ALLOW_DEFAULT": "maybe",
            "ADDRESS_RESTRICTION": [{"DENY": "10.0.0.300"}],
            "ALLOW_TRUSTED_PROXIES": ["nope!"],
            "ACCESS_LOG": {"filename": str(tmp_path / "access.log"), "maxBytes": -1},
        }
    )
    assert [e.location for e in error.errors] == [
        "ALLOW_DEFAULT",
        "ADDRESS_RESTRICTION[0].DENY",
        "ALLOW_TRUSTED_PROXIES[0]",
        "ACCESS_LOG",
    ]
    assert not (tmp_path / "access.log").exists()


def test_one_error_has_itself_in_errors() -> None:
    error = init_error({"ALLOW_DEFAULT": "sometimes"})
    assert error.errors == [error]


closed: list[str] = []


class Tracked(Matcher):
    """A static matcher that records when it is closed."""

    prefix = "track"

    def __init__(self, value: str, context: MatcherContext) -> None:
        super().__init__(value, context)
        if value == "bad":
            raise ValueError("a bad tracked value")

    def networks(self) -> list[str]:
        return ["192.0.2.0/24"]

    def close(self) -> None:
        closed.append(self.value)


class TrackedPlugin:
    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [Tracked]


def test_failing_rules_close_the_matchers_already_built(tmp_path: Path) -> None:
    closed.clear()
    error = init_error(
        {"ADDRESS_RESTRICTION": [{"DENY": "track:a"}, {"DENY": "track:bad"}, {"ALLOW": "track:b"}]},
        plugins=[TrackedPlugin()],
    )
    assert error.location == "ADDRESS_RESTRICTION[1].DENY" and "a bad tracked value" in str(error)
    assert sorted(closed) == ["a", "b"]

    closed.clear()
    log = tmp_path / "no" / "dir" / "access.log"
    init_error({"ADDRESS_RESTRICTION": [{"DENY": "track:c"}], "ACCESS_LOG": str(log)}, plugins=[TrackedPlugin()])
    assert closed == ["c"]


def test_nothing_applied_then_a_fixed_config_works(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = new_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.300"}], "ACCESS_LOG": str(log)})
    allow = FlaskAllow()
    with pytest.raises(ConfigError):
        allow.init_app(app)
    assert "flask_allow" not in app.extensions
    assert not log.exists()
    assert app.test_client().get("/", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 200  # unguarded
    app.config["ADDRESS_RESTRICTION"] = [{"DENY": "10.0.0.0/8"}]
    allow.init_app(app)
    try:
        assert status(app, "10.0.0.1") == 403
        assert sum(f.__name__ == "flask_allow_guard" for f in app.url_value_preprocessors[None]) == 1
        assert len(log.read_text(encoding="utf-8").splitlines()) == 1
    finally:
        allow.state(app).close()


# -- reload -------------------------------------------------------------------------------------


def test_reload_failure_keeps_the_old_rules(make_app: MakeApp, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ACCESS_LOG": str(log)})
    allow: FlaskAllow = app.extensions["flask_allow"].extension
    state = app.extensions["flask_allow"]
    handlers = list(ACCESS_LOGGER.handlers)
    app.config["ADDRESS_RESTRICTION"] = [{"DENY": "10.0.0.300"}, {"DENY": "all"}]
    app.config["ACCESS_LOG"] = str(tmp_path / "other.log")
    with pytest.raises(ConfigError) as info:
        allow.reload(app)
    assert info.value.location == "ADDRESS_RESTRICTION[0].DENY"
    assert app.extensions["flask_allow"] is state
    assert ACCESS_LOGGER.handlers == handlers
    assert status(app, "10.0.0.1") == 403
    assert status(app, "192.0.2.1") == 200
    assert len(log.read_text(encoding="utf-8").splitlines()) == 2
    assert not (tmp_path / "other.log").exists()


def test_reload_success_swaps_rules_and_rereads_files(make_app: MakeApp, tmp_path: Path) -> None:
    closed.clear()
    listed = tmp_path / "block.txt"
    listed.write_text("10.0.0.0/8\n", encoding="utf-8")
    app = make_app(
        {"ADDRESS_RESTRICTION": [{"DENY": ["track:old", f"file:{listed}"]}]},
        plugins=[TrackedPlugin()],
    )
    allow: FlaskAllow = app.extensions["flask_allow"].extension
    old = app.extensions["flask_allow"]
    assert status(app, "10.0.0.1") == 403
    assert status(app, "172.16.0.1") == 200  # both decisions are now cached
    listed.write_text("172.16.0.0/12\n", encoding="utf-8")
    assert status(app, "172.16.0.1") == 200  # the file is read when the rules are built, not per request
    app.config["ADDRESS_RESTRICTION"] = [{"DENY": ["track:new", f"file:{listed}"]}]
    allow.reload(app)
    assert app.extensions["flask_allow"] is not old
    assert closed == ["old"]
    assert status(app, "10.0.0.1") == 200
    assert status(app, "172.16.0.1") == 403
    with app.app_context():
        allow.reload()  # the current app
    assert status(app, "172.16.0.1") == 403
    assert sum(f.__name__ == "flask_allow_guard" for f in app.url_value_preprocessors[None]) == 1


def test_reload_swaps_the_access_log_file(make_app: MakeApp, tmp_path: Path) -> None:
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    app = make_app({"ACCESS_LOG": str(first)})
    allow: FlaskAllow = app.extensions["flask_allow"].extension
    handlers = len(ACCESS_LOGGER.handlers)
    status(app, "192.0.2.1")
    app.config["ACCESS_LOG"] = str(second)
    allow.reload(app)
    assert len(ACCESS_LOGGER.handlers) == handlers
    status(app, "192.0.2.2")
    assert "192.0.2.1" in first.read_text(encoding="utf-8")
    assert "192.0.2.2" not in first.read_text(encoding="utf-8")
    assert "192.0.2.2" in second.read_text(encoding="utf-8")


def test_reload_of_an_app_never_initialised(tmp_path: Path) -> None:
    allow = FlaskAllow()
    with pytest.raises(RuntimeError, match="not initialised"):
        allow.reload(new_app())


# -- start-up lints ---------------------------------------------------------------------------


def lints(caplog: pytest.LogCaptureFixture, make_app: MakeApp, config: dict[str, Any]) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        app: Flask = make_app(config)
    return warnings_of(caplog, app)


def test_lint_ipv4_catch_all_deny_without_ipv6(make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    found = lints(caplog, make_app, {"ADDRESS_RESTRICTION": [{"ALLOW": "127.0.0.1", "DENY": "0.0.0.0/0"}]})
    assert any("ADDRESS_RESTRICTION[0].DENY '0.0.0.0/0'" in w and "IPv6" in w for w in found), found
    for fine in (
        [{"ALLOW": "127.0.0.1", "DENY": ["0.0.0.0/0", "::/0"]}],
        [{"ALLOW": "127.0.0.1", "DENY": "all"}],
    ):
        assert not any("IPv6" in w for w in lints(caplog, make_app, {"ADDRESS_RESTRICTION": fine}))
    deny_default = {"ADDRESS_RESTRICTION": [{"DENY": "0.0.0.0/0"}], "ALLOW_DEFAULT": "deny"}
    assert lints(caplog, make_app, deny_default) == []


def test_lint_shadowed_rule(make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    found = lints(
        caplog,
        make_app,
        {
            "ADDRESS_RESTRICTION": [
                {"DENY": "10.0.0.0/8"},
                {"ALLOW": ["10.1.0.0/16", "10.2.0.0/16", "192.0.2.1"]},
                {"DENY": "all"},
            ]
        },
    )
    shadowed = [w for w in found if "can never match" in w]
    assert len(shadowed) == 2
    assert "ADDRESS_RESTRICTION[1].ALLOW[0] '10.1.0.0/16'" in shadowed[0]
    assert "ADDRESS_RESTRICTION[1].ALLOW[1] '10.2.0.0/16'" in shadowed[1]
    partly = lints(caplog, make_app, {"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/9"}, {"ALLOW": "10.0.0.0/8"}]})
    assert not any("can never match" in w for w in partly)


def test_lint_allow_without_catch_all_deny(make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    found = lints(caplog, make_app, {"ADDRESS_RESTRICTION": [{"ALLOW": "10.0.0.0/8"}]})
    assert len(found) == 1 and "catch-all DENY" in found[0]
    for quiet in (
        {"ADDRESS_RESTRICTION": [{"ALLOW": "10.0.0.0/8", "DENY": "all"}]},
        {"ADDRESS_RESTRICTION": [{"ALLOW": "10.0.0.0/8"}], "ALLOW_DEFAULT": "deny"},
        {"ADDRESS_RESTRICTION": [{"ALLOW": "all"}]},
        {"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}]},
        {"ADDRESS_RESTRICTION": [{"ALLOW": "10.0.0.0/8"}, {"DENY": "0.0.0.0/0"}, {"DENY": "::/0"}]},
    ):
        assert lints(caplog, make_app, quiet) == [], quiet


def test_lints_are_repeated_on_reload(make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "all"}]})
    app.config["ADDRESS_RESTRICTION"] = [{"ALLOW": "10.0.0.0/8"}]
    with caplog.at_level(logging.WARNING):
        app.extensions["flask_allow"].extension.reload(app)
    assert any("catch-all DENY" in w for w in warnings_of(caplog, app))

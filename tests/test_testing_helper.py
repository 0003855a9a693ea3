"""flask_allow.testing.plugin_registered: a throwaway plugin for the length of a with block."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import MakeApp, get, new_app, status
from flask import Flask, Response

from flask_allow import Client, ConfigError, Decision, FlaskAllow, Matcher, hookimpl
from flask_allow.testing import plugin_registered


class Deny451:
    @hookimpl
    def flask_allow_deny_response(self, decision: Decision) -> Response:
        return Response(f"unavailable: {decision.reason}", status=451)


class Loopback6(Matcher):
    prefix = "six"

    def matches(self, client: Client) -> bool:
        return client.version == 6


class SixPlugin:
    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [Loopback6]


@pytest.fixture
def app(make_app: MakeApp) -> Flask:
    return make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}]})


def test_registered_for_the_block_only(app: Flask) -> None:
    plugin = Deny451()
    before = app.extensions["flask_allow"]
    with plugin_registered(app, plugin) as state:
        assert state is app.extensions["flask_allow"] and state is not before
        assert state.pm.is_registered(plugin)
        response = get(app, "10.0.0.1")
        assert response.status_code == 451
        assert response.get_data(as_text=True) == "unavailable: denied by ADDRESS_RESTRICTION[0].DENY '10.0.0.0/8'"
    after = app.extensions["flask_allow"]
    assert not after.pm.is_registered(plugin)
    assert after.extension.plugins == []
    assert status(app, "10.0.0.1") == 403
    assert sum(f.__name__ == "flask_allow_guard" for f in app.url_value_preprocessors[None]) == 1


def test_config_for_the_block(app: Flask) -> None:
    with plugin_registered(
        app, SixPlugin(), config={"ADDRESS_RESTRICTION": [{"DENY": "six:"}], "ALLOW_DENY_STATUS": 404}
    ):
        assert status(app, "2001:db8::1") == 404
        assert status(app, "10.0.0.1") == 200
    assert app.config["ADDRESS_RESTRICTION"] == [{"DENY": "10.0.0.0/8"}]
    assert "ALLOW_DENY_STATUS" not in app.config
    assert status(app, "2001:db8::1") == 200
    assert status(app, "10.0.0.1") == 403


def test_restored_when_the_block_raises(app: Flask) -> None:
    plugin = Deny451()
    with pytest.raises(ZeroDivisionError), plugin_registered(app, plugin, config={"ALLOW_DEFAULT": "deny"}):
        assert status(app, "192.0.2.1") == 451
        1 / 0  # noqa: B018
    assert status(app, "192.0.2.1") == 200
    assert not app.extensions["flask_allow"].pm.is_registered(plugin)


def test_invalid_plugin_changes_nothing(app: Flask) -> None:
    class Clash(Matcher):
        prefix = "file"

    class ClashPlugin:
        @hookimpl
        def flask_allow_matchers(self) -> list[type[Matcher]]:
            return [Clash]

    state = app.extensions["flask_allow"]
    with (
        pytest.raises(ConfigError, match="claimed by two plugins"),
        plugin_registered(app, ClashPlugin(), config={"ALLOW_DEFAULT": "deny"}),
    ):
        raise AssertionError("not reached")  # pragma: no cover
    assert app.extensions["flask_allow"] is state
    assert state.extension.plugins == []
    assert "ALLOW_DEFAULT" not in app.config
    assert status(app, "10.0.0.1") == 403 and status(app, "192.0.2.1") == 200


def test_keeps_the_extension_own_plugins(make_app: MakeApp) -> None:
    own = SixPlugin()
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "six:x"}]}, plugins=[own])
    with plugin_registered(app, Deny451()):
        assert status(app, "::1") == 451
    assert app.extensions["flask_allow"].extension.plugins == [own]
    assert status(app, "::1") == 403


def test_app_not_initialised() -> None:
    with pytest.raises(RuntimeError, match="not initialised"), plugin_registered(new_app(), Deny451()):
        pass  # pragma: no cover


# the datasette way: a fixture that registers a plugin for one test


@pytest.fixture
def recorded(app: Flask) -> Iterator[list[Any]]:
    decisions: list[Any] = []

    class Recorder:
        @hookimpl
        def flask_allow_decision(self, decision: Decision) -> None:
            decisions.append((decision.client.address, decision.allowed))

    with plugin_registered(app, Recorder()):
        yield decisions


def test_fixture_style(app: Flask, recorded: list[Any]) -> None:
    status(app, "10.0.0.1")
    status(app, "::1")
    assert recorded == [("10.0.0.1", False), ("::1", True)]


def test_two_apps_of_one_extension(make_app: MakeApp) -> None:
    allow = FlaskAllow()
    a = make_app({"ADDRESS_RESTRICTION": [{"DENY": "all"}]}, extension=allow, name="a")
    b = make_app({"ADDRESS_RESTRICTION": [{"DENY": "all"}]}, extension=allow, name="b")
    with plugin_registered(a, Deny451()):
        assert status(a, "10.0.0.1") == 451
        assert status(b, "10.0.0.1") == 403  # b was not rebuilt
    assert status(a, "10.0.0.1") == 403

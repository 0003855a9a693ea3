"""Plugins: from plugins=, ALLOW_PLUGINS and entry points; the Matcher API; blocking; hook order."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import MakeApp, get, lines, new_app, status
from flask import Response

from flask_allow import Client, ConfigError, Decision, FlaskAllow, Matcher, MatcherContext, hookimpl
from flask_allow.plugins import DEFAULT_PLUGINS, make_plugin_manager


class Parity(Matcher):
    """``parity:even`` / ``parity:odd``: a dynamic rule type (no static addresses)."""

    prefix = "parity"
    asked: ClassVar[list[str]] = []

    def __init__(self, value: str, context: MatcherContext) -> None:
        super().__init__(value, context)
        if value not in ("even", "odd"):
            raise ValueError(f"parity must be 'even' or 'odd', not {value!r}")
        self.remainder = 0 if value == "even" else 1

    def matches(self, client: Client) -> bool:
        Parity.asked.append(client.address)
        return client.ip is not None and int(client.ip) % 2 == self.remainder


class ParityPlugin:
    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [Parity]


def test_plugin_by_constructor(make_app: MakeApp) -> None:
    Parity.asked.clear()
    app = make_app(
        {"ADDRESS_RESTRICTION": [{"ALLOW": "192.0.2.1"}, {"DENY": "parity:odd"}, {"ALLOW": "10.0.0.0/8"}]},
        plugins=[ParityPlugin()],
    )
    assert status(app, "192.0.2.1") == 200  # static rule before: the plugin is never asked
    assert Parity.asked == []
    assert status(app, "10.0.0.3") == 403
    assert status(app, "10.0.0.4") == 200
    assert status(app, "2001:db8::3") == 403
    assert status(app, "::ffff:10.0.0.5") == 403  # the plugin sees the normalised client
    d = app.extensions["flask_allow"].extension.check("10.0.0.3", app=app)
    assert d.reason == "denied by ADDRESS_RESTRICTION[1].DENY 'parity:odd'" and not d.rule.static
    assert d.rule.type == "parity"

    with pytest.raises(ConfigError) as info:
        make_app({"ADDRESS_RESTRICTION": [{"DENY": "parity:prime"}]}, plugins=[ParityPlugin()])
    assert info.value.location == "ADDRESS_RESTRICTION[0].DENY" and "'prime'" in str(info.value)


def test_prefix_is_case_insensitive_and_the_value_is_what_follows(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "PARITY:even"}]}, plugins=[ParityPlugin()])
    assert status(app, "10.0.0.2") == 403


PLUGIN_MODULE = '''
"""A plugin module given by ALLOW_PLUGINS."""
from flask import Response
from flask_allow import Matcher, hookimpl


class Office(Matcher):
    prefix = "office"

    def networks(self):
        return {"berlin": ["198.51.100.0/24", "2001:db8:b::/48"], "paris": ["203.0.113.0/24"]}[self.value]


@hookimpl
def flask_allow_matchers():
    return [Office]


@hookimpl
def flask_allow_deny_response(decision):
    return Response("from ALLOW_PLUGINS", status=403)
'''


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = "flask_allow_test_office_plugin"
    (tmp_path / f"{name}.py").write_text(PLUGIN_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_plugin_by_allow_plugins(make_app: MakeApp, plugin_module: str) -> None:
    app = make_app(
        {"ADDRESS_RESTRICTION": [{"ALLOW": "office:berlin", "DENY": "all"}], "ALLOW_PLUGINS": [plugin_module]}
    )
    assert status(app, "198.51.100.7") == 200
    assert status(app, "2001:db8:b::1") == 200
    response = get(app, "203.0.113.1")
    assert (response.status_code, response.get_data(as_text=True)) == (403, "from ALLOW_PLUGINS")
    state = app.extensions["flask_allow"]
    assert state.pm.flask_allow_origins[plugin_module] == "ALLOW_PLUGINS"
    assert state.engine.static  # the plugin's networks() went into the index
    assert make_app({"ALLOW_PLUGINS": plugin_module}).extensions["flask_allow"].pm.has_plugin(plugin_module)


class Renderer:
    @hookimpl
    def flask_allow_deny_response(self) -> Response:
        return Response("from plugins=", status=403)


def test_constructor_plugins_come_after_allow_plugins(make_app: MakeApp, plugin_module: str) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "all"}], "ALLOW_PLUGINS": [plugin_module]}, plugins=[Renderer()])
    assert get(app, "10.0.0.1").get_data(as_text=True) == "from plugins="  # the last registered answers first
    origins = app.extensions["flask_allow"].pm.flask_allow_origins
    order = list(origins)
    assert order[: len(DEFAULT_PLUGINS)] == list(DEFAULT_PLUGINS)
    assert order.index(plugin_module) < len(order) - 1
    assert origins[order[-1]] == "constructor (plugins=)"


def test_same_module_twice_is_registered_once(make_app: MakeApp, plugin_module: str) -> None:
    import importlib

    module = importlib.import_module(plugin_module)
    app = make_app({"ALLOW_PLUGINS": [plugin_module, plugin_module]}, plugins=[module])
    pm = app.extensions["flask_allow"].pm
    assert [p for p in pm.get_plugins() if p is module] == [module]


class Static(Matcher):
    """A static plugin rule whose networks() yields every accepted kind of value."""

    prefix = "static"

    def networks(self) -> Iterable[Any]:
        return [
            ipaddress.ip_network("192.0.2.0/28"),
            ipaddress.ip_network("2001:db8::/64"),
            ipaddress.ip_network("::ffff:198.51.100.0/120"),
            "203.0.113.5-203.0.113.6",
        ]


class Broken(Matcher):
    prefix = "broken"

    def networks(self) -> list[str]:
        return ["192.0.2.0/24", "10.0.0.300"]


class Crashing(Matcher):
    prefix = "crash"

    def __init__(self, value: str, context: MatcherContext) -> None:
        raise KeyError("a bug in the plugin")


class MatcherKinds:
    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [Static, Broken, Crashing]


def test_static_plugin_matcher(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "static:x"}]}, plugins=[MatcherKinds()])
    for address in ("192.0.2.15", "2001:db8::ffff", "198.51.100.9", "::ffff:198.51.100.9", "203.0.113.6"):
        assert status(app, address) == 403, address
    for address in ("192.0.2.16", "2001:db8:0:1::", "198.51.101.0", "203.0.113.7"):
        assert status(app, address) == 200, address
    rule = app.extensions["flask_allow"].engine.rules[0]
    assert rule.static
    # the default matches() answers from networks(), for callers outside the index
    assert rule.matcher.matches(Client("198.51.100.1")) and not rule.matcher.matches(Client("198.51.101.1"))
    assert not rule.matcher.matches(Client("garbage"))
    assert rule.matcher.describe() == "4 networks"


class Detailed(Matcher):
    """A static rule that says which of its networks matched, as a GeoIP country rule does."""

    prefix = "detailed"
    asked = 0

    def networks(self) -> list[str]:
        return ["192.0.2.64/26", "100.64.0.0/24"]

    def detail(self, client: Client) -> str | None:
        Detailed.asked += 1
        return "office A" if client.address.startswith("192.") else "office B"  # from what it was built with


class DetailedPlugin:
    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [Detailed, Static]


def test_a_static_matcher_that_overrides_detail_names_it_in_the_reason(make_app: MakeApp, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = make_app(
        {"ADDRESS_RESTRICTION": [{"DENY": ["static:x", "detailed:x"]}], "ACCESS_LOG": str(log)},
        plugins=[DetailedPlugin()],
    )
    static, detailed = app.extensions["flask_allow"].engine.rules
    assert static.static and detailed.static  # both compiled into the index
    assert detailed.detailed and not static.detailed  # decided once, when the rule was built
    assert status(app, "100.64.0.7") == 403
    assert "denied by ADDRESS_RESTRICTION[0].DENY[1] 'detailed:x' (office B) GET" in lines(log)[-1]
    assert app.extensions["flask_allow"].engine.decide(Client("192.0.2.65")).reason.endswith("'detailed:x' (office A)")
    Detailed.asked = 0
    assert status(app, "192.0.2.9") == 403  # decided by the rule without a detail of its own
    assert "denied by ADDRESS_RESTRICTION[0].DENY[0] 'static:x' GET" in lines(log)[-1]
    assert Detailed.asked == 0


def test_bad_plugin_networks_and_constructor_bugs_are_config_errors(make_app: MakeApp) -> None:
    with pytest.raises(ConfigError) as info:
        make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "localhost"}, {"DENY": "broken:x"}]}, plugins=[MatcherKinds()])
    assert info.value.location == "ADDRESS_RESTRICTION[1].DENY" and "'10.0.0.300'" in str(info.value)
    with pytest.raises(ConfigError) as info:
        make_app({"ADDRESS_RESTRICTION": [{"DENY": "crash:x"}]}, plugins=[MatcherKinds()])
    assert info.value.location == "ADDRESS_RESTRICTION[0].DENY"
    assert "KeyError" in str(info.value) and "a bug in the plugin" in str(info.value)


class Internal(Matcher):
    """Claims values without a prefix: ``@group`` names (a stand-in for a directory of networks)."""

    @classmethod
    def claims(cls, value: str) -> bool:
        return value.startswith("@")

    def networks(self) -> list[str]:
        return ["10.0.0.0/8"]


class InternalToo(Internal):
    pass


class Claimers:
    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [Internal]


class ClaimersToo:
    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [InternalToo]


def test_claims_without_prefix(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "@internal"}]}, plugins=[Claimers()])
    assert status(app, "10.0.0.1") == 403
    assert app.extensions["flask_allow"].engine.rules[0].type == "Internal"
    with pytest.raises(ConfigError, match="claimed by more than one rule type"):
        make_app({"ADDRESS_RESTRICTION": [{"DENY": "@internal"}]}, plugins=[Claimers(), ClaimersToo()])


def test_a_plugin_keyword_wins_over_a_bare_host_name(make_app: MakeApp) -> None:
    class Office(Matcher):
        """``office``: a bare word that would otherwise be a host name to look up."""

        @classmethod
        def claims(cls, value: str) -> bool:
            return value == "office"

        def networks(self) -> list[str]:
            return ["10.9.0.0/16"]

    class Plugin:
        @hookimpl
        def flask_allow_matchers(self) -> list[type[Matcher]]:
            return [Office]

    no_dns = {"ALLOW_DNS_NAMESERVERS": ["127.0.0.1"], "ALLOW_DNS_PORT": 9, "ALLOW_DNS_HOSTS_FILE": None}
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": ["office", "db-1.lan"]}], **no_dns}, plugins=[Plugin()])
    rules = app.extensions["flask_allow"].engine.rules
    assert [rule.type for rule in rules] == ["Office", "host"]  # other words stay host names
    assert status(app, "10.9.1.1") == 403


def test_keywords_are_never_host_names_even_with_the_keywords_plugin_disabled(make_app: MakeApp) -> None:
    for word in ("all", "any", "localhost"):
        with pytest.raises(ConfigError):
            make_app(
                {"ADDRESS_RESTRICTION": [{"DENY": word}], "ALLOW_DISABLE_PLUGINS": ["flask_allow.builtins.keywords"]}
            )


def test_a_plugin_cannot_take_over_address_syntax(make_app: MakeApp) -> None:
    class Greedy(Matcher):
        @classmethod
        def claims(cls, value: str) -> bool:
            return True

        def networks(self) -> list[str]:
            return ["0.0.0.0/0"]

    class Plugin:
        @hookimpl
        def flask_allow_matchers(self) -> list[type[Matcher]]:
            return [Greedy]

    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.1"}]}, plugins=[Plugin()])
    assert status(app, "10.0.0.1") == 403 and status(app, "10.0.0.2") == 200
    with pytest.raises(ConfigError):  # a bad address stays an error, never the plugin's value
        make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.300"}]}, plugins=[Plugin()])


# -- context: shared across reloads, changed() ----------------------------------------------------------


class Switch(Matcher):
    """A dynamic, cacheable matcher whose answer changes; it tells the engine through changed()."""

    prefix = "switch"
    instances: ClassVar[list[Switch]] = []

    def __init__(self, value: str, context: MatcherContext) -> None:
        super().__init__(value, context)
        self.on: set[str] = set()
        context.shared.setdefault("builds", []).append(value)
        Switch.instances.append(self)

    def matches(self, client: Client) -> bool:
        return client.address in self.on

    def turn_on(self, address: str) -> None:
        self.on.add(address)
        self.context.changed()


class SwitchPlugin:
    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [Switch]


def test_changed_drops_cached_decisions_and_shared_survives_reload(make_app: MakeApp) -> None:
    Switch.instances.clear()
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "switch:a"}]}, plugins=[SwitchPlugin()])
    state = app.extensions["flask_allow"]
    assert status(app, "192.0.2.1") == 200
    assert status(app, "192.0.2.1") == 200  # now cached
    Switch.instances[-1].turn_on("192.0.2.1")
    assert status(app, "192.0.2.1") == 403
    assert state.shared["builds"] == ["a"]
    assert Switch.instances[-1].context.app is app and Switch.instances[-1].context.config is app.config
    assert Switch.instances[-1].context.location == "ADDRESS_RESTRICTION[0].DENY"
    state.extension.reload(app)
    new = app.extensions["flask_allow"]
    assert new is not state and new.shared is state.shared and new.shared["builds"] == ["a", "a"]


# -- blocking, check_pending, hook wrappers ------------------------------------------------------------


def test_builtins_pass_check_pending() -> None:
    pm = make_plugin_manager({"ALLOW_LOAD_ENTRY_POINTS": False})
    pm.check_pending()
    for name in DEFAULT_PLUGINS:
        assert pm.has_plugin(name)
        assert pm.flask_allow_origins[name] == "built-in"
    hooks = {impl.plugin_name for caller in pm.hook.__dict__.values() for impl in caller.get_hookimpls()}
    assert set(DEFAULT_PLUGINS) <= hooks  # every built-in implements at least one hook


def test_misspelled_hook_is_caught_by_check_pending() -> None:
    class Typo:
        @hookimpl
        def flask_allow_matcher(self) -> list[type[Matcher]]:  # missing "s"
            return []

    pm = make_plugin_manager({"ALLOW_LOAD_ENTRY_POINTS": False}, [Typo()])
    with pytest.raises(Exception, match="flask_allow_matcher"):
        pm.check_pending()


def test_disable_plugins_blocks_a_builtin(make_app: MakeApp, tmp_path: Path) -> None:
    for keyword in ("*", "localhost"):
        with pytest.raises(ConfigError, match=repr(keyword).replace("*", r"\*")):
            make_app(
                {"ADDRESS_RESTRICTION": [{"DENY": keyword}], "ALLOW_DISABLE_PLUGINS": ["flask_allow.builtins.keywords"]}
            )
    log = tmp_path / "access.log"
    app = make_app({"ACCESS_LOG": str(log), "ALLOW_DISABLE_PLUGINS": "flask_allow.accesslog.plugin"})
    assert status(app, "192.0.2.1") == 200
    assert lines(log) == []
    assert not app.extensions["flask_allow"].pm.has_plugin("flask_allow.accesslog.plugin")


def test_disable_plugins_blocks_an_allow_plugins_module(make_app: MakeApp, plugin_module: str) -> None:
    with pytest.raises(ConfigError, match="unknown rule type 'office'"):
        make_app(
            {
                "ADDRESS_RESTRICTION": [{"DENY": "office:paris"}],
                "ALLOW_PLUGINS": [plugin_module],
                "ALLOW_DISABLE_PLUGINS": [plugin_module],
            }
        )


def test_disable_the_builtin_client_address_with_a_replacement(make_app: MakeApp) -> None:
    class FromHeader:
        @hookimpl
        def flask_allow_client_address(self, request: Any) -> str | None:
            return request.headers.get("X-Client")

    builtin = next(p for p in DEFAULT_PLUGINS if "remote_addr" in p or "proxies" in p)
    app = make_app(
        {"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ALLOW_DISABLE_PLUGINS": [builtin]},
        plugins=[FromHeader()],
    )
    assert get(app, "192.0.2.1", headers={"X-Client": "10.0.0.1"}).status_code == 403
    assert get(app, "10.0.0.1").status_code == 403  # no answer at all: not an IP address, denied


seen: list[str] = []


class Wrapper:
    """New-style pluggy wrappers around the request hooks still see every call."""

    @hookimpl(wrapper=True)
    def flask_allow_decision(self, decision: Decision) -> Any:
        seen.append(f"decision {decision.action}")
        return (yield)

    @hookimpl(wrapper=True)
    def flask_allow_deny_response(self, decision: Decision) -> Any:
        response = yield
        seen.append("deny_response")
        return response

    @hookimpl(wrapper=True)
    def flask_allow_client_address(self, request: Any) -> Any:
        answer = yield
        seen.append(f"client {answer}")
        return answer


def test_hook_wrappers(make_app: MakeApp, tmp_path: Path) -> None:
    seen.clear()
    log = tmp_path / "access.log"
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ACCESS_LOG": str(log)}, plugins=[Wrapper()])
    assert status(app, "10.0.0.1") == 403
    assert status(app, "192.0.2.1") == 200
    assert seen == ["client 10.0.0.1", "decision DENY", "deny_response", "client 192.0.2.1", "decision ALLOW"]
    assert len(lines(log)) == 2


def test_plugins_are_per_app(make_app: MakeApp) -> None:
    allow = FlaskAllow(plugins=[ParityPlugin()])
    a = make_app({"ADDRESS_RESTRICTION": [{"DENY": "parity:even"}]}, extension=allow, name="a")
    b = new_app({"ADDRESS_RESTRICTION": [{"DENY": "parity:even"}]}, name="b")
    with pytest.raises(ConfigError, match="unknown rule type 'parity'"):
        FlaskAllow(b)  # another extension object does not see the first one's plugins
    assert status(a, "10.0.0.2") == 403

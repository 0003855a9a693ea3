"""A new user's first hour: mistakes caught at start-up, readable errors, docs whose examples run."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import BLOCKLISTS, REPO_ROOT, MakeApp, flask_allow_command, require_blocklists, status, warnings_of
from flask import Flask

from flask_allow import Client, ConfigError, FlaskAllow, Matcher, clookup, hookimpl
from flask_allow import engine as engine_module

FIREHOL = BLOCKLISTS / "firehol_level1.netset"
NO_DNS = {"ALLOW_DNS_NAMESERVERS": ["127.0.0.1"], "ALLOW_DNS_PORT": 9, "ALLOW_DNS_HOSTS_FILE": None}


def firehol() -> Path:
    return require_blocklists(FIREHOL)


class Even(Matcher):
    prefix = "even"
    takes_value = False

    def matches(self, client: Client) -> bool:
        return client.key is not None and client.key[1] % 2 == 0


class EvenPlugin:
    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [Even]


# -- bare words and values no rule type uses --------------------------------------------------


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("locahost", "'locahost': not a rule value; did you mean 'localhost'?"),
        ("al", "'al': not a rule value; did you mean 'all'?"),
        ("even", "'even': not a rule value; did you mean 'even:'?"),
        ("admin", "write 'host:admin' for a single-label name"),
        ("fiel:/tmp/x", "unknown rule type 'fiel' in 'fiel:/tmp/x'; did you mean 'file:'?"),
    ],
)
def test_a_bare_word_is_never_a_host_name(make_app: MakeApp, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make_app({"ADDRESS_RESTRICTION": [{"ALLOW": value}], **NO_DNS}, plugins=[EvenPlugin()])
    message = str(raised.value)
    assert message.startswith("ADDRESS_RESTRICTION[0].ALLOW: ") and says in message, message
    known = message.partition("known prefixes: ")[2].partition(";")[0].split(", ")
    assert {"even:", "file:", "host:", "ptr:"} <= set(known) and known == sorted(known), message


def test_host_names_with_a_dot_or_host_prefix_still_work(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": ["db-1.lan", "host:db-1", "db-2."]}], **NO_DNS})
    assert [rule.type for rule in app.extensions["flask_allow"].engine.rules] == ["host", "host", "host"]


def test_a_rule_type_never_accepts_text_it_does_not_use(make_app: MakeApp) -> None:
    with pytest.raises(ConfigError, match=r"'even:odd': 'even:' takes no value; write 'even:' alone"):
        make_app({"ADDRESS_RESTRICTION": [{"DENY": "even:odd"}]}, plugins=[EvenPlugin()])
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "even:"}]}, plugins=[EvenPlugin()])
    assert status(app, "10.0.0.2") == 403 and status(app, "10.0.0.3") == 200
    # the built-ins that take a value refuse an empty or unusable one
    for value in ("host:", "ptr:", "file:", "host:two words.example", "ptr:*.example.com"):
        with pytest.raises(ConfigError):
            make_app({"ADDRESS_RESTRICTION": [{"DENY": value}], **NO_DNS})


# -- lints ------------------------------------------------------------------------------------


def lints_of(caplog: pytest.LogCaptureFixture, make_app: MakeApp, config: dict[str, Any]) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        app = make_app(config)
    return warnings_of(caplog, app)


def test_firehol_level1_first_denies_localhost_the_proxy_and_private_clients(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    path = firehol()
    rules = [{"DENY": f"file:{path}"}, {"ALLOW": "10.1.0.0/16"}]
    found = lints_of(caplog, make_app, {"ADDRESS_RESTRICTION": rules, "ALLOW_TRUSTED_PROXIES": ["127.0.0.1"]})
    (covers,) = [w for w in found if " covers " in w]
    assert covers.startswith(f"flask_allow: ADDRESS_RESTRICTION[0].DENY 'file:{path}' covers 127.0.0.0/8, 10.0.0.0/8,")
    assert covers.endswith(
        ": localhost, the trusted proxy 127.0.0.1, private clients and the clients "
        "ADDRESS_RESTRICTION[1].ALLOW '10.1.0.0/16' names are denied"
    )
    assert any("ADDRESS_RESTRICTION[1].ALLOW '10.1.0.0/16' can never match" in w for w in found)
    # the usual fix: what must be let in, first
    fixed = [{"ALLOW": ["localhost", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}, {"DENY": f"file:{path}"}]
    quiet = lints_of(caplog, make_app, {"ADDRESS_RESTRICTION": fixed, "ALLOW_TRUSTED_PROXIES": ["127.0.0.1"]})
    assert not [w for w in quiet if " covers " in w or "never match" in w], quiet


def test_lints_across_dynamic_rules(make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    rules = [{"DENY": "10.0.0.0/8"}, {"DENY": "host:db"}, {"ALLOW": "10.1.0.0/16"}, {"ALLOW": "all"}]
    found = lints_of(caplog, make_app, {"ADDRESS_RESTRICTION": rules, **NO_DNS})
    assert any("ADDRESS_RESTRICTION[2].ALLOW '10.1.0.0/16' can never match" in w for w in found), found
    rules = [{"ALLOW": "all"}, {"DENY": "host:db"}]
    found = lints_of(caplog, make_app, {"ADDRESS_RESTRICTION": rules, **NO_DNS})
    assert any(
        "ADDRESS_RESTRICTION[1].DENY 'host:db' can never match: earlier rules cover every address" in w for w in found
    )


def test_explicit_networks_and_catch_alls_are_not_linted(make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    for rules in (
        [{"ALLOW": "localhost"}, {"DENY": "10.0.0.0/8"}, {"DENY": "all"}],
        [{"DENY": "localhost"}],
        [{"DENY": "10.0.0.0/9"}, {"ALLOW": "10.0.0.0/8"}, {"DENY": "all"}],
        # the usual set-up: a published list between localhost and a final ALLOW 'all'
        [{"ALLOW": "localhost"}, {"DENY": "file:drop.txt"}, {"ALLOW": "all"}],
        [{"ALLOW": "localhost"}, {"DENY": "file:drop.txt"}, {"ALLOW": ["0.0.0.0/0", "::/0"]}],
    ):
        (Path(make_app({}).root_path) / "drop.txt").write_text("192.0.2.0/24\n198.51.100.0/24\n")
        assert lints_of(caplog, make_app, {"ADDRESS_RESTRICTION": rules}) == [], rules


def test_lints_fatal(make_app: MakeApp) -> None:
    config = {"ADDRESS_RESTRICTION": [{"DENY": f"file:{firehol()}"}], "ALLOW_LINTS_FATAL": True}
    with pytest.raises(ConfigError, match=r"covers 127\.0\.0\.0/8.*ALLOW_LINTS_FATAL is True"):
        make_app(config)
    with pytest.raises(ConfigError, match="ALLOW_LINTS_FATAL: must be True or False"):
        make_app({"ALLOW_LINTS_FATAL": "yes"})
    app = make_app({"ALLOW_LINTS_FATAL": True, "ADDRESS_RESTRICTION": [{"ALLOW": "localhost", "DENY": "all"}]})
    allow = app.extensions["flask_allow"].extension
    with pytest.raises(ConfigError, match="can never match"):
        allow.restrict([{"ALLOW": "all"}, {"DENY": "10.0.0.0/8"}])(lambda: "x")


# -- the CLI ----------------------------------------------------------------------------------

BROKEN = """
from flask import Flask
from flask_allow import FlaskAllow

def create_app():
    app = Flask(__name__)
    app.config["ADDRESS_RESTRICTION"] = [{"ALLOW": ["locahost", "10.0.0.300"]}, {"DENY": "all"}]
    app.config["ALLOW_LOAD_ENTRY_POINTS"] = False  # the built-in rule types only
    FlaskAllow(app)
    return app
"""
GOOD = """
from flask import Flask
from flask_allow import FlaskAllow

app = Flask(__name__)
app.config["ADDRESS_RESTRICTION"] = [{"DENY": "file:%s"}]
app.config["ALLOW_TRUSTED_PROXIES"] = ["127.0.0.1"]
FlaskAllow(app)
"""


@pytest.mark.parametrize("command", [["rules"], ["check", "10.0.0.1"], ["test-config", "config.json"]])
def test_a_config_error_is_its_message_and_exit_2(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "broken.py").write_text(BROKEN)
    (tmp_path / "config.json").write_text("{}")
    done = flask_allow_command(tmp_path, "broken:create_app", *command)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "Error: ADDRESS_RESTRICTION[0].ALLOW[0]: 'locahost': not a rule value; did you mean 'localhost'? "
        "(known prefixes: file:, host:, ptr:, url:; a bare host name needs a dot: write 'host:locahost' "
        "for a single-label name)",
        "Error: ADDRESS_RESTRICTION[0].ALLOW[1]: '10.0.0.300' is not a valid IPv4 address "
        "(four decimal numbers 0-255, no leading zeros)",
        "flask_allow: 2 configuration errors; the app did not start",
    ]


def test_check_usage_errors_rules_lints_and_strict(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(GOOD % firehol())
    for address, why in (("010.0.0.1", "no leading zeros"), ("foo.example", "host names are not looked up")):
        done = flask_allow_command(tmp_path, "good", "check", address)
        assert done.returncode == 2 and why in done.stderr, done.stderr
    done = flask_allow_command(tmp_path, "good", "check", "::ffff:10.1.1.1")
    assert done.returncode == 1
    assert "  client:     10.1.1.1 (::ffff:10.1.1.1 normalised; " in done.stdout
    done = flask_allow_command(tmp_path, "good", "rules")
    assert "localhost, the trusted proxy 127.0.0.1 and private clients are denied" in done.stdout
    assert "WARNING in flask_allow: flask_allow: ADDRESS_RESTRICTION[0].DENY" in done.stderr  # never "in engine"
    (tmp_path / "prod.json").write_text(json.dumps({"ADDRESS_RESTRICTION": [{"DENY": f"file:{firehol()}"}]}))
    lenient = flask_allow_command(tmp_path, "good", "test-config", "prod.json")
    assert lenient.returncode == 0 and "prod.json: warning: ADDRESS_RESTRICTION[0].DENY" in lenient.stdout
    strict = flask_allow_command(tmp_path, "good", "test-config", "--strict", "prod.json")
    assert strict.returncode == 1 and "prod.json: error: ADDRESS_RESTRICTION[0].DENY" in strict.stdout
    assert "warning:" not in strict.stdout


# -- start-up messages --------------------------------------------------------------------------


def test_start_up_info_lines(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(engine_module, "SLOW", 0.0)  # every list is "slow": the line is what is tested
    monkeypatch.setattr(clookup, "_lookup", None)  # as installed without a C compiler
    monkeypatch.setattr(clookup, "_said", [])
    listed = tmp_path / "list.txt"
    listed.write_text("10.0.0.0/8\n192.0.2.1\n")
    with caplog.at_level(logging.INFO):
        app = make_app({"ADDRESS_RESTRICTION": [{"DENY": f"file:{listed}"}], "ACCESS_LOG": "access.log"})
        make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}]})
    said = [r.getMessage() for r in caplog.records if r.name == app.logger.name and r.levelno == logging.INFO]
    assert f"flask_allow: the access log is written to {tmp_path / 'access.log'}" in said
    assert any(
        re.fullmatch(
            rf"flask_allow: ADDRESS_RESTRICTION\[0\]\.DENY 'file:{listed}': 2 entries read and compiled "
            r"in \d+\.\d s .*--preload.*",
            m,
        )
        for m in said
    ), said
    assert len([m for m in said if "was not built" in m]) == 1  # once per process


def test_the_demo_admits_both_loopbacks() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_app", REPO_ROOT / "examples" / "demo" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_app"] = module  # Flask finds the app's root path (its blocklist) through it
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["demo_app"]
    app: Flask = module.app
    try:
        assert status(app, "127.0.0.1", "/admin") == 200
        assert status(app, "::1", "/admin") == 200
        assert status(app, "192.0.2.1", "/admin") == 403
    finally:
        app.extensions["flask_allow"].close()


# -- the README -------------------------------------------------------------------------------

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def readme_section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_plugin_examples_work(monkeypatch: pytest.MonkeyPatch) -> None:
    examples = re.findall(r"```python\n(.*?)```", readme_section("Plugins"), re.DOTALL)
    assert len(examples) == 2
    static, dynamic = ({"__name__": f"readme_plugin_{i}"} for i in range(2))
    exec(compile(examples[0], "README.md:static plugin", "exec"), static)
    exec(compile(examples[1], "README.md:dynamic plugin", "exec"), dynamic)
    monkeypatch.setenv("TEAM_OPS", "10.20.0.0/16, 2001:db8::/32")

    class Plugins:
        @hookimpl
        def flask_allow_matchers(self) -> list[type[Matcher]]:
            return [*static["flask_allow_matchers"](), *dynamic["flask_allow_matchers"]()]

    app = Flask("readme")
    app.config["ADDRESS_RESTRICTION"] = [{"ALLOW": "team:ops"}, {"DENY": "even:"}]
    allow = FlaskAllow(app, plugins=[Plugins()])
    try:
        state = app.extensions["flask_allow"]
        assert [r.static for r in state.engine.rules] == [True, False]
        assert allow.check("10.20.0.2").allowed and allow.check("2001:db8::2").allowed
        assert not allow.check("192.0.2.2").allowed and allow.check("192.0.2.3").allowed
    finally:
        state.close()
    for bad, says in (("team:nobody", "TEAM_NOBODY is not set"), ("even:odd", "takes no value")):
        app = Flask("readme")
        app.config["ADDRESS_RESTRICTION"] = [{"DENY": bad}]
        with pytest.raises(ConfigError, match=says):
            FlaskAllow(app, plugins=[Plugins()])


def test_the_readme_log_lines_are_what_the_code_writes(tmp_path: Path) -> None:
    quick = readme_section("Quick start")
    code = re.search(r"```python\n(.*?)```", quick, re.DOTALL).group(1)  # type: ignore[union-attr]
    shown = re.search(r"```\n(.*?)```", quick.split("gets one line per request")[1], re.DOTALL).group(1)  # type: ignore[union-attr]
    code = code.replace('"access.log"', repr(str(tmp_path / "access.log")))
    scope: dict[str, Any] = {"__name__": "readme_quick_start"}
    exec(compile(code, "README.md:quick start", "exec"), scope)
    app: Flask = scope["app"]
    client = app.test_client()
    for address in ("10.1.2.3", "203.0.113.9"):
        client.get(
            "/", environ_base={"REMOTE_ADDR": address}, headers={"User-Agent": "curl/8.5.0"}, base_url="http://app"
        )
    app.extensions["flask_allow"].close()
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}")
    written = [stamp.sub("T", line) for line in (tmp_path / "access.log").read_text().splitlines()]
    assert written == [stamp.sub("T", line) for line in shown.strip().splitlines()]

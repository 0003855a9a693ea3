"""The ``flask allow`` command group, through Flask's CLI runner and as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, close_app, flask_allow_command, lines
from flask import Blueprint, Flask

from flask_allow import Client, Decision, FlaskAllow, Matcher, hookimpl

RULES = [{"ALLOW": "10.0.0.0/8"}, {"DENY": "192.0.2.0/24"}, {"ALLOW": "::1"}]


class OddMatcher(Matcher):
    """A dynamic rule type: clients whose last IPv4 octet is odd."""

    prefix = "odd"

    def matches(self, client: Client) -> bool:
        return client.key is not None and client.key[0] == 4 and client.key[1] % 2 == 1

    def explain(self, client: Client) -> str:
        return "the last octet is odd" if self.matches(client) else "the last octet is even"


class OddPlugin:
    """Provides ``odd:`` and records decisions (the CLI must not produce any)."""

    def __init__(self) -> None:
        self.decisions: list[Decision] = []

    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [OddMatcher]

    @hookimpl
    def flask_allow_decision(self, decision: Decision) -> None:
        self.decisions.append(decision)


@pytest.fixture
def plugin() -> OddPlugin:
    return OddPlugin()


@pytest.fixture
def app(tmp_path: Path, plugin: OddPlugin) -> Iterator[Flask]:
    app = Flask("cli_app", root_path=str(tmp_path))
    app.config.update(
        ADDRESS_RESTRICTION=[*RULES, {"DENY": "odd:"}],
        ALLOW_TRUSTED_PROXIES=["10.0.0.1", "unix:"],
        ALLOW_LOAD_ENTRY_POINTS=False,
        ACCESS_LOG=str(tmp_path / "access.log"),
    )
    allow = FlaskAllow(app, plugins=[plugin])

    @app.route("/")
    def index() -> str:
        return "ok"

    @app.route("/admin")
    @allow.restrict([{"ALLOW": "10.1.0.0/16"}])
    def admin() -> str:
        return "admin"

    @app.route("/health")
    @allow.exempt
    def health() -> str:
        return "ok"

    api = Blueprint("api", __name__)
    api.add_url_rule("/x", "x", lambda: "x")
    allow.restrict([{"DENY": "10.9.0.0/16"}], default="allow")(api)
    app.register_blueprint(api, url_prefix="/api")
    yield app
    close_app(app)


def run(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["allow", *args])


# -- flask allow check -------------------------------------------------------------------


def test_check_allowed_exits_0(app: Flask) -> None:
    result = run(app, "check", "10.0.0.2")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("10.0.0.2 GET /: allowed\n")
    assert "client:     10.0.0.2 (the socket peer (not a trusted proxy, no proxy header))" in out
    assert "decided by: ADDRESS_RESTRICTION[0].ALLOW '10.0.0.0/8'" in out
    assert "match    ADDRESS_RESTRICTION[0].ALLOW '10.0.0.0/8' (network, static): matches (10.0.0.0/8)" in out


def test_check_denied_exits_1_with_the_trace(app: Flask) -> None:
    result = run(app, "check", "192.0.2.7")
    assert result.exit_code == 1
    out = result.output
    assert "192.0.2.7 GET /: denied" in out
    assert "decided by: ADDRESS_RESTRICTION[1].DENY '192.0.2.0/24'" in out
    assert "no match ADDRESS_RESTRICTION[0].ALLOW '10.0.0.0/8' (network, static): does not match" in out
    assert "match    ADDRESS_RESTRICTION[1].DENY '192.0.2.0/24'" in out
    assert "::1" not in out.split("trace:")[1]  # rules after the decider are not tried


def test_check_dynamic_rule_explains_itself_and_default(app: Flask) -> None:
    odd = run(app, "check", "198.51.100.9")
    assert odd.exit_code == 1
    assert "match    ADDRESS_RESTRICTION[3].DENY 'odd:' (odd, dynamic): the last octet is odd" in odd.output
    even = run(app, "check", "198.51.100.8")
    assert even.exit_code == 0
    assert "no match ADDRESS_RESTRICTION[3].DENY 'odd:' (odd, dynamic): the last octet is even" in even.output
    assert "default  ADDRESS_RESTRICTION: no rule matched: allow" in even.output
    assert "decided by: default" in even.output


def test_check_several_addresses_exit_1_when_any_is_denied(app: Flask) -> None:
    result = run(app, "check", "10.0.0.2", "192.0.2.7", "::1")
    assert result.exit_code == 1
    verdicts = [line for line in result.output.splitlines() if not line.startswith(" ")]
    assert verdicts == ["10.0.0.2 GET /: allowed", "192.0.2.7 GET /: denied", "::1 GET /: allowed"]
    assert run(app, "check", "10.0.0.2", "::1").exit_code == 0


def test_check_json_one_object_per_line(app: Flask) -> None:
    result = run(app, "check", "--json", "10.0.0.2", "192.0.2.7", "unix:/run/app.sock")
    assert result.exit_code == 1
    objects = [json.loads(line) for line in result.output.splitlines()]
    assert [o["address"] for o in objects] == ["10.0.0.2", "192.0.2.7", "unix:/run/app.sock"]
    allowed, denied, bad = objects
    assert allowed["allowed"] is True and allowed["decided_by"] == "ADDRESS_RESTRICTION[0].ALLOW '10.0.0.0/8'"
    assert allowed["rule"] == {
        "location": "ADDRESS_RESTRICTION[0].ALLOW",
        "action": "ALLOW",
        "type": "network",
        "value": "10.0.0.0/8",
        "static": True,
    }
    assert denied["allowed"] is False and denied["action"] == "DENY"
    assert [step["outcome"] for step in denied["trace"]] == ["no match", "match"]
    assert bad["allowed"] is False and bad["decided_by"] == "error" and "not an IP address" in bad["reason"]
    assert bad["trace"] == []


def test_check_through_a_trusted_proxy(app: Flask) -> None:
    header = "X-Forwarded-For: 10.0.0.5, 192.0.2.7, 10.0.0.1"
    result = run(app, "check", "10.0.0.1", "--header", header, "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["client"] == "192.0.2.7"
    assert data["via"] == [
        "peer 10.0.0.1 (trusted proxy)",
        "X-Forwarded-For 10.0.0.1 (trusted proxy)",
        "X-Forwarded-For 192.0.2.7",
    ]
    assert data["how"] == "; ".join(data["via"])
    spoofed = run(app, "check", "203.0.113.2", "--header", "X-Forwarded-For: 10.0.0.5")
    assert spoofed.exit_code == 0  # default allow; but the client is the peer:
    assert "203.0.113.2 (peer 203.0.113.2 is not a trusted proxy: X-Forwarded-For ignored)" in spoofed.output


def test_check_several_header_lines_and_an_unreadable_header(app: Flask) -> None:
    joined = run(
        app,
        "check",
        "10.0.0.1",
        "--header",
        "X-Forwarded-For: 192.0.2.7",
        "--header",
        "X-Forwarded-For: 198.51.100.8",
        "--json",
    )
    assert json.loads(joined.output)["client"] == "198.51.100.8"
    hidden = run(app, "check", "", "--header", "X-Forwarded-For: _hidden")  # a unix-socket peer
    assert hidden.exit_code == 1
    assert "denied: the client address is unknown: X-Forwarded-For unreadable: an obfuscated identifier" in (
        hidden.output
    )


def test_check_route_rules(app: Flask) -> None:
    inside = run(app, "check", "--path", "/admin", "10.1.0.5", "--json")
    assert inside.exit_code == 0
    data = json.loads(inside.output)
    assert data["endpoint"] == "admin"
    assert data["rule_lists"] == ["ADDRESS_RESTRICTION", "view:admin"]
    assert [s["scope"] for s in data["trace"]] == ["ADDRESS_RESTRICTION", "view:admin"]
    outside = run(app, "check", "--path", "/admin", "10.2.0.5")
    assert outside.exit_code == 1
    assert "decided by: default of view:admin" in outside.output
    assert "default  view:admin: no rule matched: deny" in outside.output
    health = run(app, "check", "--path", "/health", "192.0.2.7")
    assert health.exit_code == 0
    assert "decided by: exempt (view:health)" in health.output
    assert "rules: none (exempt)" in health.output
    blueprint = run(app, "check", "--path", "http://localhost/api/x?q=1", "10.9.1.1", "10.8.1.1")
    assert blueprint.exit_code == 1
    assert "decided by: blueprint:api[0].DENY '10.9.0.0/16'" in blueprint.output
    missing = run(app, "check", "--path", "/nowhere", "10.0.0.2")
    assert missing.exit_code == 0 and "route:      no route matches; rules: ADDRESS_RESTRICTION" in missing.output


def test_check_writes_nothing_to_the_access_log(app: Flask, plugin: OddPlugin, tmp_path: Path) -> None:
    assert run(app, "check", "10.0.0.2", "192.0.2.7", "--path", "/health").exit_code == 0
    assert run(app, "check", "192.0.2.7").exit_code == 1
    assert lines(tmp_path / "access.log") == []
    assert plugin.decisions == []
    app.test_client().get("/", environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert len(lines(tmp_path / "access.log")) == 1 and len(plugin.decisions) == 1


def test_check_report_only(app: Flask) -> None:
    app.config["ALLOW_REPORT_ONLY"] = True
    app.extensions["flask_allow"].extension.reload(app)
    result = run(app, "check", "192.0.2.7")
    assert result.exit_code == 1
    assert "denied (report-only: the request would be let through)" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["check"],
        ["check", "10.0.0.2", "--header", "no colon"],
        ["check", "10.0.0.2", "--header", "Bad Name: x"],
        ["check", "10.0.0.2", "--path", "admin"],
        ["check", "10.0.0.2", "--bogus"],
    ],
)
def test_check_usage_errors_exit_2(app: Flask, args: list[str]) -> None:
    result = run(app, *args)
    assert result.exit_code == 2, result.output


def test_check_on_an_app_without_the_extension_exits_2() -> None:
    from flask_allow.cli import cli

    app = Flask("bare")
    app.cli.add_command(cli)
    result = app.test_cli_runner().invoke(args=["allow", "check", "10.0.0.1"])
    assert result.exit_code == 2
    assert "not initialised" in result.output


# -- flask allow rules / plugins ------------------------------------------------------------


def test_rules(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    result = run(app, "rules")
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    header = out.index("ADDRESS_RESTRICTION (first match wins):")
    table = [line.split() for line in out[header + 1 : header + 6]]
    assert table[0] == ["#", "location", "action", "type", "value", "compiled", "holds"]
    assert table[1][:6] == ["0", "ADDRESS_RESTRICTION[0].ALLOW", "ALLOW", "network", "'10.0.0.0/8'", "static"]
    assert table[4][:6] == ["3", "ADDRESS_RESTRICTION[3].DENY", "DENY", "odd", "'odd:'", "dynamic"]
    text = result.output
    assert "Default (ALLOW_DEFAULT): allow" in text
    assert "Search: static runs searched in C between dynamic rules; decisions cached (ALLOW_CACHE_SIZE 65536)" in text
    assert "Trusted proxies (ALLOW_TRUSTED_PROXIES), header X-Forwarded-For (list):" in text
    assert "ALLOW_TRUSTED_PROXIES[0]  '10.0.0.1'" in text and "'unix:'" in text
    assert "view:health: exempt" in text
    assert "view:admin: default deny" in text
    assert "blueprint:api: default allow" in text
    assert "view:admin[0].ALLOW" in text
    assert "api.x     ADDRESS_RESTRICTION, then blueprint:api" in text
    assert "health    exempt (view:health)" in text
    assert "Start-up lints:" in text
    assert "ALLOW rules without a final catch-all DENY" in text


def test_rules_of_an_empty_config(tmp_path: Path) -> None:
    app = Flask("empty", root_path=str(tmp_path))
    app.config["ALLOW_LOAD_ENTRY_POINTS"] = False
    FlaskAllow(app)
    result = app.test_cli_runner().invoke(args=["allow", "rules"])
    assert result.exit_code == 0
    assert "(no rules)" in result.output
    assert "Trusted proxies (ALLOW_TRUSTED_PROXIES): none; the socket peer is the client" in result.output
    assert "Start-up lints: none" in result.output
    assert "Route rules" not in result.output
    close_app(app)


def test_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin: OddPlugin) -> None:
    (tmp_path / "configured_plugin.py").write_text(
        textwrap.dedent(
            """
            from flask_allow import Matcher, hookimpl

            class Even(Matcher):
                prefix = "even"

            @hookimpl
            def flask_allow_matchers():
                return [Even]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = Flask("plugins", root_path=str(tmp_path))
    app.config.update(
        ALLOW_LOAD_ENTRY_POINTS=False,
        ALLOW_PLUGINS=["configured_plugin"],
        ALLOW_DISABLE_PLUGINS=["flask_allow.accesslog.plugin"],
    )
    FlaskAllow(app, plugins=[plugin])
    result = app.test_cli_runner().invoke(args=["allow", "plugins"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "flask_allow.builtins.networks  built-in\n    hooks: flask_allow_matchers\n" in out
    assert "rule types: network (claims values without a prefix)" in out
    assert "flask_allow.builtins.listfile  built-in\n    hooks: flask_allow_matchers\n    rule types: file:" in out
    assert "flask_allow.builtins.proxies  built-in\n    hooks: flask_allow_client_address" in out
    assert "flask_allow.accesslog.plugin  blocked (ALLOW_DISABLE_PLUGINS)" in out
    assert "configured_plugin  ALLOW_PLUGINS\n    hooks: flask_allow_matchers\n    rule types: even:" in out
    assert "test_cli.OddPlugin@" in out and "constructor (plugins=)" in out
    assert "hooks: flask_allow_decision, flask_allow_matchers\n    rule types: odd:" in out
    close_app(app)


# -- flask allow test-config --------------------------------------------------------------------

BAD = {
    "ADDRESS_RESTRICTION": [{"ALLOW": ["10.0.0.300", "10.0.0.0/8"]}, {"DENY": "nope:x"}, {"ALOW": "x"}],
    "ALLOW_DEFAULT": "maybe",
    "ALLOW_TRUSTED_PROXIES": ["127.1"],
    "ALLOW_PROXY_HEADER": "X Bad",
    "ACCESS_LOG": {"filename": "x.log", "maxbytes": 5},
    "ADRESS_RESTRICTION": [],
    "ALLOW_DNS_TIMOUT": 2,
    "SECRET_KEY": "not ours, not reported",
}
BAD_LOCATIONS = [
    "ADRESS_RESTRICTION",
    "ALLOW_DNS_TIMOUT",
    "ACCESS_LOG",
    "ALLOW_DEFAULT",
    "ADDRESS_RESTRICTION[0].ALLOW[0]",
    "ADDRESS_RESTRICTION[1].DENY",
    "ADDRESS_RESTRICTION[2]",
    "ALLOW_PROXY_HEADER",
    "ALLOW_TRUSTED_PROXIES[0]",
]


def errors_in(output: str) -> list[str]:
    return [line.split(": error: ", 1)[1].split(":")[0] for line in output.splitlines() if ": error: " in line]


def test_test_config_reports_every_error(app: Flask, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(BAD))
    result = run(app, "test-config", str(path))
    assert result.exit_code == 1, result.output
    assert sorted(errors_in(result.output)) == sorted(BAD_LOCATIONS)
    assert "did you mean ADDRESS_RESTRICTION?" in result.output
    assert "'10.0.0.300'" in result.output and "known prefixes" in result.output
    assert result.output.splitlines()[-1] == f"{path}: 9 errors"
    assert not (tmp_path / "x.log").exists()


def test_test_config_clean_json_with_warnings(app: Flask, tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "block.txt").write_text("192.0.2.0/24\n")
    path = tmp_path / "good.json"
    path.write_text(
        json.dumps(
            {
                "ADDRESS_RESTRICTION": [{"DENY": "file:lists/block.txt"}, {"ALLOW": "10.0.0.1/8"}],
                "ALLOW_TRUSTED_PROXIES": ["localhost"],
                "ACCESS_LOG": str(tmp_path / "never-created.log"),
                "ALLOW_LOAD_ENTRY_POINTS": False,
            }
        )
    )
    result = run(app, "test-config", str(path))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == f"{path}: OK"
    assert "warning: ADDRESS_RESTRICTION[1].ALLOW: '10.0.0.1/8' has host bits set" in result.output
    assert not (tmp_path / "never-created.log").exists()


def test_test_config_uses_the_apps_constructor_plugins(app: Flask, tmp_path: Path) -> None:
    path = tmp_path / "odd.json"
    path.write_text(json.dumps({"ADDRESS_RESTRICTION": [{"DENY": "odd:"}], "ALLOW_LOAD_ENTRY_POINTS": False}))
    assert run(app, "test-config", str(path)).exit_code == 0


def test_test_config_toml(app: Flask, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('ADDRESS_RESTRICTION = [{ALLOW = "10.0.0.0/8"}, {DENY = "all"}]\nALLOW_DEFAULT = "deny"\n')
    assert run(app, "test-config", str(path)).exit_code == 0
    path.write_text('ADDRESS_RESTRICTION = [{DENY = "10.0.0.0/33"}]\nALLOW_REPORT_ONLY = "yes"\n')
    result = run(app, "test-config", str(path))
    assert result.exit_code == 1
    assert sorted(errors_in(result.output)) == ["ADDRESS_RESTRICTION[0].DENY", "ALLOW_REPORT_ONLY"]


def test_test_config_yaml(app: Flask, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("ADDRESS_RESTRICTION:\n  - ALLOW: 10.0.0.0/8\n  - DENY: [all, 10.0.0.1.2]\n")
    result = run(app, "test-config", str(path))
    assert result.exit_code == 1
    assert errors_in(result.output) == ["ADDRESS_RESTRICTION[1].DENY[1]"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("broken.json", '{"ADDRESS_RESTRICTION": [', "cannot read: line 1, column 26"),
        ("broken.toml", "ADDRESS_RESTRICTION = [", "cannot read"),
        ("list.json", '["10.0.0.1"]', "must hold a table of config keys, not list"),
    ],
)
def test_test_config_unreadable_files_exit_1(app: Flask, tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    result = run(app, "test-config", str(path))
    assert result.exit_code == 1
    assert message in result.output


def test_test_config_usage_errors_exit_2(app: Flask, tmp_path: Path) -> None:
    assert run(app, "test-config", str(tmp_path / "missing.json")).exit_code == 2
    (tmp_path / "config.ini").write_text("[x]\n")
    result = run(app, "test-config", str(tmp_path / "config.ini"))
    assert result.exit_code == 2 and "unknown file type" in result.output


# -- real subprocesses ----------------------------------------------------------------------------

APP_MODULE = """
from flask import Flask
from flask_allow import FlaskAllow

app = Flask(__name__)
app.config.update(
    ADDRESS_RESTRICTION=[{"ALLOW": "10.0.0.0/8"}, {"DENY": "all"}],
    ALLOW_TRUSTED_PROXIES=["127.0.0.1"],
    ALLOW_LOAD_ENTRY_POINTS=False,
)
allow = FlaskAllow(app)

@app.route("/")
def index():
    return "ok"

@app.route("/health")
@allow.exempt
def health():
    return "ok"
"""


def flask_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "guarded_app.py").write_text(APP_MODULE)
    return flask_allow_command(tmp_path, "guarded_app", *args)


def test_flask_allow_check_subprocess(tmp_path: Path) -> None:
    allowed = flask_cli(tmp_path, "check", "10.1.1.1", "127.0.0.1", "--header", "X-Forwarded-For: 10.2.2.2")
    assert allowed.returncode == 0, allowed.stderr
    assert "10.1.1.1 GET /: allowed" in allowed.stdout
    assert "client:     10.2.2.2 (peer 127.0.0.1 (trusted proxy); X-Forwarded-For 10.2.2.2)" in allowed.stdout
    denied = flask_cli(tmp_path, "check", "--json", "10.1.1.1", "203.0.113.5")
    assert denied.returncode == 1, denied.stderr
    results = [json.loads(line) for line in denied.stdout.splitlines()]
    assert [r["allowed"] for r in results] == [True, False]
    assert results[1]["decided_by"] == "ADDRESS_RESTRICTION[1].DENY 'all'"
    exempt = flask_cli(tmp_path, "check", "--path", "/health", "203.0.113.5")
    assert exempt.returncode == 0 and "decided by: exempt" in exempt.stdout
    usage = flask_cli(tmp_path, "check")
    assert usage.returncode == 2


def test_standalone_test_config_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"ADDRESS_RESTRICTION": [{"ALLOW": "10.0.0.300"}], "ALLOW_DEFAULT": "nah"}))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-m", "flask_allow.cli", "test-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert sorted(errors_in(proc.stdout)) == ["ADDRESS_RESTRICTION[0].ALLOW", "ALLOW_DEFAULT"]
    assert proc.stderr == ""

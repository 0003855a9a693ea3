"""Tests of flask-allow-example: the env: rule type, and that installing it is all it takes."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from flask import Flask

from flask_allow import ConfigError, FlaskAllow
from flask_allow.testing import plugin_registered

PLUGIN_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The plugin module from this source tree (as ``pip install -e .`` would give it)."""
    monkeypatch.syspath_prepend(str(PLUGIN_ROOT))
    monkeypatch.delitem(sys.modules, "flask_allow_example", raising=False)
    module = importlib.import_module("flask_allow_example")
    yield module
    sys.modules.pop("flask_allow_example", None)


def make_app(config: dict[str, object]) -> Flask:
    app = Flask("example", root_path=str(PLUGIN_ROOT))
    app.config.update(config)

    @app.route("/")
    def index() -> str:
        return "ok"

    return app


def status(app: Flask, address: str) -> int:
    return app.test_client().get("/", environ_base={"REMOTE_ADDR": address}).status_code


def test_env_rule(example: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_NETWORKS", "10.0.0.0/8, 2001:db8::/32\n192.0.2.5-192.0.2.9")
    app = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "env:ADMIN_NETWORKS", "DENY": "all"}]})
    allow = FlaskAllow(app, plugins=[example])
    try:
        for address in ("10.1.2.3", "::ffff:10.1.2.3", "2001:db8::1", "192.0.2.7"):
            assert status(app, address) == 200, address
        for address in ("11.0.0.1", "2001:db9::1", "192.0.2.10"):
            assert status(app, address) == 403, address
        decision = allow.check("10.1.2.3")
        assert decision.rule.location == "ADDRESS_RESTRICTION[0].ALLOW"
        assert decision.rule.static  # compiled into flask_allow's index like any address rule
        monkeypatch.setenv("ADMIN_NETWORKS", "11.0.0.0/8")
        allow.reload(app)
        assert status(app, "10.1.2.3") == 403
        assert status(app, "11.0.0.1") == 200
    finally:
        allow.state(app).close()


@pytest.mark.parametrize(
    ("value", "variable", "fragment"),
    [
        ("env:NOT_SET_ANYWHERE", None, "is not set"),
        ("env:BAD-NAME", None, "not an environment variable name"),
        ("env:ADMINS", "10.0.0.1, 10.0.0.300", "'10.0.0.300'"),
    ],
)
def test_env_rule_errors(
    example: ModuleType, monkeypatch: pytest.MonkeyPatch, value: str, variable: str | None, fragment: str
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    if variable is not None:
        monkeypatch.setenv("ADMINS", variable)
    app = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "localhost"}, {"ALLOW": value}]})
    with pytest.raises(ConfigError) as info:
        FlaskAllow(app, plugins=[example])
    assert info.value.location == "ADDRESS_RESTRICTION[1].ALLOW"
    assert fragment in str(info.value)


def test_with_the_testing_helper(example: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLOCKED", "192.0.2.0/24")
    app = make_app({})
    allow = FlaskAllow(app)
    try:
        with plugin_registered(app, example, config={"ADDRESS_RESTRICTION": [{"DENY": "env:BLOCKED"}]}):
            assert status(app, "192.0.2.1") == 403
            assert status(app, "192.0.3.1") == 200
        assert "ADDRESS_RESTRICTION" not in app.config
        assert status(app, "192.0.2.1") == 200
    finally:
        allow.state(app).close()


# -- installed for real, found through the entry point ---------------------------------------------


def _env_prefix_available(config: dict[str, object]) -> bool:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "env:PATH_IS_NOT_AN_ADDRESS"}], **config})
    try:
        FlaskAllow(app)
    except ConfigError as exc:
        # the prefix was taken when the error is the variable's (PATH_IS_NOT_AN_ADDRESS is not set)
        return "unknown rule type 'env'" not in str(exc)
    app.extensions["flask_allow"].close()
    return True


def test_installing_makes_the_prefix_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATH_IS_NOT_AN_ADDRESS", raising=False)
    if _env_prefix_available({}):
        pytest.skip("flask-allow-example is already installed in this environment")
    source = tmp_path / "source"  # built from a copy, so the source tree gets no build/ or egg-info
    shutil.copytree(PLUGIN_ROOT, source, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "flask_allow_example" / "__init__.py").is_file()
    assert not _env_prefix_available({})  # installed, but not yet on the path

    monkeypatch.syspath_prepend(str(target))
    monkeypatch.delitem(sys.modules, "flask_allow_example", raising=False)
    monkeypatch.setenv("ADMINS", "10.0.0.0/8")
    try:
        app = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "env:ADMINS", "DENY": "all"}]})
        allow = FlaskAllow(app)  # no plugins=, no ALLOW_PLUGINS: the entry point alone
        try:
            assert status(app, "10.0.0.1") == 200
            assert status(app, "192.0.2.1") == 403
            pm = allow.state(app).pm
            plugin = pm.get_plugin("example")
            assert plugin is sys.modules["flask_allow_example"]
            assert Path(plugin.__file__).is_relative_to(target)
            assert pm.flask_allow_origins["example"] == "entry point (flask-allow-example 1.0.0)"
        finally:
            allow.state(app).close()

        assert not _env_prefix_available({"ALLOW_LOAD_ENTRY_POINTS": False})
        assert not _env_prefix_available({"ALLOW_DISABLE_PLUGINS": ["example"]})
        assert _env_prefix_available({"ALLOW_DISABLE_PLUGINS": ["something-else"]})
    finally:
        sys.modules.pop("flask_allow_example", None)

"""The Flask extension: check(), per-app state, report-only, the denial and its rendering."""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeApp, get, lines, new_app, package_source, status
from flask import Flask, Response, request

from flask_allow import Client, Decision, FlaskAllow, hookimpl
from flask_allow.extension import AppState


def test_check_inside_an_app_context(make_app: MakeApp) -> None:
    allow = FlaskAllow()
    app = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "10.0.0.1"}, {"DENY": "10.0.0.0/8"}]}, extension=allow)
    with app.app_context():
        d = allow.check("10.1.2.3")
    assert isinstance(d, Decision)
    assert (d.allowed, d.action, d.reason) == (False, "DENY", "denied by ADDRESS_RESTRICTION[1].DENY '10.0.0.0/8'")
    assert (d.rule.action, d.rule.spec, d.rule.location) == ("DENY", "10.0.0.0/8", "ADDRESS_RESTRICTION[1].DENY")
    assert isinstance(d.client, Client) and d.client.address == "10.1.2.3" and d.client.request is None
    assert str(d.client.ip) == "10.1.2.3"
    with app.test_request_context():
        ok = allow.check("10.0.0.1")
    assert (ok.allowed, ok.action, ok.rule.location) == (True, "ALLOW", "ADDRESS_RESTRICTION[0].ALLOW")
    assert allow.check("192.0.2.1", app=app).rule is None  # app= works anywhere


def test_check_with_a_constructor_app_outside_a_context(tmp_path: Path) -> None:
    app = new_app({"ADDRESS_RESTRICTION": [{"DENY": "2001:db8::/32"}]})
    allow = FlaskAllow(app)
    try:
        d = allow.check("2001:db8::7")
        assert not d.allowed and d.rule.spec == "2001:db8::/32"
        assert allow.check("::ffff:10.0.0.1").client.ip.version == 4
        other = new_app({"ADDRESS_RESTRICTION": [{"ALLOW": "all"}]})
        allow.init_app(other)
        with other.app_context():  # the current app wins over the constructor's
            assert allow.check("2001:db8::7").allowed
        assert not allow.check("2001:db8::7").allowed
        other.extensions["flask_allow"].close()
    finally:
        allow.state(app).close()


def test_check_without_app_or_context_is_a_runtime_error(make_app: MakeApp) -> None:
    allow = FlaskAllow()
    make_app({}, extension=allow)
    with pytest.raises(RuntimeError, match="app context"):
        allow.check("10.0.0.1")
    with pytest.raises(RuntimeError, match="app context"):
        allow.reload()


def test_check_on_an_app_it_does_not_guard(make_app: MakeApp) -> None:
    allow = FlaskAllow()
    with pytest.raises(RuntimeError, match="not initialised"):
        allow.check("10.0.0.1", app=new_app())
    other = make_app({})  # guarded by another FlaskAllow
    with other.app_context(), pytest.raises(RuntimeError, match="not initialised"):
        allow.check("10.0.0.1")


def test_one_extension_serves_two_apps(make_app: MakeApp) -> None:
    allow = FlaskAllow()
    a = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}]}, extension=allow, name="a")
    b = make_app(
        {"ADDRESS_RESTRICTION": [{"DENY": "192.0.2.0/24"}], "ALLOW_DEFAULT": "deny"}, extension=allow, name="b"
    )
    assert (status(a, "10.0.0.1"), status(a, "192.0.2.1")) == (403, 200)
    assert (status(b, "10.0.0.1"), status(b, "192.0.2.1")) == (403, 403)
    assert b.extensions["flask_allow"].settings.default_allow is False
    with a.app_context():
        assert allow.check("192.0.2.1").allowed
    with b.app_context():
        assert not allow.check("192.0.2.1").allowed
    sa, sb = a.extensions["flask_allow"], b.extensions["flask_allow"]
    assert isinstance(sa, AppState) and isinstance(sb, AppState)
    assert sa is not sb and sa.pm is not sb.pm and sa.engine is not sb.engine
    assert sa.extension is allow and sb.extension is allow
    assert allow.state(a) is sa and allow.state(b) is sb
    a.config["ADDRESS_RESTRICTION"] = [{"ALLOW": "all"}]
    allow.reload(a)  # one app's reload leaves the other alone
    assert status(a, "10.0.0.1") == 200
    assert b.extensions["flask_allow"] is sb and status(b, "10.0.0.1") == 403


def test_the_decision_is_on_the_request(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "192.0.2.0/24"}]})
    seen: list[Decision] = []
    same: list[bool] = []

    @app.route("/who")
    def who() -> str:
        seen.append(request.environ["flask_allow.decision"])
        same.append(seen[0].client.request is request._get_current_object())  # type: ignore[attr-defined]
        return "ok"

    assert status(app, "192.0.2.9", "/who") == 200
    assert seen[0].rule.spec == "192.0.2.0/24" and same == [True]


def test_a_decision_does_not_keep_its_request_alive(make_app: MakeApp) -> None:
    """The decision sits in the request's environ; the client holds the request weakly, so the
    two make no reference cycle and the request is freed when it ends, not by the collector."""
    app = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "192.0.2.0/24"}]})
    seen: list[Decision] = []

    @app.route("/who")
    def who() -> str:
        seen.append(request.environ["flask_allow.decision"])
        return "ok"

    gc.disable()
    try:
        assert status(app, "192.0.2.9", "/who") == 200
        assert seen[0].client.request is None
    finally:
        gc.enable()


# -- report-only ---------------------------------------------------------------------------------

observed: list[Decision] = []
with_request: list[bool] = []  # whether each observed decision had its request when observed


class Observer:
    @hookimpl
    def flask_allow_decision(self, decision: Decision) -> None:
        observed.append(decision)
        with_request.append(decision.client.request is not None)


def test_report_only_never_blocks_but_reports(make_app: MakeApp) -> None:
    observed.clear()
    with_request.clear()
    app = make_app(
        {"ADDRESS_RESTRICTION": [{"DENY": "all"}], "ALLOW_REPORT_ONLY": True, "ALLOW_DEFAULT": "deny"},
        plugins=[Observer()],
    )
    for address in ("10.0.0.1", "2001:db8::1", "garbage"):
        response = get(app, address)
        assert response.status_code == 200 and response.get_data(as_text=True) == "ok"
    assert [d.allowed for d in observed] == [False, False, False]
    assert [d.enforced for d in observed] == [False, False, False]
    assert observed[0].reason == "denied by ADDRESS_RESTRICTION[0].DENY 'all'"
    assert with_request == [True, True, True]
    assert not app.extensions["flask_allow"].extension.check("10.0.0.1", app=app).allowed


def test_decision_hook_called_once_per_request(make_app: MakeApp) -> None:
    observed.clear()
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}]}, plugins=[Observer()])
    status(app, "10.0.0.1")
    status(app, "192.0.2.1")
    assert [(d.client.address, d.allowed, d.enforced) for d in observed] == [
        ("10.0.0.1", False, True),
        ("192.0.2.1", True, True),
    ]


# -- the denial --------------------------------------------------------------------------------------


def test_deny_status_rendered_by_the_app_error_handler(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ALLOW_DENY_STATUS": 404})

    @app.errorhandler(404)
    def not_found(error: Exception) -> tuple[str, int]:
        return f"nothing here for {request.remote_addr}", 404

    response = get(app, "10.0.0.1")
    assert response.status_code == 404
    assert response.get_data(as_text=True) == "nothing here for 10.0.0.1"
    assert status(app, "192.0.2.1") == 200


def test_default_403_rendered_by_the_app_error_handler(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "all"}]})

    @app.errorhandler(403)
    def forbidden(error: Exception) -> tuple[dict[str, str], int]:
        return {"error": "forbidden"}, 403

    response = get(app, "2001:db8::1")
    assert response.status_code == 403 and response.get_json() == {"error": "forbidden"}


class Renderer:
    @hookimpl
    def flask_allow_deny_response(self, decision: Decision, app: Flask) -> Response | None:
        if decision.client.address.startswith("10."):
            return Response(f"go away: {decision.reason} ({app.name})", status=451, mimetype="text/plain")
        return None


def test_deny_response_plugin_renders_the_denial(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": ["10.0.0.0/8", "192.0.2.0/24"]}]}, plugins=[Renderer()])
    handled: list[int] = []

    @app.errorhandler(403)
    def forbidden(error: Exception) -> tuple[str, int]:
        handled.append(403)
        return "handler", 403

    response = get(app, "10.0.0.1")
    assert response.status_code == 451
    assert response.get_data(as_text=True) == "go away: denied by ADDRESS_RESTRICTION[0].DENY[0] '10.0.0.0/8' (guarded)"
    assert handled == []
    response = get(app, "192.0.2.1")  # the plugin said None: the default denial
    assert (response.status_code, response.get_data(as_text=True), handled) == (403, "handler", [403])


class BrokenRenderer:
    @hookimpl
    def flask_allow_deny_response(self, decision: Decision) -> Response:
        raise RuntimeError("template missing")


def test_deny_response_plugin_that_raises_falls_back_to_the_status(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "all"}]}, plugins=[BrokenRenderer()])
    with caplog.at_level(logging.ERROR):
        assert status(app, "10.0.0.1") == 403
    assert any("flask_allow_deny_response" in r.getMessage() and r.exc_info for r in caplog.records)


class BrokenObserver:
    @hookimpl
    def flask_allow_decision(self, decision: Decision) -> None:
        raise ValueError("metrics backend down")


def test_decision_plugin_that_raises_breaks_neither_request_nor_log(
    make_app: MakeApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "access.log"
    app = make_app(
        {"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ACCESS_LOG": str(log)},
        plugins=[BrokenObserver()],
    )
    with caplog.at_level(logging.ERROR):
        assert status(app, "10.0.0.1") == 403
        assert status(app, "192.0.2.1") == 200
    assert len(lines(log)) == 2
    failures = [r for r in caplog.records if r.name == app.logger.name and "flask_allow_decision" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info for r in failures)


class HeaderAddress:
    """Says the client is whoever X-Test-Client names (a test stand-in for a proxy plugin)."""

    @hookimpl
    def flask_allow_client_address(self, request: Any) -> str | None:
        return request.headers.get("X-Test-Client")


class BrokenAddress:
    @hookimpl
    def flask_allow_client_address(self, request: Any) -> str:
        raise KeyError("boom")


def test_client_address_plugin(make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}]}, plugins=[HeaderAddress()])
    assert get(app, "192.0.2.1", headers={"X-Test-Client": "10.0.0.1"}).status_code == 403
    assert get(app, "10.0.0.1", headers={"X-Test-Client": "192.0.2.1"}).status_code == 200
    assert get(app, "10.0.0.1").status_code == 403  # None: the built-in answer (remote_addr)

    broken = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}]}, plugins=[BrokenAddress()])
    with caplog.at_level(logging.ERROR):
        assert status(broken, "192.0.2.1") == 403  # fail closed, not 500
    assert any("client address" in r.getMessage() for r in caplog.records)


def test_no_request_path_raises_anything_but_the_denial(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ALLOW_DEFAULT": "deny"})
    app.config["PROPAGATE_EXCEPTIONS"] = True  # any exception would surface here, not as a 500
    for address in ("", "x" * 10000, "\x00", "::ffff:", "1.2.3.4%eth0", "[::1]", "::1]", "10.0.0.1:80"):
        assert status(app, address) == 403


# -- packaging ---------------------------------------------------------------------------------------


def test_py_typed_is_shipped(tmp_path: Path) -> None:
    source = package_source(tmp_path / "src")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            "dist",
            ".",
        ],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = (source / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "flask_allow/py.typed" in names
    assert "flask_allow/builtins/networks.py" in names

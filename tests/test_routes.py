"""Per-route and per-blueprint rules: ``@allow.exempt`` and ``@allow.restrict``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import REPO_ROOT, close_app, lines
from flask import Blueprint, Flask
from flask.views import MethodView, View

from flask_allow import ConfigError, Decision, FlaskAllow, Matcher, hookimpl
from flask_allow.routes import MARKS_ATTR

INSIDE = "10.1.2.3"
OUTSIDE = "198.51.100.9"
BLOCKED = "192.0.2.66"
RULES = [{"DENY": "192.0.2.0/24"}]


class Recorder:
    """A plugin that records every decision (exactly one per request)."""

    def __init__(self) -> None:
        self.decisions: list[Decision] = []

    @hookimpl
    def flask_allow_decision(self, decision: Decision) -> None:
        self.decisions.append(decision)


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    made: list[Flask] = []
    yield made
    for app in made:
        close_app(app)


@pytest.fixture
def new(apps: list[Flask], tmp_path: Path) -> Any:
    """``new(**config)``: a bare app (global rules deny 192.0.2.0/24), closed at teardown."""

    def factory(**config: Any) -> Flask:
        app = Flask("routes", root_path=str(tmp_path))
        app.config.update({"ADDRESS_RESTRICTION": RULES, "ALLOW_LOAD_ENTRY_POINTS": False, **config})
        apps.append(app)
        return app

    return factory


def status(app: Flask, address: str, path: str, method: str = "GET") -> int:
    response = app.test_client().open(path, method=method, environ_base={"REMOTE_ADDR": address})
    response.close()
    return int(response.status_code)


# -- exempt ----------------------------------------------------------------------------


@pytest.mark.parametrize("route_first", [True, False])
def test_exempt_view_either_decorator_order(new: Any, route_first: bool) -> None:
    app = new()
    allow = FlaskAllow(app)
    if route_first:

        @app.route("/health")
        @allow.exempt
        def health() -> str:
            return "ok"

    else:

        @allow.exempt
        @app.route("/health")
        def health() -> str:
            return "ok"

    @app.route("/other")
    def other() -> str:
        return "ok"

    assert status(app, BLOCKED, "/health") == 200
    assert status(app, BLOCKED, "/other") == 403
    assert status(app, OUTSIDE, "/other") == 200


def test_exempt_with_parentheses_and_before_init_app(new: Any) -> None:
    allow = FlaskAllow()
    app = new()

    @app.route("/health")
    @allow.exempt()
    def health() -> str:
        return "ok"

    allow.init_app(app)
    assert status(app, BLOCKED, "/health") == 200
    assert status(app, BLOCKED, "/") == 403  # no route: the global rules (404 would be after them)


def test_exempt_blueprint_before_and_after_registration(new: Any) -> None:
    app = new()
    allow = FlaskAllow(app)
    early, late = Blueprint("early", __name__), Blueprint("late", __name__)
    for bp in (early, late):
        bp.add_url_rule("/x", "x", lambda: "ok")
    allow.exempt(early)
    app.register_blueprint(early, url_prefix="/early")
    app.register_blueprint(late, url_prefix="/late")
    allow.exempt(late)
    assert status(app, BLOCKED, "/early/x") == 200
    assert status(app, BLOCKED, "/late/x") == 200


def test_exempt_requests_are_logged_once_as_exempt(new: Any, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = new(ACCESS_LOG=str(log))
    recorder = Recorder()
    allow = FlaskAllow(app, plugins=[recorder])

    @allow.exempt
    @app.route("/health")
    def health() -> str:
        return "ok"

    assert status(app, BLOCKED, "/health") == 200
    (decision,) = recorder.decisions
    assert decision.exempt and not decision.enforced and decision.allowed
    assert decision.scope == "view:health"  # the endpoint, not the function's qualified name
    (line,) = lines(log)
    assert " -    INFO - 192.0.2.66 allowed: exempt from the rules GET http://localhost/health" in line


def test_exempt_view_inside_a_restricted_blueprint(new: Any) -> None:
    app = new()
    allow = FlaskAllow(app)
    admin = Blueprint("admin", __name__)

    @admin.route("/panel")
    def panel() -> str:
        return "panel"

    @admin.route("/ping")
    @allow.exempt
    def ping() -> str:
        return "pong"

    allow.restrict([{"ALLOW": "10.0.0.0/8"}])(admin)
    app.register_blueprint(admin, url_prefix="/admin")
    assert status(app, INSIDE, "/admin/panel") == 200
    assert status(app, OUTSIDE, "/admin/panel") == 403
    assert status(app, OUTSIDE, "/admin/ping") == 200
    assert status(app, BLOCKED, "/admin/ping") == 200


# -- restrict --------------------------------------------------------------------------


@pytest.mark.parametrize("route_first", [True, False])
def test_restrict_view_either_decorator_order(new: Any, route_first: bool) -> None:
    app = new()
    allow = FlaskAllow(app)
    only_inside = allow.restrict([{"ALLOW": "10.0.0.0/8"}])
    if route_first:

        @app.route("/admin")
        @only_inside
        def admin() -> str:
            return "admin"

    else:

        @only_inside
        @app.route("/admin")
        def admin() -> str:
            return "admin"

    assert status(app, INSIDE, "/admin") == 200
    assert status(app, OUTSIDE, "/admin") == 403  # the route's default is deny
    assert status(app, OUTSIDE, "/elsewhere") == 404  # global allows; no route
    assert status(app, "192.0.2.1", "/admin") == 403  # the global rules come first


def test_restrict_runs_after_the_global_rules(new: Any) -> None:
    app = new()
    recorder = Recorder()
    allow = FlaskAllow(app, plugins=[recorder])

    @app.route("/admin")
    @allow.restrict([{"ALLOW": "192.0.2.0/24"}])
    def admin() -> str:
        return "admin"

    assert status(app, BLOCKED, "/admin") == 403
    assert recorder.decisions[-1].rule is not None
    assert recorder.decisions[-1].rule.location == "ADDRESS_RESTRICTION[0].DENY"
    assert status(app, OUTSIDE, "/admin") == 403
    decision = recorder.decisions[-1]
    assert decision.scope == "view:admin" and decision.rule is None
    assert decision.reason == f"denied by default of {decision.scope} (no rule matched)"
    assert len(recorder.decisions) == 2


def test_restrict_default_allow_and_its_deny_rules(new: Any) -> None:
    app = new()
    allow = FlaskAllow(app)

    @app.route("/api")
    @allow.restrict([{"DENY": "198.51.100.0/24"}], default="allow")
    def api() -> str:
        return "api"

    assert status(app, OUTSIDE, "/api") == 403
    assert status(app, INSIDE, "/api") == 200


def test_restrict_stacks_blueprint_and_view(new: Any) -> None:
    app = new()
    allow = FlaskAllow(app)
    outer, inner = Blueprint("outer", __name__), Blueprint("inner", __name__)

    @inner.route("/deep")
    @allow.restrict([{"ALLOW": "10.1.0.0/16"}])
    def deep() -> str:
        return "deep"

    @inner.route("/shallow")
    def shallow() -> str:
        return "shallow"

    allow.restrict([{"ALLOW": "10.0.0.0/8"}])(outer)
    outer.register_blueprint(inner, url_prefix="/inner")
    app.register_blueprint(outer, url_prefix="/outer")
    assert status(app, INSIDE, "/outer/inner/deep") == 200
    assert status(app, "10.2.0.1", "/outer/inner/deep") == 403  # outer allows, the view does not
    assert status(app, "10.2.0.1", "/outer/inner/shallow") == 200
    assert status(app, OUTSIDE, "/outer/inner/shallow") == 403


def test_restrict_blueprint_registered_twice_under_two_names(new: Any) -> None:
    app = new()
    allow = FlaskAllow(app)
    bp = Blueprint("api", __name__)
    bp.add_url_rule("/x", "x", lambda: "x")
    app.register_blueprint(bp, url_prefix="/v1")
    app.register_blueprint(bp, url_prefix="/v2", name="api_v2")
    allow.restrict([{"ALLOW": "10.0.0.0/8"}])(bp)
    for path in ("/v1/x", "/v2/x"):
        assert status(app, INSIDE, path) == 200
        assert status(app, OUTSIDE, path) == 403


def test_exempt_and_restrict_on_one_view_applies_only_its_rules(new: Any) -> None:
    app = new()
    allow = FlaskAllow(app)

    @app.route("/partner")
    @allow.exempt
    @allow.restrict([{"ALLOW": "192.0.2.0/24"}])
    def partner() -> str:
        return "partner"

    assert status(app, BLOCKED, "/partner") == 200  # the global DENY is skipped
    assert status(app, OUTSIDE, "/partner") == 403


# -- class-based and async views -----------------------------------------------------------


class Admin(MethodView):
    def get(self) -> str:
        return "get"

    def post(self) -> str:
        return "post"


def test_restrict_method_view_class(new: Any) -> None:
    app = new()
    allow = FlaskAllow(app)

    class Restricted(Admin):
        pass

    allow.restrict([{"ALLOW": "10.0.0.0/8"}])(Restricted)
    app.add_url_rule("/admin", view_func=Restricted.as_view("admin"))
    app.add_url_rule("/open", view_func=Admin.as_view("open"))
    for method in ("GET", "POST"):
        assert status(app, INSIDE, "/admin", method) == 200
        assert status(app, OUTSIDE, "/admin", method) == 403
        assert status(app, OUTSIDE, "/open", method) == 200


def test_subclass_inherits_the_restriction_of_its_base(new: Any) -> None:
    app = new()
    allow = FlaskAllow(app)

    @allow.restrict([{"ALLOW": "10.0.0.0/8"}])
    class Base(View):
        def dispatch_request(self) -> str:
            return "base"

    class Child(Base):
        pass

    allow.restrict([{"ALLOW": "10.1.0.0/16"}])(Child)
    app.add_url_rule("/child", view_func=Child.as_view("child"))
    assert status(app, INSIDE, "/child") == 200
    assert status(app, "10.2.0.1", "/child") == 403
    assert status(app, OUTSIDE, "/child") == 403


def test_restrict_the_as_view_function_and_class_decorators(new: Any) -> None:
    app = new()
    allow = FlaskAllow(app)

    class Health(MethodView):
        decorators: ClassVar[list[Any]] = [allow.exempt]

        def get(self) -> str:
            return "ok"

    app.add_url_rule("/health", view_func=Health.as_view("health"))
    app.add_url_rule("/admin", view_func=allow.restrict([{"ALLOW": "10.0.0.0/8"}])(Admin.as_view("admin")))
    assert status(app, BLOCKED, "/health") == 200
    assert status(app, INSIDE, "/admin") == 200
    assert status(app, OUTSIDE, "/admin") == 403


@pytest.mark.parametrize("route_first", [True, False])
def test_async_views(new: Any, route_first: bool) -> None:
    app = new()
    allow = FlaskAllow(app)
    restrict = allow.restrict([{"ALLOW": "10.0.0.0/8"}])
    if route_first:

        @app.route("/async")
        @restrict
        async def view() -> str:
            return "async"

        @app.route("/async-health")
        @allow.exempt
        async def health() -> str:
            return "ok"

    else:

        @restrict
        @app.route("/async")
        async def view() -> str:
            return "async"

        @allow.exempt
        @app.route("/async-health")
        async def health() -> str:
            return "ok"

    response = app.test_client().get("/async", environ_base={"REMOTE_ADDR": INSIDE})
    assert (response.status_code, response.get_data(as_text=True)) == (200, "async")
    assert status(app, OUTSIDE, "/async") == 403
    assert status(app, BLOCKED, "/async-health") == 200


def test_static_files_of_the_app_and_of_one_blueprint(new: Any, tmp_path: Path) -> None:
    for folder in ("static", "assets", "other"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "logo.txt").write_text("logo")
    app = new(ADDRESS_RESTRICTION=[{"DENY": "all"}])
    allow = FlaskAllow(app)
    allow.exempt(app.view_functions["static"])
    assets = Blueprint("assets", __name__, static_folder=str(tmp_path / "assets"), static_url_path="/a")
    other = Blueprint("other", __name__, static_folder=str(tmp_path / "other"), static_url_path="/o")
    allow.exempt(assets.send_static_file)  # a bound method: only this blueprint's static view
    app.register_blueprint(assets)
    app.register_blueprint(other)
    assert status(app, BLOCKED, "/static/logo.txt") == 200
    assert status(app, BLOCKED, "/a/logo.txt") == 200
    assert status(app, BLOCKED, "/o/logo.txt") == 403
    assert status(app, BLOCKED, "/") == 403


def test_only_views_and_blueprints_can_be_marked() -> None:
    allow = FlaskAllow()
    with pytest.raises(TypeError, match="view function"):
        allow.exempt(42)
    with pytest.raises(TypeError, match="view function"):
        allow.restrict([])("static")


# -- errors at registration or init_app --------------------------------------------------------


def test_invalid_rules_at_registration_on_a_guarded_app(new: Any) -> None:
    app = new()
    allow = FlaskAllow(app)

    def admin() -> str:
        return "admin"

    with pytest.raises(ConfigError) as info:
        allow.restrict([{"ALLOW": ["10.0.0.300", "10.0.0.0/8"]}, {"ALOW": "x"}])(admin)
    locations = [error.location for error in info.value.errors]
    assert locations == [
        "view:test_routes.test_invalid_rules_at_registration_on_a_guarded_app.<locals>.admin[0].ALLOW[0]",
        "view:test_routes.test_invalid_rules_at_registration_on_a_guarded_app.<locals>.admin[1]",
    ]
    app.add_url_rule("/admin", view_func=admin)
    assert status(app, OUTSIDE, "/admin") == 200  # nothing half-applied: the view is not marked


def test_invalid_rules_before_init_app_fail_init_app(new: Any) -> None:
    allow = FlaskAllow()

    @allow.restrict([{"DENY": "nonsense:1"}])
    def admin() -> str:
        return "admin"

    app = new()
    with pytest.raises(ConfigError, match=r"view:.*admin\[0\]\.DENY.*known prefixes"):
        allow.init_app(app)
    assert "flask_allow" not in app.extensions


@pytest.mark.parametrize(
    ("rules", "default", "match"),
    [
        ([], "maybe", r"restrict\(default=...\): must be 'allow' or 'deny'"),
        ({"ALLOW": "all"}, "deny", r"restrict\(rules\): must be a list"),
        ("10.0.0.0/8", "deny", r"restrict\(rules\): must be a list"),
    ],
)
def test_invalid_restrict_arguments_fail_at_once(rules: Any, default: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FlaskAllow().restrict(rules, default=default)


def test_restrict_nothing_means_deny_all(new: Any) -> None:
    app = new()
    allow = FlaskAllow(app)
    app.add_url_rule("/closed", view_func=allow.restrict([])(lambda: "x"))
    assert status(app, INSIDE, "/closed") == 403


# -- reload, report-only, several apps, proxies --------------------------------------------


def test_reload_recompiles_route_rules(new: Any, tmp_path: Path) -> None:
    listed = tmp_path / "admins.txt"
    listed.write_text("10.0.0.0/8\n")
    app = new()
    allow = FlaskAllow(app)

    @app.route("/admin")
    @allow.restrict([{"ALLOW": "file:admins.txt"}])
    def admin() -> str:
        return "admin"

    @app.route("/health")
    @allow.exempt
    def health() -> str:
        return "ok"

    assert status(app, INSIDE, "/admin") == 200
    old = app.extensions["flask_allow"].routes
    listed.write_text("198.51.100.0/24\n")
    app.config["ADDRESS_RESTRICTION"] = [{"DENY": "203.0.113.0/24"}]
    allow.reload(app)
    assert app.extensions["flask_allow"].routes is not old
    assert status(app, INSIDE, "/admin") == 403
    assert status(app, OUTSIDE, "/admin") == 200
    assert status(app, "203.0.113.1", "/admin") == 403
    assert status(app, "203.0.113.1", "/health") == 200
    listed.write_text("not an address\n")
    with pytest.raises(ConfigError, match=r"admins\.txt, line 1"):
        allow.reload(app)
    assert status(app, OUTSIDE, "/admin") == 200  # the old rules stay


def test_report_only_lets_a_route_denial_through(new: Any) -> None:
    app = new(ALLOW_REPORT_ONLY=True)
    recorder = Recorder()
    allow = FlaskAllow(app, plugins=[recorder])
    app.add_url_rule("/admin", view_func=allow.restrict([{"ALLOW": "10.0.0.0/8"}])(lambda: "x"))
    assert status(app, OUTSIDE, "/admin") == 200
    (decision,) = recorder.decisions
    assert not decision.allowed and not decision.enforced and not decision.exempt


def test_one_extension_several_apps(new: Any) -> None:
    allow = FlaskAllow()

    @allow.restrict([{"ALLOW": "10.0.0.0/8"}])
    def admin() -> str:
        return "admin"

    first, second = new(), new()
    allow.init_app(first)
    allow.init_app(second)
    first.add_url_rule("/admin", view_func=admin)
    second.add_url_rule("/admin", view_func=admin)
    late = Blueprint("late", __name__)
    late.add_url_rule("/x", "x", lambda: "x")
    allow.restrict([{"ALLOW": "10.1.0.0/16"}])(late)  # compiled for both apps at once
    second.register_blueprint(late)
    for app in (first, second):
        assert status(app, INSIDE, "/admin") == 200
        assert status(app, OUTSIDE, "/admin") == 403
    assert status(second, "10.2.0.1", "/x") == 403
    assert status(second, INSIDE, "/x") == 200


def test_marks_of_another_extension_do_not_apply(new: Any) -> None:
    mine, theirs = FlaskAllow(), FlaskAllow()

    @theirs.restrict([{"ALLOW": "10.0.0.0/8"}])
    def view() -> str:
        return "x"

    app = new()
    mine.init_app(app)
    app.add_url_rule("/x", view_func=view)
    assert status(app, OUTSIDE, "/x") == 200


def test_unknown_client_is_denied_on_restricted_routes_but_not_exempt_ones(new: Any) -> None:
    app = new(ADDRESS_RESTRICTION=None, ALLOW_TRUSTED_PROXIES=["10.0.0.1"])
    allow = FlaskAllow(app)
    app.add_url_rule("/health", view_func=allow.exempt(lambda: "ok"), endpoint="health")
    app.add_url_rule("/admin", view_func=allow.restrict([{"ALLOW": "all"}])(lambda: "x"), endpoint="admin")
    forged = {"environ_base": {"REMOTE_ADDR": "10.0.0.1"}, "headers": {"X-Forwarded-For": "unknown"}}
    client = app.test_client()
    assert client.get("/health", **forged).status_code == 200
    assert client.get("/admin", **forged).status_code == 403
    assert client.get("/", **forged).status_code == 403


# -- how route rules are named -------------------------------------------------------------


class Where(Matcher):
    """A dynamic rule type that matches nothing and records where its context says it stands."""

    prefix = "where"
    takes_value = False
    seen: ClassVar[list[str]] = []

    def matches(self, client: Any) -> bool:
        self.seen.append(self.context.location)
        return False


class WherePlugin:
    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [Where]


def intranet_blueprint(allow: FlaskAllow) -> Blueprint:
    """A blueprint factory: its views' qualified names hold ``<locals>``."""
    bp = Blueprint("intranet", __name__)

    @bp.route("/ops")
    @allow.restrict([{"ALLOW": ["where:", "10.0.0.0/8", "10.1.0.0/16"]}])  # applied before the endpoint exists
    def ops() -> str:
        return "ops"

    @bp.route("/ping")
    @allow.exempt
    def ping() -> str:
        return "pong"

    return bp


def test_factory_routes_are_named_for_their_endpoint(new: Any, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = new(ACCESS_LOG=str(log))
    recorder = Recorder()
    allow = FlaskAllow(plugins=[recorder, WherePlugin()])
    allow.init_app(app)  # as a create_app() does: guarded first, blueprints registered after
    app.register_blueprint(intranet_blueprint(allow))
    Where.seen.clear()
    assert status(app, OUTSIDE, "/ops") == 403
    assert status(app, INSIDE, "/ops") == 200
    assert status(app, BLOCKED, "/ping") == 200
    denied, allowed, exempt = recorder.decisions
    assert denied.scope == "view:intranet.ops"
    assert denied.reason == "denied by default of view:intranet.ops (no rule matched)"
    assert allowed.reason == "allowed by view:intranet.ops[0].ALLOW[1] '10.0.0.0/8'"
    assert exempt.scope == "view:intranet.ping"
    assert Where.seen == ["view:intranet.ops[0].ALLOW[0]"] * 2  # the rule's own messages name it too
    assert "198.51.100.9 denied by default of view:intranet.ops (no rule matched) GET" in lines(log)[0]
    assert "<locals>" not in log.read_text(encoding="utf-8")
    lint = "view:intranet.ops[0].ALLOW[2] '10.1.0.0/16' can never match: earlier rules cover all of it"
    assert lint in app.extensions["flask_allow"].lints()

    listed = app.test_cli_runner().invoke(args=["allow", "rules"])
    assert listed.exit_code == 0, listed.output
    assert "view:intranet.ops: default deny" in listed.output
    assert "view:intranet.ping: exempt" in listed.output
    assert "view:intranet.ops[0].ALLOW[1]" in listed.output
    assert f"- {lint}" in listed.output
    assert "<locals>" not in listed.output
    checked = app.test_cli_runner().invoke(args=["allow", "check", "--path", "/ops", OUTSIDE, "--json"])
    assert json.loads(checked.output)["rule_lists"] == ["ADDRESS_RESTRICTION", "view:intranet.ops"]

    allow.reload(app)  # compiled again, now with the endpoint known
    recorder.decisions.clear()
    assert status(app, OUTSIDE, "/ops") == 403
    assert recorder.decisions[0].reason == "denied by default of view:intranet.ops (no rule matched)"


def test_each_app_names_a_shared_view_for_its_own_endpoint(new: Any) -> None:
    recorder = Recorder()
    allow = FlaskAllow(plugins=[recorder])

    @allow.restrict([{"ALLOW": "10.0.0.0/8"}])
    def admin() -> str:
        return "admin"

    first, second = new(), new()
    first.add_url_rule("/admin", "alpha", admin)
    allow.init_app(first)  # the endpoint exists: compiled with its name
    allow.init_app(second)
    second.add_url_rule("/admin", "beta", admin)
    assert status(first, OUTSIDE, "/admin") == 403
    assert status(second, OUTSIDE, "/admin") == 403
    assert [d.scope for d in recorder.decisions] == ["view:alpha", "view:beta"]


def test_blueprints_are_named_as_registered(new: Any) -> None:
    app = new()
    recorder = Recorder()
    allow = FlaskAllow(app, plugins=[recorder])
    parent, child = Blueprint("parent", __name__), Blueprint("child", __name__)
    child.add_url_rule("/x", "x", lambda: "x")
    allow.restrict([{"ALLOW": "10.0.0.0/8"}])(child)
    parent.register_blueprint(child, url_prefix="/child")
    app.register_blueprint(parent, url_prefix="/parent")
    twice = Blueprint("twice", __name__)
    twice.add_url_rule("/y", "y", lambda: "y")
    allow.restrict([{"ALLOW": "10.0.0.0/8"}])(twice)
    app.register_blueprint(twice, url_prefix="/one")
    app.register_blueprint(twice, url_prefix="/two", name="two")
    assert status(app, OUTSIDE, "/parent/child/x") == 403
    assert status(app, OUTSIDE, "/two/y") == 403
    assert [d.scope for d in recorder.decisions] == ["blueprint:parent.child", "blueprint:twice"]


def test_a_mark_found_at_several_endpoints_keeps_its_own_label(new: Any) -> None:
    app = new()
    recorder = Recorder()
    allow = FlaskAllow(app, plugins=[recorder])

    @allow.restrict([{"ALLOW": "10.0.0.0/8"}])
    class Base(View):
        def dispatch_request(self) -> str:
            return "x"

    class One(Base):
        pass

    app.add_url_rule("/one", view_func=One.as_view("one"))
    app.add_url_rule("/two", view_func=Base.as_view("two"))
    assert status(app, OUTSIDE, "/one") == 403
    (decision,) = recorder.decisions
    assert decision.scope == f"view:{__name__}.{Base.__qualname__}"


def test_rules_compiled_by_init_app_name_the_endpoint_in_errors(new: Any) -> None:
    app = new()

    def ops() -> str:
        return "ops"

    allow = FlaskAllow()
    allow.restrict([{"DENY": "nonsense:1"}])(ops)
    app.add_url_rule("/ops", view_func=ops)
    with pytest.raises(ConfigError) as info:
        allow.init_app(app)
    assert [e.location for e in info.value.errors] == ["view:ops[0].DENY"]

    guarded = new()
    other = FlaskAllow(guarded)
    guarded.add_url_rule("/ops", view_func=ops)
    with pytest.raises(ConfigError) as info:
        other.restrict([{"ALLOW": "10.0.0.300"}])(ops)
    assert [e.location for e in info.value.errors] == [f"view:{__name__}.{ops.__qualname__}[0].ALLOW"]  # where applied
    assert status(guarded, OUTSIDE, "/ops") == 200  # nothing half-applied: the view is not marked
    assert other.route_marks not in getattr(ops, MARKS_ATTR)


def test_docs_example_runs() -> None:
    docs = REPO_ROOT / "docs" / "routes.md"
    (code,) = re.findall(r"^```python\n(.*?)^```", docs.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)
    exec(compile(code, f"{docs}:example", "exec"), {"__name__": "routes_doc_example"})

"""A hostile client (every header, the method, the path, the query, the Host; the TCP peer only
without a proxy) against the promises of README.md and docs/security.md, rules.md, proxies.md,
routes.md and bans.md: the app's own code never runs first, marks on a wrapper stay on the
wrapper, no spelling of a route or of an address slips past, no forged hop is believed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import close_app, lines
from flask import Blueprint, Flask, abort, g

from flask_allow import FlaskAllow

PROXY = "127.0.0.1"
DENIED = "203.0.113.9"


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Callable[..., tuple[Flask, FlaskAllow, Path]]]:
    """``bare(config)``: a Flask app with no routes of its own (no catch-all), guarded, logging to a file."""
    made: list[Flask] = []

    def factory(config: dict[str, Any]) -> tuple[Flask, FlaskAllow, Path]:
        log = tmp_path / f"access-{len(made)}.log"
        app = Flask(f"adversarial{len(made)}", root_path=str(tmp_path), instance_path=str(tmp_path / "instance"))
        app.config.update({"ALLOW_LOAD_ENTRY_POINTS": False, "ACCESS_LOG": str(log), **config})
        made.append(app)
        return app, FlaskAllow(app), log

    yield factory
    for app in made:
        close_app(app)


def test_url_value_preprocessors_run_before_the_guard(bare: Any) -> None:
    """The guard is the app's first ``url_value_preprocessor``: Flask calls those before any
    ``before_request`` function (``Flask.preprocess_request``), and an app's own (the "pull the
    tenant out of the URL, 404 if unknown" pattern of the Flask docs) must not run for a client
    the rules deny, nor answer it first: that would tell it which tenants exist, and the request
    would leave no access-log line, no decision, and no count for ALLOW_AUTOBAN.
    """
    app, _, log = bare({"ADDRESS_RESTRICTION": [{"ALLOW": "10.0.0.0/8"}, {"DENY": "all"}]})
    tenants = {"acme"}
    ran: list[str | None] = []

    @app.url_value_preprocessor
    def pull_tenant(endpoint: str | None, values: dict[str, Any] | None) -> None:
        ran.append(endpoint)  # e.g. a database query for the tenant
        tenant = (values or {}).pop("tenant", None)
        if tenant is not None and tenant not in tenants:
            abort(404)
        g.tenant = tenant

    @app.route("/<tenant>/dashboard")
    def dashboard() -> str:
        return f"dashboard of {g.tenant}"

    client = app.test_client()
    statuses = [
        client.get(f"/{tenant}/dashboard", environ_base={"REMOTE_ADDR": DENIED}).status_code
        for tenant in ("acme", "no-such-tenant")
    ]
    assert statuses == [403, 403], "a denied client can tell which tenants exist"
    assert len(lines(log)) == 2, "a request stopped by a url_value_preprocessor left no access-log line"
    assert ran == [], "the app's code ran for a client the rules deny"


def test_exempt_on_a_functools_wraps_wrapper_does_not_exempt_the_wrapped_view(bare: Any) -> None:
    """``functools.wraps`` copies the wrapped function's ``__dict__`` into the wrapper, so the
    wrapper carries the view's marks; exempting the wrapper (a cached public alias of a view)
    must not exempt the view it wraps from the global rules (a blocklist, the implied
    ``banned`` rule): the wrapper gets a copy of its own.
    """
    app, allow, _ = bare({"ADDRESS_RESTRICTION": [{"DENY": "192.0.2.0/24"}]})

    @allow.restrict([{"DENY": "198.51.100.0/24"}], default="allow")
    def report() -> str:
        return "internal report"

    app.add_url_rule("/report", "report", report)

    def cached(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return view(*args, **kwargs)

        return wrapper

    app.add_url_rule("/public-report", "public_report", allow.exempt(cached(report)))
    client = app.test_client()
    assert client.get("/public-report", environ_base={"REMOTE_ADDR": "192.0.2.5"}).status_code == 200  # exempt
    assert client.get("/report", environ_base={"REMOTE_ADDR": "192.0.2.5"}).status_code == 403, (
        "exempting a wrapper exempted the view it wraps from the global rules"
    )


def test_restrict_on_a_functools_wraps_wrapper_does_not_restrict_the_wrapped_view(bare: Any) -> None:
    """The mirror case: a restriction put on a wrapper guards the wrapper, not the exempt view
    it wraps."""
    app, allow, _ = bare({"ADDRESS_RESTRICTION": [{"DENY": "192.0.2.0/24"}]})

    @allow.exempt
    def status() -> str:
        return "status"

    app.add_url_rule("/status", "status", status)

    @functools.wraps(status)
    def detailed() -> str:
        return "detailed status"

    app.add_url_rule("/status/detailed", "detailed", allow.restrict([{"ALLOW": "10.0.0.0/8"}])(detailed))
    client = app.test_client()
    assert client.get("/status/detailed", environ_base={"REMOTE_ADDR": DENIED}).status_code == 403
    assert client.get("/status", environ_base={"REMOTE_ADDR": DENIED}).status_code == 200, (
        "restricting a wrapper restricted the exempt view it wraps"
    )


def test_no_spelling_of_a_restricted_route_reaches_its_view(bare: Any) -> None:
    """Trailing slashes, case, percent-encoding, double slashes, dot segments, ``;`` parameters,
    every method (HEAD, OPTIONS, unknown ones, lower case), strict_slashes redirects, a blueprint
    registered twice: a client the route rules deny never gets the view's body, never a 5xx, and
    every request is exactly one access-log line."""
    app, allow, log = bare({"ADDRESS_RESTRICTION": [{"DENY": "192.0.2.0/24"}]})
    only_ten = [{"ALLOW": "10.0.0.0/8"}]

    @app.route("/admin")
    @allow.restrict(only_ten)
    def admin() -> str:
        return "SECRET admin"

    @app.route("/folder/")
    @allow.restrict(only_ten)
    def folder() -> str:
        return "SECRET folder"

    @app.route("/items/<int:number>", methods=["GET", "POST"])
    @allow.restrict(only_ten)
    def items(number: int) -> str:
        return "SECRET item"

    api = Blueprint("api", __name__)
    api.add_url_rule("/secret", "secret", lambda: "SECRET api")
    allow.restrict(only_ten)(api)
    app.register_blueprint(api, url_prefix="/api")
    app.register_blueprint(api, url_prefix="/v2", name="api_v2")

    paths = [
        "/admin", "/admin/", "/ADMIN", "/Admin", "/admin;x=1", "/admin%3Bx", "//admin", "/./admin",
        "/x/../admin", "/%61dmin", "/admin%2F", "/admin%00", "/admin?next=/", "/folder", "/folder/",
        "/folder//", "/FOLDER/", "/items/1", "/items/01", "/items/+1", "/items/1/", "/api/secret",
        "/v2/secret", "/api/secret/", "/api//secret", "/API/secret", "/api/./secret",
    ]  # fmt: skip
    methods = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "TRACE", "PROPFIND", "get"]
    client = app.test_client()
    count = 0
    for path in paths:
        for method in methods:
            for address in (DENIED, "::ffff:203.0.113.9", "2001:db8::9"):
                response = client.open(path, method=method, environ_base={"REMOTE_ADDR": address})
                count += 1
                assert response.status_code < 500, (method, path, address)
                assert b"SECRET" not in response.data, (method, path, address)
                assert response.status_code >= 300, (method, path, address)
    assert len(lines(log)) == count


def test_forwarded_quotes_cannot_swallow_the_element_the_proxy_appends(bare: Any) -> None:
    """RFC 7239: whatever the client sends ahead of what the trusted proxy appends (an open quote,
    an escaped quote, a half parameter, an extra element), the client chosen is the one the proxy
    named, or nobody (denied): never an address the client wrote."""
    app, _, _ = bare(
        {
            "ADDRESS_RESTRICTION": [{"ALLOW": "10.0.0.0/8"}, {"DENY": "all"}],
            "ALLOW_TRUSTED_PROXIES": [PROXY],
            "ALLOW_PROXY_HEADER": "Forwarded",
        }
    )
    app.add_url_rule("/", "index", lambda: "ok")
    forged = [
        'for=10.0.0.1;by="',
        'for=10.0.0.1, x="',
        'for="10.0.0.1\\',
        'for="10.0.0.1\\"',
        "for=10.0.0.1;for",
        "for=10.0.0.1,for=",
        'for="[::ffff:10.0.0.1]"',
        "for=10.0.0.1;",
        "for=10.0.0.1\t",
        'for=10.0.0.1, for="',
        'x="\\", for="',
    ]
    appended = ["for=203.0.113.9", 'for="203.0.113.9"', 'for="203.0.113.9:4711"', 'for="[2001:db8::9]"']
    client = app.test_client()
    for prefix in forged:
        for tail in appended:
            for joiner in (", ", ","):
                header = f"{prefix}{joiner}{tail}"
                response = client.get("/", environ_base={"REMOTE_ADDR": PROXY}, headers={"Forwarded": header})
                assert response.status_code == 403, header  # 10.0.0.1 would be allowed


@pytest.mark.parametrize(
    "hop",
    [
        "10.1.2.3",
        "10.1.2.3:4711",
        "::ffff:10.1.2.3",
        "::FFFF:10.1.2.3",
        "0:0:0:0:0:ffff:10.1.2.3",
        "::ffff:a01:203",
        "[::ffff:10.1.2.3]",
        "[::ffff:10.1.2.3]:443",
        "::ffff:10.1.2.3%eth0",
        "[::ffff:10.1.2.3%25eth0]:80",
        " 10.1.2.3\t",
    ],
)
def test_spellings_of_a_denied_and_of_a_banned_ipv4_client_through_a_trusted_proxy(bare: Any, hop: str) -> None:
    """Every spelling a trusted proxy may use for one IPv4 client (mapped, upper case, expanded,
    hex, brackets, ports, a zone) is that client, for a DENY rule and for a ban; spellings that are
    not an address (leading zeros, hex or octal dotted forms, a trailing dot) are unknown: denied."""
    app, _, _ = bare(
        {
            "ADDRESS_RESTRICTION": [{"DENY": "10.1.0.0/16"}, {"ALLOW": "all"}],
            "ALLOW_TRUSTED_PROXIES": [PROXY],
            "ALLOW_BANS": True,
            "ALLOW_BAN_STORE": "memory",
        }
    )
    app.add_url_rule("/", "index", lambda: "ok")
    state = app.extensions["flask_allow"]
    state.bans.ban("10.9.8.7", 600)
    client = app.test_client()

    def status(hop: str) -> int:
        headers = {"X-Forwarded-For": f"198.51.100.1, {hop}"}  # the client's own forgery, then the proxy's hop
        return client.get("/", environ_base={"REMOTE_ADDR": PROXY}, headers=headers).status_code

    assert status(hop) == 403  # the DENY rule
    banned = hop.replace("10.1.2.3", "10.9.8.7").replace("a01:203", "a09:807")
    assert status(banned) == 403  # the ban
    assert status(hop.replace("10.1.2.3", "10.2.0.1").replace("a01:203", "a02:1")) == 200  # neither
    for bad in ("010.2.0.1", "10.2.0.01", "0xa.2.0.1", "10.2.0.1.", "10.2.1", "167903233", "[10.2.0.1]"):
        assert status(bad) == 403, bad  # not an address: unknown, denied (10.2.0.1 itself is allowed)

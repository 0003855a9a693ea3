"""The client behind reverse proxies: ALLOW_TRUSTED_PROXIES, ALLOW_PROXY_HEADER, spoofing, ProxyFix."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, MakeApp, lines
from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_allow import Client, ConfigError, Matcher, hookimpl
from flask_allow.builtins.proxies import Unreadable, header_kind, parse_forwarded, parse_node

PROXY = "10.0.0.1"
TRUSTED = ["10.0.0.0/8", "localhost"]


def add_who(app: Flask) -> Flask:
    """A ``/who`` route answering with the decision's client and how it was chosen."""

    @app.route("/who")
    def who() -> dict[str, Any]:
        decision = request.environ["flask_allow.decision"]
        return {"client": decision.client.address, "via": list(decision.client.via), "reason": decision.reason}

    return app


def ask(app: Flask, peer: str, headers: Any = (), path: str = "/who") -> Any:
    return app.test_client().get(
        path, headers=list(headers) if not isinstance(headers, dict) else headers, environ_base={"REMOTE_ADDR": peer}
    )


@pytest.fixture
def proxied(make_app: MakeApp) -> Any:
    """``proxied(header=..., rules=..., **config)``: an app trusting 10.0.0.0/8 and localhost."""

    def factory(header: str | None = None, rules: Any = None, **config: Any) -> Flask:
        settings: dict[str, Any] = {"ALLOW_TRUSTED_PROXIES": TRUSTED, "ALLOW_LOAD_ENTRY_POINTS": False, **config}
        if header is not None:
            settings["ALLOW_PROXY_HEADER"] = header
        if rules is not None:
            settings["ADDRESS_RESTRICTION"] = rules
        return add_who(make_app(settings))

    return factory


def who(app: Flask, peer: str, headers: Any = ()) -> str:
    response = ask(app, peer, headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return str(response.get_json()["client"])


# -- no trusted proxies: exactly as 2.0.x --------------------------------------


def test_without_trusted_proxies_headers_are_ignored(make_app: MakeApp) -> None:
    app = add_who(make_app({"ALLOW_LOAD_ENTRY_POINTS": False}))
    response = ask(app, "198.51.100.9", [("X-Forwarded-For", "10.0.0.5"), ("Forwarded", "for=10.0.0.5")])
    assert response.get_json() == {"client": "198.51.100.9", "via": [], "reason": response.get_json()["reason"]}


# -- spoofing ----------------------------------------------------------------------


def test_forged_header_from_an_untrusted_peer_is_ignored(proxied: Any) -> None:
    app = proxied(rules=[{"ALLOW": "203.0.113.7"}], ALLOW_DEFAULT="deny")
    assert ask(app, "203.0.113.7").status_code == 200
    response = ask(app, "198.51.100.9", [("X-Forwarded-For", "203.0.113.7")])
    assert response.status_code == 403


def test_forged_header_from_an_untrusted_peer_shows_in_via(proxied: Any) -> None:
    app = proxied()
    body = ask(app, "198.51.100.9", [("X-Forwarded-For", "203.0.113.7")]).get_json()
    assert body["client"] == "198.51.100.9"
    assert body["via"] == ["peer 198.51.100.9 is not a trusted proxy: X-Forwarded-For ignored"]


def test_forged_leftmost_hop_through_a_trusted_proxy_is_never_chosen(proxied: Any) -> None:
    # The client sent "X-Forwarded-For: 10.0.0.5" (an address the rules allow); nginx appended its peer.
    app = proxied(rules=[{"ALLOW": "10.0.0.0/8"}], ALLOW_DEFAULT="deny")
    assert ask(app, PROXY, [("X-Forwarded-For", "10.0.0.5, 198.51.100.9")]).status_code == 403
    assert who_allowing_all(proxied, PROXY, "10.0.0.5, 198.51.100.9") == "198.51.100.9"


def who_allowing_all(proxied: Any, peer: str, header: str, name: str = "X-Forwarded-For") -> str:
    return who(proxied(header=name), peer, [(name, header)])


def test_walk_skips_trusted_hops_and_takes_the_first_untrusted(proxied: Any) -> None:
    app = proxied()
    assert who(app, PROXY, [("X-Forwarded-For", "1.1.1.1, 198.51.100.9, 10.0.0.2, 127.0.0.1")]) == "198.51.100.9"
    body = ask(app, PROXY, [("X-Forwarded-For", "1.1.1.1, 198.51.100.9, 10.0.0.2")]).get_json()
    assert body["via"] == [
        "peer 10.0.0.1 (trusted proxy)",
        "X-Forwarded-For 10.0.0.2 (trusted proxy)",
        "X-Forwarded-For 198.51.100.9",
    ]


def test_every_hop_trusted_takes_the_leftmost(proxied: Any) -> None:
    app = proxied()
    body = ask(app, PROXY, [("X-Forwarded-For", "10.9.9.9, 10.0.0.2")]).get_json()
    assert body["client"] == "10.9.9.9"
    assert body["via"][-1] == "X-Forwarded-For 10.9.9.9 (every hop trusted: the leftmost)"


def test_no_header_from_a_trusted_proxy_makes_the_proxy_the_client(proxied: Any) -> None:
    app = proxied(rules=[{"ALLOW": "localhost"}, {"DENY": "all"}])
    body = ask(app, "127.0.0.1").get_json()
    assert body["client"] == "127.0.0.1"
    assert body["via"] == ["peer 127.0.0.1 (trusted proxy)", "no X-Forwarded-For: the proxy itself is the client"]


def test_mapped_ipv6_peer_is_trusted_as_its_ipv4(proxied: Any) -> None:
    assert who(proxied(), "::ffff:10.0.0.1", [("X-Forwarded-For", "198.51.100.9")]) == "198.51.100.9"


@pytest.mark.parametrize(
    ("value", "client"),
    [
        ("203.0.113.7:4711", "203.0.113.7"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("  203.0.113.7  ", "203.0.113.7"),
        ("::ffff:203.0.113.7", "::ffff:203.0.113.7"),
    ],
)
def test_ports_and_brackets_are_stripped(proxied: Any, value: str, client: str) -> None:
    assert who(proxied(), PROXY, [("X-Forwarded-For", value)]) == client


def test_stripped_address_is_matched_by_the_rules(proxied: Any) -> None:
    app = proxied(rules=[{"DENY": "2001:db8::/32"}])
    assert ask(app, PROXY, [("X-Forwarded-For", "[2001:db8::1]:443")]).status_code == 403
    assert ask(app, PROXY, [("X-Forwarded-For", "[2001:db9::1]:443")]).status_code == 200


def test_several_header_lines_are_joined_in_order(proxied: Any) -> None:
    app = proxied()
    headers = [("X-Forwarded-For", "10.0.0.5"), ("X-Forwarded-For", "198.51.100.9"), ("X-Forwarded-For", "10.0.0.2")]
    assert who(app, PROXY, headers) == "198.51.100.9"


def test_unreadable_text_left_of_the_chosen_hop_is_not_read(proxied: Any) -> None:
    # A client (or its own proxy) wrote garbage; the trusted proxy appended the real peer.
    assert who(proxied(), PROXY, [("X-Forwarded-For", "unknown, <script>, 198.51.100.9")]) == "198.51.100.9"


# -- unreadable headers fail closed -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Forwarded-For", "unknown"),
        ("X-Forwarded-For", "_hidden"),
        ("X-Forwarded-For", "not-an-address"),
        ("X-Forwarded-For", "203.0.113.7:99999"),
        ("X-Forwarded-For", "010.0.0.1"),
        ("X-Forwarded-For", ""),
        ("X-Forwarded-For", "198.51.100.9, "),
        ("X-Forwarded-For", "198.51.100.9,,10.0.0.2"),
        ("X-Forwarded-For", "[203.0.113.7]:80"),
        ("X-Forwarded-For", "host.example:80"),
        ("X-Forwarded-For", "198.51.100.9 203.0.113.7"),
        ("Forwarded", "for=unknown"),
        ("Forwarded", "for=_hidden"),
        ("Forwarded", 'for="_hidden:_port"'),
        ("Forwarded", "proto=https"),
        ("Forwarded", 'for="2001:db8::1"'),
        ("Forwarded", 'for="1.2.3.4, for=198.51.100.9'),
        ("Forwarded", "for"),
        ("Forwarded", "for=1.2.3.4;for=5.6.7.8"),
        ("Forwarded", "for=1.2.3.4 garbage"),
        ("Forwarded", "=1.2.3.4"),
        ("X-Real-IP", "198.51.100.9, 203.0.113.7"),
        ("X-Real-IP", "unknown"),
    ],
)
def test_unreadable_header_denies_even_a_trusted_proxy(
    proxied: Any, caplog: pytest.LogCaptureFixture, name: str, value: str
) -> None:
    # The proxy's own address is allowed: the request must still be denied, never a 500.
    app = proxied(header=name, rules=[{"ALLOW": "all"}])
    caplog.set_level(logging.WARNING)
    response = ask(app, PROXY, [(name, value)], path="/")
    assert response.status_code == 403
    warned = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(warned) == 1 and name in warned[0] and "request denied" in warned[0]


def test_unreadable_header_is_denied_without_any_rules(proxied: Any) -> None:
    app = proxied()  # no ADDRESS_RESTRICTION at all: the client is still unknown, so denied
    assert ask(app, PROXY, [("X-Forwarded-For", "unknown")], path="/").status_code == 403
    assert ask(app, PROXY, [("X-Forwarded-For", "198.51.100.9")], path="/").status_code == 200


def test_unreadable_header_in_report_only_is_logged_but_let_through(proxied: Any, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = proxied(ALLOW_REPORT_ONLY=True, ACCESS_LOG=str(log))
    assert ask(app, PROXY, [("X-Forwarded-For", "_hidden")], path="/").status_code == 200
    (line,) = lines(log)
    assert "denied: the client address is unknown" in line and "report-only" in line
    assert "X-Forwarded-For unreadable: an obfuscated identifier '_hidden'" in line


def test_warnings_about_unreadable_headers_are_throttled(proxied: Any, caplog: pytest.LogCaptureFixture) -> None:
    app = proxied()
    caplog.set_level(logging.WARNING)
    for _ in range(5):
        assert ask(app, PROXY, [("X-Forwarded-For", "garbage")], path="/").status_code == 403
    assert len([r for r in caplog.records if "cannot be read" in r.getMessage()]) == 1


# -- Forwarded (RFC 7239) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "client"),
    [
        ('for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ('for="[2001:db8:cafe::17]"', "2001:db8:cafe::17"),
        ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
        ('For="192.0.2.60:8080" ; Proto=https', "192.0.2.60"),
        ('for="192.0.2.60:_obfport"', "192.0.2.60"),
        ("for=192.0.2.60, for=10.0.0.2;by=10.0.0.1", "192.0.2.60"),
        ('for="\\198.51.100.9"', "198.51.100.9"),
        ('for=10.0.0.5, for=192.0.2.60;host="a,b;c=d", for="[::1]"', "192.0.2.60"),
        ("for=[2001:db8::5]:443", "2001:db8::5"),
        ("for=unknown, for=192.0.2.60", "192.0.2.60"),
    ],
)
def test_forwarded_header(proxied: Any, value: str, client: str) -> None:
    assert who(proxied(header="Forwarded"), PROXY, [("Forwarded", value)]) == client


def test_forwarded_forged_leftmost_element(proxied: Any) -> None:
    app = proxied(header="Forwarded", rules=[{"ALLOW": "192.0.2.0/24"}], ALLOW_DEFAULT="deny")
    assert ask(app, PROXY, [("Forwarded", 'for=192.0.2.5, for="198.51.100.9:1234"')], path="/").status_code == 403
    assert ask(app, PROXY, [("Forwarded", 'for=198.51.100.9, for="192.0.2.5:1234"')], path="/").status_code == 200


def test_forwarded_header_lines_are_joined(proxied: Any) -> None:
    app = proxied(header="Forwarded")
    assert who(app, PROXY, [("Forwarded", "for=198.51.100.9"), ("Forwarded", 'for="[::1]:80"')]) == "198.51.100.9"


def test_parse_forwarded_elements() -> None:
    assert parse_forwarded('for=a;PROTO="h\\"t", ,for=b') == [{"for": "a", "proto": 'h"t'}, {}, {"for": "b"}]
    with pytest.raises(Unreadable, match="unterminated"):
        parse_forwarded('for="a')
    with pytest.raises(Unreadable, match="twice"):
        parse_forwarded("for=a;for=b")


def test_parse_node() -> None:
    assert parse_node("[::1]:80") == ("::1", (6, 1))
    assert parse_node("127.0.0.1:0") == ("127.0.0.1", (4, 0x7F000001))
    assert parse_node("fe80::1%eth0")[0] == "fe80::1%eth0"
    for bad in ("", "unknown", "UNKNOWN", "_x", "[::1", "[::1]x", "1.2.3.4:", "1.2.3.4:1:2:3", "127.1", "0x7f.0.0.1"):
        with pytest.raises(Unreadable):
            parse_node(bad)
    with pytest.raises(Unreadable, match="brackets"):
        parse_node("2001:db8::1", forwarded=True)
    with pytest.raises(Unreadable, match="port"):
        parse_node("1.2.3.4:_p")  # obfuscated ports only in Forwarded


def test_header_kinds() -> None:
    assert header_kind("Forwarded") == "forwarded"
    assert header_kind("x-forwarded-for") == "list"
    assert header_kind("X-Original-Forwarded-For") == "list"
    assert header_kind("X-Real-IP") == "single"
    assert header_kind("CF-Connecting-IP") == "single"


# -- single-address headers ------------------------------------------------------------


def test_single_address_header(proxied: Any) -> None:
    app = proxied(header="CF-Connecting-IP", rules=[{"DENY": "203.0.113.0/24"}])
    assert who(app, PROXY, [("CF-Connecting-IP", "198.51.100.9")]) == "198.51.100.9"
    assert who(app, PROXY, [("CF-Connecting-IP", "[2001:db8::7]:1234")]) == "2001:db8::7"
    # a single-address header is the client as the proxy saw it, trusted or not
    assert who(app, PROXY, [("CF-Connecting-IP", "10.0.0.7")]) == "10.0.0.7"
    assert ask(app, PROXY, [("CF-Connecting-IP", "203.0.113.7")], path="/").status_code == 403
    # X-Forwarded-For is not this app's header: ignored
    assert who(app, PROXY, [("X-Forwarded-For", "198.51.100.9")]) == PROXY


# -- configuration -----------------------------------------------------------------------


def test_trusted_proxies_from_a_list_file(make_app: MakeApp, tmp_path: Path) -> None:
    (tmp_path / "proxies.txt").write_text("# our load balancers\n192.0.2.0/28\n2001:db8:1::/48 ; v6\n")
    app = add_who(make_app({"ALLOW_TRUSTED_PROXIES": ["file:proxies.txt"], "ALLOW_LOAD_ENTRY_POINTS": False}))
    assert who(app, "192.0.2.3", [("X-Forwarded-For", "198.51.100.9")]) == "198.51.100.9"
    assert who(app, "2001:db8:1::9", [("X-Forwarded-For", "198.51.100.9")]) == "198.51.100.9"
    assert who(app, "192.0.2.16", [("X-Forwarded-For", "198.51.100.9")]) == "192.0.2.16"


def test_a_single_string_is_one_entry(make_app: MakeApp) -> None:
    app = add_who(make_app({"ALLOW_TRUSTED_PROXIES": "10.0.0.1", "ALLOW_LOAD_ENTRY_POINTS": False}))
    assert who(app, PROXY, [("X-Forwarded-For", "198.51.100.9")]) == "198.51.100.9"
    assert who(app, "10.0.0.2", [("X-Forwarded-For", "198.51.100.9")]) == "10.0.0.2"


def test_unix_socket_peer(make_app: MakeApp) -> None:
    app = add_who(make_app({"ALLOW_TRUSTED_PROXIES": ["unix:"], "ALLOW_LOAD_ENTRY_POINTS": False}))
    assert who(app, "", [("X-Forwarded-For", "198.51.100.9")]) == "198.51.100.9"
    assert who(app, "203.0.113.1", [("X-Forwarded-For", "198.51.100.9")]) == "203.0.113.1"


class DynamicMatcher(Matcher):
    """A rule type whose addresses are not known at start-up."""

    prefix = "dyn"

    def matches(self, client: Client) -> bool:
        return False


class DynamicPlugin:
    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [DynamicMatcher]


def test_bad_trusted_proxies_are_config_errors_naming_each_entry(make_app: MakeApp) -> None:
    config = {"ALLOW_TRUSTED_PROXIES": ["10.0.0.0/8", "10.0.0.300", "nope:x", 7, "dyn:x", "127.1"]}
    with pytest.raises(ConfigError) as info:
        make_app({**config, "ALLOW_LOAD_ENTRY_POINTS": False}, plugins=[DynamicPlugin()])
    locations = [error.location for error in info.value.errors]
    assert locations == [f"ALLOW_TRUSTED_PROXIES[{i}]" for i in (1, 2, 3, 4, 5)]
    text = str(info.value)
    assert "'10.0.0.300'" in text and "known prefixes" in text and "not known at start-up" in text


@pytest.mark.parametrize("value", [{"10.0.0.1": True}, 10])
def test_trusted_proxies_must_be_a_list(make_app: MakeApp, value: Any) -> None:
    with pytest.raises(ConfigError, match="ALLOW_TRUSTED_PROXIES"):
        make_app({"ALLOW_TRUSTED_PROXIES": value, "ALLOW_LOAD_ENTRY_POINTS": False})


@pytest.mark.parametrize("value", ["X Forwarded", "", 5, None, "X-Forwarded-For:"])
def test_bad_proxy_header_is_a_config_error(make_app: MakeApp, value: Any) -> None:
    with pytest.raises(ConfigError, match="ALLOW_PROXY_HEADER"):
        make_app({"ALLOW_TRUSTED_PROXIES": TRUSTED, "ALLOW_PROXY_HEADER": value, "ALLOW_LOAD_ENTRY_POINTS": False})


def test_lints(make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    make_app({"ALLOW_TRUSTED_PROXIES": ["0.0.0.0/0"], "ALLOW_LOAD_ENTRY_POINTS": False})
    make_app({"ALLOW_PROXY_HEADER": "X-Real-IP", "ALLOW_LOAD_ENTRY_POINTS": False})
    text = caplog.text
    assert "ALLOW_TRUSTED_PROXIES[0] '0.0.0.0/0' trusts every address" in text
    assert "ALLOW_PROXY_HEADER is 'X-Real-IP' but ALLOW_TRUSTED_PROXIES is empty" in text


def test_reload_takes_new_trusted_proxies_and_keeps_old_on_error(proxied: Any) -> None:
    app = proxied()
    extension = app.extensions["flask_allow"].extension
    app.config["ALLOW_TRUSTED_PROXIES"] = ["192.0.2.1"]
    extension.reload(app)
    assert who(app, PROXY, [("X-Forwarded-For", "198.51.100.9")]) == PROXY
    assert who(app, "192.0.2.1", [("X-Forwarded-For", "198.51.100.9")]) == "198.51.100.9"
    app.config["ALLOW_TRUSTED_PROXIES"] = ["192.0.2.300"]
    with pytest.raises(ConfigError, match=r"ALLOW_TRUSTED_PROXIES\[0\]"):
        extension.reload(app)
    assert who(app, "192.0.2.1", [("X-Forwarded-For", "198.51.100.9")]) == "198.51.100.9"


# -- the decision and the access log show the path -------------------------------------


def test_access_log_line_shows_the_path(proxied: Any, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = proxied(rules=[{"DENY": "198.51.100.0/24"}], ACCESS_LOG=str(log))
    assert ask(app, PROXY, [("X-Forwarded-For", "198.51.100.9, 10.0.0.2")], path="/").status_code == 403
    (line,) = lines(log)
    assert line.split(" - ", 2)[2].startswith("198.51.100.9 denied by ADDRESS_RESTRICTION[0].DENY '198.51.100.0/24'")
    assert line.endswith(
        "via peer 10.0.0.1 (trusted proxy), X-Forwarded-For 10.0.0.2 (trusted proxy), X-Forwarded-For 198.51.100.9"
    )


def test_log_injection_through_the_header_stays_one_line(proxied: Any, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = proxied(ACCESS_LOG=str(log))
    ask(app, PROXY, [("X-Forwarded-For", "1.2.3.4\x85INFO forged\x0b")], path="/")
    (line,) = lines(log)
    assert "x85INFO forged" in line and "\x85" not in line  # escaped, one line


# -- ProxyFix and plugins ------------------------------------------------------------------


def test_proxyfix_alone_is_used_as_the_peer(make_app: MakeApp) -> None:
    app = add_who(make_app({"ALLOW_LOAD_ENTRY_POINTS": False}))
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)
    assert who(app, PROXY, [("X-Forwarded-For", "10.0.0.5, 198.51.100.9")]) == "198.51.100.9"


def test_proxyfix_with_trusted_proxies_does_not_count_hops_twice(
    proxied: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # ProxyFix told to trust two hops where there is one: it picks the client's forged address.
    app = proxied()
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=2)
    caplog.set_level(logging.WARNING)
    assert who(app, PROXY, [("X-Forwarded-For", "203.0.113.66, 198.51.100.9")]) == "198.51.100.9"
    assert who(app, PROXY, [("X-Forwarded-For", "203.0.113.66, 198.51.100.9")]) == "198.51.100.9"
    assert len([r for r in caplog.records if "ProxyFix" in r.getMessage()]) == 1


def test_a_plugin_still_overrides_the_built_in(make_app: MakeApp) -> None:
    class FromHeader:
        @hookimpl
        def flask_allow_client_address(self, request: Any) -> str | None:
            return request.headers.get("X-Test-Client")

    app = add_who(make_app({"ALLOW_TRUSTED_PROXIES": TRUSTED}, plugins=[FromHeader()]))
    assert who(app, PROXY, [("X-Test-Client", "192.0.2.44"), ("X-Forwarded-For", "198.51.100.9")]) == "192.0.2.44"
    assert who(app, PROXY, [("X-Forwarded-For", "198.51.100.9")]) == "198.51.100.9"


def test_extension_without_proxies_state_falls_back_to_the_peer() -> None:
    from flask_allow.builtins import proxies

    app = Flask("bare")
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": "192.0.2.1"}):
        assert proxies.flask_allow_client_address(request=request, app=app) == "192.0.2.1"


def test_docs_example_runs() -> None:
    docs = REPO_ROOT / "docs" / "proxies.md"
    (code,) = re.findall(r"^```python\n(.*?)^```", docs.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)
    exec(compile(code, f"{docs}:example", "exec"), {"__name__": "proxies_doc_example"})

"""The C maker of a plain request's line (``_logline.c``) writes what the Python code writes.

For any request parts (plain ones mostly, with odd characters, hosts, ports and non-str values
mixed in), the C line is either None (the Python code then writes the line) or byte for byte the
Python line: the formatter's text before the message, ``format_line``'s message, the tail and a
newline. The plain requests must take the C path, and an app's log is the same with it and
without it (``FLASK_ALLOW_PURE_PYTHON``). These tests also run under the sanitizers
(``test_clookup_sanitized.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from werkzeug.test import create_environ
from werkzeug.wrappers import Request

from flask_allow.accesslog import fastline
from flask_allow.accesslog.formatter import _Formatter, _Records
from flask_allow.accesslog.line import format_line
from flask_allow.clookup import ENVIRON_KEY

make = fastline.maker()
needs_c = pytest.mark.skipif(
    make is None and os.environ.get("CI", "").lower() != "true",  # in CI the module must be built
    reason="the C line maker was not built (no compiler) or FLASK_ALLOW_PURE_PYTHON is set",
)
pytestmark = needs_c

plain = st.sampled_from([*"abcXYZ019/._~!$&'()*+,;=:@-", "x=1", "&"])
odd = st.sampled_from([*'%?# \u00e9\u202e\\"\t\x7f', "%41", "%2F"])
text = st.lists(st.one_of(plain, plain, plain, plain, odd), max_size=12).map("".join)
hosts = st.sampled_from(
    [
        *("localhost", "example.com", "EXAMPLE.com", "a.b:8080", "a.b:80", "a.b:443", "[::1]:5000", "xn--n3h.net"),
        *("h:99999", "h:65535", "h:65536", "h:10000", "h:0", "h:00080", "h:", "axn--a.com", "a-xn--b", "x.n--a"),
        *(":8080", "h:8x", "ex\u00e9.com", "h:1", "h:123456"),
    ]
)
agents = st.one_of(
    text, st.sampled_from(["curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64)", 'a "quoted" one', "caf\u00e9"])
)
values = st.one_of(text, st.none(), st.just(b"bytes"), st.just(7))
CLIENTS = [("192.0.2.1", "allowed by X[0].ALLOW 'all'"), ("2001:db8::1", "denied: a \u00e9 reason")]
FORMATS = ["%(asctime)s - %(levelname)7s - %(message)s", "%(levelname)s %(message)s!", "%(message)s"]


def decision_for(request: Request, address: str, reason: str, via: tuple[str, ...] = ()) -> Any:
    client = SimpleNamespace(address=address, request=request, via=via)
    return SimpleNamespace(client=client, reason=reason, enforced=True, exempt=False, allowed=True)


def python_line(formatter: _Formatter, level: int, message: str, moment: Any) -> bytes:
    return (formatter.line(level, message, _Records({}), moment) + "\n").encode("utf-8", "backslashreplace")


def c_line(formatter: _Formatter, level: int, request: Request, address: str, reason: str, moment: Any) -> Any:
    parts = formatter.parts(level, _Records({}), moment)
    assert parts is not None and make is not None
    head, msecs, middle = parts
    return make(request.environ, request.method, address, reason, head, msecs, middle, formatter.tail or "")


@settings(max_examples=400, deadline=None)
@example(scheme="http", host="localhost", root="", path="/", query="", agent="curl/8.5.0", method="GET")
@example(scheme="https", host="a.b:8080", root="/app/", path="//x", query="a=1&b", agent="", method="POST")
@given(
    scheme=st.sampled_from(["http", "https", "ftp", "HTTP"]),
    host=st.one_of(hosts, st.none()),
    root=st.one_of(st.sampled_from(["", "/app", "/app/", "/\u00e9", None]), values),
    path=st.one_of(text.map(lambda p: "/" + p), values),
    query=values,
    agent=st.one_of(agents, st.none()),
    method=st.sampled_from(["GET", "POST", "PROPFIND", "G\x01T", 'G"T']),
)
def test_the_c_line_is_none_or_the_python_line(
    scheme: str, host: Any, root: Any, path: Any, query: Any, agent: Any, method: str
) -> None:
    environ = create_environ("/", base_url=f"{scheme}://localhost")
    request = Request(environ)  # then the parts, as the line reads them from the environ
    for key, value in (("SCRIPT_NAME", root), ("PATH_INFO", path), ("QUERY_STRING", query), ("HTTP_HOST", host)):
        if isinstance(value, str):
            value = value.encode().decode("latin-1")  # as a WSGI server hands it over
        environ[key] = value
    if agent is None:
        environ.pop("HTTP_USER_AGENT", None)
    else:
        environ["HTTP_USER_AGENT"] = agent
    request.method = method
    for fmt in FORMATS:
        formatter = _Formatter(fmt)
        moment = formatter.moment()
        for address, reason in CLIENTS:
            found = c_line(formatter, 20, request, address, reason, moment)
            try:
                expected = python_line(formatter, 20, format_line(decision_for(request, address, reason)), moment)
            except Exception:  # only a value werkzeug itself cannot take
                assert found is None
                continue
            assert found is None or found == expected, (found, expected)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/",
        "https://example.com:8443/app/a/b.txt?x=1&y=2",
        "http://10.0.0.1:31337/api/v1/items;id=3?sort=name&dir=up",
        "http://h:65535/~user/",
    ],
)
def test_a_plain_request_takes_the_c_path(url: str) -> None:
    request = Request(create_environ(url, headers={"User-Agent": "curl/8.5.0"}))
    formatter = _Formatter(FORMATS[0])
    moment = formatter.moment()
    found = c_line(formatter, 20, request, "192.0.2.1", "allowed by default (no rule matched)", moment)
    expected = python_line(
        formatter, 20, format_line(decision_for(request, "192.0.2.1", "allowed by default (no rule matched)")), moment
    )
    assert found == expected
    assert f" GET {request.url} " in found.decode()


def test_arguments_it_cannot_take_are_errors_not_crashes() -> None:
    assert make is not None
    with pytest.raises(TypeError):
        make({})  # type: ignore[call-arg]
    assert make([], "GET", "a", "r", "h", 1, "m", "") is None  # type: ignore[arg-type]
    environ = create_environ("/")
    assert make(environ, "GET", "a", "r", "h", 1000, "m", "") is None  # not three digits
    assert make(environ, "GET", "a", "r", "h\u00e9", 1, "m", "") is None  # a prefix that is not ASCII
    with pytest.raises(OverflowError):
        make(environ, "GET", "a", "r", "h", 2**70, "m", "")
    assert make(environ, "GET", "a", "r", "h", -1, "m", "") == b'hma r GET http://localhost/ ""\n'


def _logged(tmp_path: Path, name: str, pure: bool, make_app: Any) -> list[str]:
    if pure:
        os.environ[ENVIRON_KEY] = "1"
    try:
        app = make_app(
            {"ADDRESS_RESTRICTION": [{"ALLOW": "192.0.2.0/24"}, {"DENY": "all"}], "ACCESS_LOG": str(tmp_path / name)}
        )
    finally:
        os.environ.pop(ENVIRON_KEY, None)
    log = app.extensions["flask_allow"].access_log
    assert (log._make is None) == pure
    client = app.test_client()
    for address in ("192.0.2.7", "198.51.100.1"):
        for path, agent in (("/", "curl/8.5.0"), ("/a%20b?q=%E2%82%AC", "caf\u00e9"), ("/x;y=1?z", 'say "hi"')):
            client.get(path, headers={"User-Agent": agent}, environ_base={"REMOTE_ADDR": address})
    app.extensions["flask_allow"].close()
    return [line.split(" - ", 1)[1] for line in (tmp_path / name).read_text().splitlines()]


def test_the_log_is_the_same_with_and_without_the_c_maker(tmp_path: Path, make_app: Any) -> None:
    with_c = _logged(tmp_path, "c.log", False, make_app)
    without = _logged(tmp_path, "py.log", True, make_app)
    assert with_c == without and len(with_c) == 6

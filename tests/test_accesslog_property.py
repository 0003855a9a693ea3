"""Property: any request, in any ``ACCESS_LOG`` encoding, writes exactly one line that decodes in
that encoding and holds no raw line break, control, format (bidirectional) or separator character."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import close_app, new_app
from flask import Flask
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder

from flask_allow import FlaskAllow

ENCODINGS = ["utf-8", "latin-1", "ascii", "utf-16", "cp1252"]


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, bool], tuple[Flask, Path]]]:
    """One guarded app per encoding, written directly and through the queue."""
    directory = tmp_path_factory.mktemp("property")
    made = {}
    for encoding in ENCODINGS:
        for queue in (False, True):
            log = directory / f"{encoding}-{queue}.log"
            config = {
                "ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}, {"ALLOW": "192.0.2.0/24"}],
                "ACCESS_LOG": {"filename": str(log), "encoding": encoding, "queue": queue, "maxBytes": 0},
            }
            app = new_app(config, name=f"{encoding}-{queue}")
            FlaskAllow(app)
            made[encoding, queue] = (app, log)
    yield made
    for app, _ in made.values():
        close_app(app)


wsgi = st.binary(max_size=40).map(lambda data: data.decode("latin-1"))  # WSGI: bytes as latin-1 characters
utf8 = st.text(max_size=20).map(lambda text: text.encode("utf-8", "surrogatepass").decode("latin-1"))
header = st.one_of(wsgi, utf8, st.sampled_from(["xn--a.com", "xn--zz.x:99999", "[::1]:8080", "a.b:65536", ""]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(
    method="GET",
    path="/\xe2\x80\xae",
    query="",
    host="xn--a.com",
    agent="\xe2\x80\xae",
    address="10.0.0.1",
    encoding="ascii",
    queue=True,
)
@given(
    method=st.one_of(st.sampled_from(["GET", "POST", "get"]), wsgi),
    path=st.one_of(wsgi, utf8).map(lambda text: "/" + text),
    query=st.one_of(wsgi, utf8),
    host=header,
    agent=header,
    address=st.sampled_from(["10.0.0.1", "192.0.2.1", "203.0.113.9", "::1", "not an address", ""]),
    encoding=st.sampled_from(ENCODINGS),
    queue=st.booleans(),
)
@pytest.mark.usefixtures("access_log_alone")
def test_any_request_writes_one_decodable_printable_line(
    apps: dict[tuple[str, bool], tuple[Flask, Path]],
    method: str,
    path: str,
    query: str,
    host: str,
    agent: str,
    address: str,
    encoding: str,
    queue: bool,
) -> None:
    app, log = apps[encoding, queue]
    before = log.stat().st_size if log.exists() else 0
    environ = EnvironBuilder("/").get_environ()
    environ.update(
        {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "HTTP_HOST": host,
            "HTTP_USER_AGENT": agent,
            "REMOTE_ADDR": address,
        }
    )
    body = app(environ, lambda status, headers, exc_info=None: None)
    b"".join(body)
    getattr(body, "close", lambda: None)()
    access_log = app.extensions["flask_allow"].access_log
    if access_log.queue is not None:
        access_log.queue.drain()
    data = log.read_bytes()[before:]
    if encoding == "utf-16" and before:  # the byte-order mark is written once, at the file's start
        data = log.read_bytes()[:2] + data
    text = data.decode(encoding)  # strict: every byte as the encoding wrote it
    assert text.endswith("\n") and text.count("\n") == 1, text
    line = text[:-1]
    assert line.isprintable(), ascii(line)
    assert encoding != "ascii" or line.isascii()
    assert " - " in line and (address or "-") in line

"""The access log under attack: a line for every request whatever it holds, in any encoding,
whatever an observer does; the direct write follows the logging set-up as it changes."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeApp
from flask import Flask
from werkzeug.test import EnvironBuilder

from flask_allow import Decision, hookimpl

ACCESS_LOGGER = logging.getLogger("flask.allow")
# what no line may hold raw: control and format characters, separators (str.isprintable's set)
RAW = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def call(app: Flask, path: str = "/", **environ: Any) -> str:
    """One request through the WSGI app with a raw environ (the test client itself cannot build
    the URL of some of these); returns the status line."""
    built = EnvironBuilder(path).get_environ()
    built.update(environ)
    status: list[str] = []
    body = app(built, lambda line, headers, exc_info=None: status.append(line))
    b"".join(body)
    getattr(body, "close", lambda: None)()
    return status[0]


def logged(app: Flask, log: Path, encoding: str = "utf-8") -> list[str]:
    app.extensions["flask_allow"].close()  # a queue written out
    data = log.read_bytes()
    return data.decode(encoding).split("\n")[:-1] if data else []


#: Requests werkzeug cannot make a URL of, or that hold what an encoding or a terminal must not
#: see. WSGI strings are bytes as latin-1 characters: "\xe2\x80\xae" is U+202E sent as UTF-8.
HOSTILE: list[tuple[str, dict[str, str]]] = [
    ("/a", {"HTTP_HOST": "xn--a.com"}),  # an invalid IDNA label: request.url raises
    ("/a", {"HTTP_HOST": "xn--zz.example:8080"}),
    ("/a", {"HTTP_HOST": "xn--.com"}),
    ("/a", {"HTTP_HOST": "h:99999"}),
    ("/a", {"HTTP_HOST": "ex\xe9.com\x85"}),
    ("/", {"PATH_INFO": "/\xff\xfe\x00\n", "QUERY_STRING": "q=\xe2\x82\xac\r\n"}),  # bytes that are no UTF-8
    ("/", {"PATH_INFO": "/\xe2\x82\xac"}),  # a euro sign: latin-1 and ascii cannot hold it
    ("/", {"REQUEST_METHOD": "G\x1bT\n\x85"}),
    ("/", {"PATH_INFO": "/\xe2\x80\xaegnp.exe\xe2\x81\xa6\xe2\x80\xa8", "HTTP_USER_AGENT": 'caf\xe9 \x9b"\\'}),
    ("/", {"SCRIPT_NAME": "/r\xf6\x00ot", "HTTP_HOST": "[::1\n]:80"}),
]


@pytest.mark.usefixtures("write_path")
@pytest.mark.parametrize("queue", [False, True])
@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "ascii", "utf-16"])
def test_every_request_writes_exactly_one_line(make_app: MakeApp, tmp_path: Path, encoding: str, queue: bool) -> None:
    log = tmp_path / "access.log"
    app = make_app(
        {
            "ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}],
            "ACCESS_LOG": {"filename": str(log), "encoding": encoding, "queue": queue},
        }
    )
    for path, environ in HOSTILE:
        for address in ("10.1.2.3", "192.0.2.1"):
            code = call(app, path, REMOTE_ADDR=address, **environ).split()[0]
            assert code == "403" if address == "10.1.2.3" else code in ("200", "404", "405")
    written = logged(app, log, encoding)
    assert len(written) == 2 * len(HOSTILE)
    for line in written:
        assert not RAW.search(line), line
        assert line.isascii() or encoding not in ("ascii",)
    assert [line.split(" - ")[-1].split(" ")[0] for line in written] == ["10.1.2.3", "192.0.2.1"] * len(HOSTILE)
    assert "GET http://xn--a.com/a" in written[0]  # as sent, not werkzeug's empty host or a traceback
    assert all("[log line failed" not in line for line in written)
    euro = "\\u20ac" if encoding in ("latin-1", "ascii") else "\u20ac"
    assert f"GET http://localhost/{euro} " in written[13]
    assert r'GET http://localhost/\u202egnp.exe\u2066\u2028 "caf' in written[16]
    assert written[16].endswith(r' \x9b\"\\"')


@pytest.mark.usefixtures("write_path")
def test_an_observer_that_fails_never_costs_the_line(make_app: MakeApp, tmp_path: Path) -> None:
    class Broken:
        @hookimpl
        def flask_allow_decision(self, decision: Decision) -> None:
            raise RuntimeError("an observer that fails")

    class Wrapping:  # a wrapper: pluggy calls the observers, and stops at the first that raises
        @hookimpl(wrapper=True)
        def flask_allow_decision(self, decision: Decision) -> Iterator[None]:
            return (yield)

    for plugins in ([Broken()], [Broken(), Wrapping()]):
        log = tmp_path / f"{len(plugins)}.log"
        app = make_app({"ACCESS_LOG": str(log)}, plugins=plugins, name=f"app{len(plugins)}")
        assert call(app, REMOTE_ADDR="192.0.2.1").startswith("200")
        assert call(app, REMOTE_ADDR="192.0.2.2", HTTP_HOST="xn--a.com").startswith("200")
        assert [line.split(" - ")[-1].split(" ")[0] for line in logged(app, log)] == ["192.0.2.1", "192.0.2.2"]


@pytest.mark.usefixtures("write_path")
def test_a_line_that_cannot_be_made_is_written_naming_the_failure(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Decision) -> str:
        raise ValueError("a reason that fails")

    log = tmp_path / "access.log"
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ACCESS_LOG": str(log)})
    monkeypatch.setattr(Decision, "reason", property(broken))
    environ = {"PATH_INFO": "/x\n", "HTTP_HOST": "xn--a.com", "HTTP_USER_AGENT": "ua"}
    assert call(app, REMOTE_ADDR="10.1.2.3", **environ).startswith("403")
    (line,) = logged(app, log)
    expected = r' - 10\.1\.2\.3 denied GET http://xn--a\.com/x%0A "ua" \[log line failed: ValueError\]'
    assert re.search(expected + "$", line), line


@pytest.mark.usefixtures("write_path")
@pytest.mark.parametrize("encoding", ["latin-1", "ascii"])
def test_a_queued_batch_keeps_every_line_around_one_its_encoding_cannot_hold(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str
) -> None:
    from flask_allow.accesslog import queue as logqueue

    monkeypatch.setattr(logqueue, "INTERVAL", 3600)  # one batch, written at close
    log = tmp_path / "access.log"
    app = make_app({"ACCESS_LOG": {"filename": str(log), "encoding": encoding, "queue": True}})
    client = app.test_client()
    for i, path in enumerate(["/a", "/%E2%82%AC", "/b", "/caf%C3%A9", "/c"]):
        client.get(path, environ_base={"REMOTE_ADDR": f"192.0.2.{i}", "HTTP_USER_AGENT": "caf\u00e9"})
    written = logged(app, log, encoding)
    assert [line.split(" - ")[-1].split(" ")[0] for line in written] == [f"192.0.2.{i}" for i in range(5)]
    assert "http://localhost/\\u20ac" in written[1]
    assert ("/caf\u00e9 " if encoding == "latin-1" else "/caf\\xe9 ") in written[3]


@pytest.mark.usefixtures("access_log_alone")
def test_a_handler_added_later_gets_the_records(make_app: MakeApp, tmp_path: Path) -> None:
    """The direct write is decided once per logging set-up: a change to it is seen at the next line."""
    log = tmp_path / "access.log"
    app = make_app({"ACCESS_LOG": str(log)})
    state = app.extensions["flask_allow"]
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    def request(n: int) -> None:
        assert call(app, REMOTE_ADDR=f"192.0.2.{n}").startswith("200")

    keep, root, parent = Keep(), logging.getLogger(), logging.getLogger("flask")
    request(0)
    assert state.access_log._direct(logging.WARNING)
    ACCESS_LOGGER.handlers.append(keep)  # in place, not through addHandler
    request(1)
    ACCESS_LOGGER.handlers.remove(keep)
    request(2)
    root.addHandler(keep)
    request(3)  # flask.allow does not propagate here
    ACCESS_LOGGER.propagate = True  # (the fixture sets it back)
    request(4)
    root.removeHandler(keep)
    request(5)
    parent.addHandler(keep)  # a logger between flask.allow and the root
    request(6)
    parent.removeHandler(keep)
    ACCESS_LOGGER.propagate = False
    request(7)
    keep.addFilter(lambda record: True)
    own = state.access_log.file_handler
    own.addFilter(lambda record: False)  # the app's own handler, filtered: no line
    request(8)
    own.filters.pop()
    previous = logging.getLogRecordFactory()
    logging.setLogRecordFactory(lambda *args, **kwargs: previous(*args, **kwargs))
    try:
        request(9)
    finally:
        logging.setLogRecordFactory(previous)
    request(10)
    saved = ACCESS_LOGGER.handlers
    ACCESS_LOGGER.handlers = [*saved, keep]  # a new list, not a change to the one there was
    try:
        request(11)
        ACCESS_LOGGER.handlers.pop()  # and that list changed in place
        request(12)
    finally:
        ACCESS_LOGGER.handlers = saved
    assert state.access_log._direct(logging.WARNING)  # back to the direct write
    assert [r.getMessage().split(" ")[0] for r in records] == ["192.0.2.1", "192.0.2.4", "192.0.2.6", "192.0.2.11"]
    assert [line.split(" - ")[-1].split(" ")[0] for line in logged(app, log)] == [
        f"192.0.2.{n}" for n in (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12)
    ]

"""The access log's fast write path gives exactly what the slow, standard one gives.

``url_of`` against ``request.url``; the access log's LogRecords against ``LogRecord()``; its
formatter against ``logging.Formatter``; its file handler's rollovers against
``RotatingFileHandler``'s, line for line.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import random
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeApp, lines
from flask import Flask, Request
from hypothesis import example, given, settings
from hypothesis import strategies as st
from werkzeug.test import create_environ

from flask_allow.accesslog.file import _FileHandler
from flask_allow.accesslog.formatter import _Formatter, _positional, _Records
from flask_allow.accesslog.line import escape, escaped_char, format_line, raw_url, url_of
from flask_allow.client import Client
from flask_allow.config import ACCESS_LOG_DEFAULTS
from flask_allow.decision import Decision

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"

APP = Flask("urls")

# mostly plain, with one odd piece now and then: what the fast path takes, and what it must not
plain = st.sampled_from([*"abcXYZ019/._~!$&'()*+,;=:@-", "x=1", "&"])
odd = st.sampled_from([*'%?# \u00e9\u2028\\"\t', "%41", "%2F", "%C3%A9", "%", "%zz"])
paths = st.lists(st.one_of(plain, plain, plain, odd), max_size=12).map(lambda parts: "/" + "".join(parts))
queries = st.lists(st.one_of(plain, plain, plain, odd), max_size=8).map("".join)
hosts = st.sampled_from(
    [
        *("localhost", "example.com", "EXAMPLE.com", "a.b:8080", "a.b:80", "a.b:443", "[::1]:5000", "xn--n3h.net"),
        *("h:99999", "h:65535", "h:65536", "h:10000", "h:0", "h:00080", "xn--a.com", "xn--zz.example", "ex\u00e9.com"),
    ]
)


@settings(max_examples=500, deadline=None)
@example(scheme="http", host="localhost", root="", path="/%41", query="", trusted=None)
@example(scheme="http", host="localhost", root="", path="/a", query="q=%C3%A9", trusted=None)
@example(scheme="https", host="x:443", root="", path="/", query="", trusted=None)
@example(scheme="http", host="a.b:8080", root="", path="/", query="", trusted=["localhost", "example.com"])
@given(
    scheme=st.sampled_from(["http", "https"]),
    host=st.one_of(st.none(), hosts),
    root=st.sampled_from(["", "/app", "/app/", "/é"]),
    path=paths,
    query=queries,
    trusted=st.sampled_from([None, ["localhost", "example.com"]]),
)
def test_url_of_is_request_url(
    scheme: str, host: str | None, root: str, path: str, query: str, trusted: list[str] | None
) -> None:
    environ = create_environ("/", base_url=f"{scheme}://localhost")
    environ.update(
        {
            "SCRIPT_NAME": root.encode().decode("latin-1"),
            "PATH_INFO": path.encode().decode("latin-1"),
            "QUERY_STRING": query.encode().decode("latin-1"),
        }
    )
    if host is None:
        environ.pop("HTTP_HOST", None)
    else:
        environ["HTTP_HOST"] = host
    request = Request(environ)
    request.trusted_hosts = trusted
    try:
        expected = Request(environ).url if trusted is None else _with_trusted(environ, trusted)
    except Exception:  # werkzeug refuses it (an untrusted host, IDNA it cannot decode): as sent
        expected = raw_url(environ)
    assert url_of(request) == expected


def _with_trusted(environ: dict[str, object], trusted: list[str]) -> str:
    request = Request(environ)
    request.trusted_hosts = trusted
    return request.url


def test_url_of_puts_a_plain_url_together_itself() -> None:
    request = Request(create_environ("/a/b.txt?x=1&y=2", base_url="https://example.com:8443/app"))
    assert url_of(request) == "https://example.com:8443/app/a/b.txt?x=1&y=2" == request.url
    assert "url" in request.__dict__  # only now, because of request.url above
    fresh = Request(create_environ("/a/b.txt?x=1&y=2", base_url="https://example.com:8443/app"))
    url_of(fresh)
    assert "url" not in fresh.__dict__ and "host" not in fresh.__dict__


def test_url_of_takes_the_url_werkzeug_worked_out_already() -> None:
    request = Request(create_environ("/a b?c=%41"))
    url = request.url
    assert url_of(request) is url


def test_records_are_logrecords_as_logrecord_makes_them() -> None:
    records = _Records({"flask_allow_owner": 1})
    for level in (logging.INFO, logging.WARNING, logging.ERROR):
        mine = records.make(level, "a line with %s in it")
        real = logging.getLogger("flask.allow").makeRecord(
            "flask.allow", level, mine.pathname, 0, "a line with %s in it", (), None, "write", {"flask_allow_owner": 1}
        )
        assert set(mine.__dict__) == set(real.__dict__)
        for key, value in real.__dict__.items():
            if key not in ("created", "msecs", "relativeCreated"):
                assert mine.__dict__[key] == value, key
        assert abs(mine.created - real.created) < 5 and 0 <= mine.msecs < 1000
        assert mine.getMessage() == "a line with %s in it"


def test_records_come_from_someone_elses_factory_when_one_is_set() -> None:
    original = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = original(*args, **kwargs)
        record.custom = "yes"
        return record

    logging.setLogRecordFactory(factory)
    try:
        assert _Records({}).make(logging.INFO, "x").custom == "yes"  # type: ignore[attr-defined]
    finally:
        logging.setLogRecordFactory(original)


@settings(max_examples=50, deadline=None)
@given(
    fmt=st.sampled_from(
        [
            "%(asctime)s - %(levelname)7s - %(message)s",
            "%(message)s",
            "%(levelname)s|%(name)s|%(message)s|%(msecs)03d|%(process)d",
            "{asctime} {message}",
        ]
    ),
    created=st.floats(min_value=0, max_value=4e9),
)
def test_formatter_formats_as_logging_formatter(fmt: str, created: float) -> None:
    style = "{" if fmt.startswith("{") else "%"
    record = _Records({}).make(logging.ERROR, 'GET http://x/ "ua"')
    record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
    again = logging.makeLogRecord(dict(record.__dict__))
    assert _Formatter(fmt, style=style).format(record) == logging.Formatter(fmt, style=style).format(again)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_bytes", [2000, 150])
def test_file_handler_rolls_over_where_the_standard_one_does(tmp_path: Path, max_bytes: int) -> None:
    sizes = random.Random(max_bytes).choices(range(60), k=600)  # rollovers at the byte, and off by one
    lines = [f"line {n} " + "x" * size for n, size in enumerate(sizes)]
    results = []
    for kind, cls in (("ours", _FileHandler), ("stdlib", logging.handlers.RotatingFileHandler)):
        directory = tmp_path / kind
        directory.mkdir()
        (directory / "log").write_text("already here\n")  # appended to, counted from the start
        handler = cls(str(directory / "log"), maxBytes=max_bytes, backupCount=999, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        for line in lines:
            handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))
        handler.close()
        logs = [path for path in directory.iterdir() if path.name != ".log.lock"]  # ours: to roll over
        results.append(sorted((path.name, path.read_text()) for path in logs))
    assert results[0] == results[1]
    assert len(results[0]) > 10


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "ascii", "utf-16", "cp1252"])
def test_file_handler_writes_what_the_standard_one_writes(tmp_path: Path, encoding: str) -> None:
    # utf-8, ascii and latin-1 lines go to the file descriptor directly, utf-16 (a BOM) through the
    # stream; what the encoding cannot hold is written escaped, as backslashreplace writes it
    written = ("first", "caf\u00e9 \u20ac second \U0001f4a9", "third")
    results = []
    for kind in ("ours", "stdlib"):
        name = str(tmp_path / f"{kind}.log")
        handler: logging.Handler
        if kind == "ours":
            handler = _FileHandler(name, encoding=encoding)
        else:
            handler = logging.handlers.RotatingFileHandler(name, encoding=encoding, errors="backslashreplace")
        handler.setFormatter(logging.Formatter("%(message)s"))
        for line in written:
            handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))
        handler.close()
        results.append((tmp_path / f"{kind}.log").read_bytes())
    assert results[0] == results[1]
    expected = [line.encode(encoding, "backslashreplace").decode(encoding) for line in written]
    assert results[0].decode(encoding).splitlines() == expected


# -- the direct write: the record path's bytes, without the record -----------------------------------

ACCESS_LOGGER = logging.getLogger("flask.allow")
FORMATS = [
    ACCESS_LOG_DEFAULTS["formatter"],
    "%(message)s",
    "%(levelname)s|%(name)s|%(message)s|%(msecs)03d|%(process)d",
    "%(created)f %(relativeCreated)d %(levelno)d %(msg)r %(thread)d %(threadName)s %(processName)s %(message)s",
    "%(pathname)s %(filename)s %(module)s %(funcName)s %(lineno)d [%(asctime)-30s] 100%% %(message)s",
    "%%(message)s is not a field: %(message)s %(levelname).1s",
    "[%(asctime)s] %(levelname)s %(name)s: %(message)s (100%%)",  # the text before the message made once a second
    *(["%(taskName)s %(message)s"] if sys.version_info >= (3, 12) else []),
]
REQUESTS = [  # (client, path, user agent): allowed, denied, no rule matched, escaped, a URL werkzeug makes
    ("127.0.0.1", "/", "curl/8.0"),
    ("10.1.2.3", "/admin?x=1", "curl/8.0"),
    ("192.0.2.7", "/a/b.txt", 'evil\r\n2024-01-01 00:00:00,000 -    INFO - forged "quote" \\'),
    ("10.9.9.9", "/caf%C3%A9 x?q=%41", "Mozilla/5.0 (X11; Linux x86_64) caf\u00e9"),
    ("2001:db8::1", "/" + "long/" * 30, "x" * 200),
    ("192.0.2.8", "/%E2%80%AEfdp.exe", "caf\u00e9 \u202egnp.exe \u2066"),  # bidirectional overrides
] * 8


class Clock:
    """``time.time`` and ``time.time_ns`` stepping through the same instants on every run: lines
    written at different real times compare byte for byte (seconds, milliseconds and their edges)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1_700_000_000_998_700_000
        monkeypatch.setattr(time, "time", lambda: self.tick() / 1e9)
        monkeypatch.setattr(time, "time_ns", self.tick)

    def tick(self) -> int:
        self.now += 377_123  # about a third of a millisecond
        return self.now


def emits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the records the access log's file handlers are given (the direct write gives none)."""
    count = [0]
    original = _FileHandler.emit

    def counting(self: _FileHandler, record: logging.LogRecord) -> None:
        count[0] += 1
        original(self, record)

    monkeypatch.setattr(_FileHandler, "emit", counting)
    return count


def run_requests(app: Flask, requests: list[tuple[str, str, str]]) -> None:
    client = app.test_client()
    for address, path, agent in requests:
        client.get(path, environ_base={"REMOTE_ADDR": address, "HTTP_USER_AGENT": agent})


def files_of(directory: Path) -> list[tuple[str, bytes]]:
    return sorted((path.name, path.read_bytes()) for path in directory.iterdir())


class Capture(logging.Handler):
    """A handler that keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("fmt", FORMATS)
def test_direct_write_is_the_record_paths_bytes(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    count = emits(monkeypatch)
    results = []
    for way in ("direct", "records", "queued"):  # queued: direct, through the writer thread
        count[0] = 0
        directory = tmp_path / way
        directory.mkdir()
        log = {"filename": str(directory / "access.log"), "formatter": fmt, "maxBytes": 2500, "backupCount": 99}
        log["queue"] = way == "queued"
        rules = [{"ALLOW": "127.0.0.1", "DENY": "10.0.0.0/8"}]
        app = make_app({"ADDRESS_RESTRICTION": rules, "ACCESS_LOG": log}, name=way)
        app.extensions["flask_allow"].access_log._records.template()  # made once, from a record: a tick
        Clock(monkeypatch)
        root = logging.getLogger()
        capture = Capture()
        if way != "records":
            monkeypatch.setattr(ACCESS_LOGGER, "propagate", False)  # no one but the app's handler
        else:
            root.addHandler(capture)  # someone else listens: the records path, as before
        try:
            run_requests(app, REQUESTS)
        finally:
            root.removeHandler(capture)
            monkeypatch.setattr(ACCESS_LOGGER, "propagate", True)
            app.extensions["flask_allow"].close()  # the queue written out
        assert count[0] == (len(REQUESTS) if way == "records" else 0)
        assert len(capture.records) == (len(REQUESTS) if way == "records" else 0)
        results.append(files_of(directory))
    assert results[0] == results[1] == results[2]
    assert len(results[0]) > 3  # rolled over
    written = [line for _, data in results[0] for line in data.decode("utf-8").splitlines()]
    assert len(written) == len(REQUESTS)


def test_direct_write_when_the_root_logger_has_no_handler(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = emits(monkeypatch)
    log = tmp_path / "access.log"
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ACCESS_LOG": str(log)})
    root = logging.getLogger()
    saved = root.handlers[:]  # pytest's own log capture, while the test runs
    root.handlers.clear()
    try:
        run_requests(app, REQUESTS[:5])
    finally:
        root.handlers[:] = saved
    assert count[0] == 0
    assert len(lines(log)) == 5
    assert re.fullmatch(
        rf"{STAMP} -   ERROR - 10\.1\.2\.3 denied by .* GET http://localhost/admin\?x=1 \"curl/8\.0\"", lines(log)[1]
    )


def _root_handler(capture: Capture, app: Flask, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    logging.getLogger().addHandler(capture)
    return lambda: logging.getLogger().removeHandler(capture)


def _parent_handler(capture: Capture, app: Flask, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    parent = logging.getLogger("flask")  # between flask.allow and the root once it exists
    parent.addHandler(capture)
    return lambda: parent.removeHandler(capture)


def _own_handler(capture: Capture, app: Flask, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    ACCESS_LOGGER.addHandler(capture)
    return lambda: ACCESS_LOGGER.removeHandler(capture)


def _logger_filter(capture: Capture, app: Flask, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    def seen(record: logging.LogRecord) -> bool:
        capture.records.append(record)
        return True

    ACCESS_LOGGER.addFilter(seen)
    return lambda: ACCESS_LOGGER.removeFilter(seen)


def _record_factory(capture: Capture, app: Flask, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    original = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = original(*args, **kwargs)
        if record.name == "flask.allow":
            capture.records.append(record)
        return record

    logging.setLogRecordFactory(factory)
    return lambda: logging.setLogRecordFactory(original)


def _patched_call_handlers(capture: Capture, app: Flask, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    original = logging.Logger.callHandlers  # as Sentry's logging integration does

    def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
        capture.records.append(record)
        original(self, record)

    monkeypatch.setattr(logging.Logger, "callHandlers", call_handlers)
    return lambda: None


def _patched_handle(capture: Capture, app: Flask, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    original = ACCESS_LOGGER.handle

    def handle(record: logging.LogRecord) -> None:
        capture.records.append(record)
        original(record)

    ACCESS_LOGGER.handle = handle  # type: ignore[method-assign]
    return lambda: delattr(ACCESS_LOGGER, "handle")  # not monkeypatch: it would leave a bound method behind


@pytest.mark.parametrize(
    "listen",
    [
        _root_handler,
        _parent_handler,
        _own_handler,
        _logger_filter,
        _record_factory,
        _patched_call_handlers,
        _patched_handle,
    ],
)
def test_records_go_through_the_logger_when_someone_else_could_see_them(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listen: Callable[..., Callable[[], None]]
) -> None:
    count = emits(monkeypatch)
    log = tmp_path / "access.log"
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ACCESS_LOG": str(log)})
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()  # no one listens but what the case adds
    capture = Capture()
    undo = listen(capture, app, monkeypatch)
    try:
        run_requests(app, REQUESTS[:5])
    finally:
        undo()
        root.handlers[:] = saved
    assert [r.getMessage().split(" ")[0] for r in capture.records if r.name == "flask.allow"] == [
        address for address, _, _ in REQUESTS[:5]
    ]
    assert count[0] == 5
    assert len(lines(log)) == 5


def test_the_handler_given_another_formatter_or_an_unknown_field_goes_the_record_path(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = emits(monkeypatch)
    monkeypatch.setattr(ACCESS_LOGGER, "propagate", False)
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    app = make_app({"ACCESS_LOG": {"filename": str(first), "formatter": "%(message)s %(stack_info)s"}}, name="a")
    run_requests(app, REQUESTS[:1])
    assert count[0] == 1 and lines(first) == [
        '127.0.0.1 allowed by default (no rule matched) GET http://localhost/ "curl/8.0" None'
    ]
    other = make_app({"ACCESS_LOG": str(second)}, name="b")
    other.extensions["flask_allow"].access_log.file_handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    run_requests(other, REQUESTS[:1])
    assert count[0] == 2 and lines(second) == [
        'INFO 127.0.0.1 allowed by default (no rule matched) GET http://localhost/ "curl/8.0"'
    ]


def test_handler_level_and_a_disabled_logger_hold_on_both_paths(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for way in ("direct", "records"):
        log = tmp_path / f"{way}.log"
        app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ACCESS_LOG": str(log)}, name=way)
        app.extensions["flask_allow"].access_log.file_handler.setLevel(logging.ERROR)
        monkeypatch.setattr(ACCESS_LOGGER, "propagate", way == "records")  # pytest's handlers on the root
        run_requests(app, REQUESTS[:2])  # allowed (INFO): not written; denied (ERROR): written
        assert [line.split(" - ")[-1].split(" ")[0] for line in lines(log)] == ["10.1.2.3"]
        monkeypatch.setattr(ACCESS_LOGGER, "disabled", True)
        run_requests(app, REQUESTS[:2])
        monkeypatch.setattr(ACCESS_LOGGER, "disabled", False)
        assert len(lines(log)) == 1


def test_two_apps_in_one_process_both_write_directly(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = emits(monkeypatch)
    monkeypatch.setattr(ACCESS_LOGGER, "propagate", False)
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    app_a = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ACCESS_LOG": str(log_a)}, name="a")
    app_b = make_app({"ACCESS_LOG": {"filename": str(log_b), "queue": True}}, name="b")
    app_c = make_app({"ACCESS_LOG": str(tmp_path / "c.log")}, name="c")
    run_requests(app_a, REQUESTS[:2])
    run_requests(app_b, REQUESTS[2:3])
    run_requests(app_a, REQUESTS[3:4])
    run_requests(app_c, REQUESTS[4:5])
    app_b.extensions["flask_allow"].close()
    assert count[0] == 0  # the queued app's line went to its writer thread as text, not as a record
    assert [line.split(" - ")[-1].split(" ")[0] for line in lines(log_a)] == ["127.0.0.1", "10.1.2.3", "10.9.9.9"]
    assert [line.split(" - ", 2)[2].split(" ")[0] for line in lines(log_b)] == ["192.0.2.7"]
    assert len(lines(tmp_path / "c.log")) == 1


def test_reload_to_another_file_writes_directly_to_the_new_one(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = emits(monkeypatch)
    monkeypatch.setattr(ACCESS_LOGGER, "propagate", False)
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    app = make_app({"ACCESS_LOG": str(first)})
    run_requests(app, REQUESTS[:2])
    app.config["ACCESS_LOG"] = str(second)
    app.extensions["flask_allow"].extension.reload(app)
    run_requests(app, REQUESTS[2:5])
    assert (len(lines(first)), len(lines(second)), count[0]) == (2, 3, 0)


def test_a_line_that_cannot_be_written_is_reported_as_logging_reports_it(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    original = _FileHandler.put_bytes

    # each way's first line goes through it (the C writer hands it back: the file's size not yet known)
    def full_disk_once(self: _FileHandler, data: bytes, length: int) -> None:
        if b"192.0.2.1 " in data:
            raise OSError(28, "No space left on device")
        original(self, data, length)

    monkeypatch.setattr(_FileHandler, "put_bytes", full_disk_once)
    for way in ("direct", "records"):
        log = tmp_path / f"{way}.log"
        app = make_app({"ACCESS_LOG": {"filename": str(log), "encoding": "ascii"}}, name=way)
        monkeypatch.setattr(ACCESS_LOGGER, "propagate", way == "records")
        client = app.test_client()
        assert client.get("/a", environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 200
        assert "--- Logging error ---" in capsys.readouterr().err
        assert client.get("/caf\u00e9", environ_base={"REMOTE_ADDR": "192.0.2.2"}).status_code == 200
        written = [line.split(" - ")[-1].split(" ") for line in lines(log)]
        assert [(line[0], line[-2]) for line in written] == [("192.0.2.2", "http://localhost/caf\\xe9")]


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs a file-size limit (RLIMIT_FSIZE)")
def test_a_line_the_file_system_refuses_is_reported_and_the_next_one_written(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real refusal (the process's file-size limit reached: EFBIG), whichever way the line goes
    (made and written in C, or through the record): the request is served, the failure reported
    as ``logging`` reports it, and the next line written once there is room again."""
    import resource

    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel's signal ends the process
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        for way in ("direct", "records"):
            log = tmp_path / f"{way}.log"
            app = make_app({"ACCESS_LOG": str(log)}, name=way)
            monkeypatch.setattr(ACCESS_LOGGER, "propagate", way == "records")
            client = app.test_client()
            for address in ("192.0.2.1", "192.0.2.2"):  # the second one sized and written as most lines are
                assert client.get("/a", environ_base={"REMOTE_ADDR": address}).status_code == 200
            if way == "direct":
                assert app.extensions["flask_allow"].access_log._write is not None
            resource.setrlimit(resource.RLIMIT_FSIZE, (log.stat().st_size, hard))  # no room for one byte more
            try:
                assert client.get("/a", environ_base={"REMOTE_ADDR": "192.0.2.3"}).status_code == 200
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            error = capsys.readouterr().err
            assert "--- Logging error ---" in error and "File too large" in error, error
            assert client.get("/a", environ_base={"REMOTE_ADDR": "192.0.2.4"}).status_code == 200
            written = [line.split(" - ")[-1].split(" ")[0] for line in lines(log)]
            assert written == ["192.0.2.1", "192.0.2.2", "192.0.2.4"]
            app.extensions["flask_allow"].close()
    finally:
        signal.signal(signal.SIGXFSZ, previous_handler)


def test_a_forked_child_writes_its_own_process_id(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ACCESS_LOGGER, "propagate", False)
    log = tmp_path / "access.log"
    app = make_app({"ACCESS_LOG": {"filename": str(log), "formatter": "%(process)d %(message)s"}})
    run_requests(app, REQUESTS[:1])
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        try:
            run_requests(app, REQUESTS[1:2])
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    run_requests(app, REQUESTS[2:3])
    assert [line.split(" ")[:2] for line in lines(log)] == [
        [str(os.getpid()), "127.0.0.1"],
        [str(child), "10.1.2.3"],
        [str(os.getpid()), "192.0.2.7"],
    ]


# -- formats, escaping ------------------------------------------------------------------------------


def test_positional_formats() -> None:
    def positional(fmt: str) -> tuple[str, tuple[str, ...]] | None:
        return _positional(logging.PercentStyle(fmt))

    assert positional(ACCESS_LOG_DEFAULTS["formatter"]) == ("%s - %7s - %s", ("asctime", "levelname", "message"))
    assert positional("%%(message)s 100%% %(message)-9.3s%(message)r") == (
        "%%(message)s 100%% %-9.3s%r",
        ("message", "message"),
    )
    assert positional("%(message)s %(stack_info)s") is None  # a field a record has, but not filled in here
    assert positional("%(message)s %s") is None  # a positional conversion takes the whole dict
    assert positional("%(message)*s") is None
    assert positional("%(message)ld") is None
    assert _positional(logging.StrFormatStyle("{message}")) is None  # type: ignore[arg-type]
    assert _Formatter("%(message)s", datefmt="%H").direct is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_escape_leaves_alone_exactly_what_needs_no_escaping(text: str) -> None:
    assert escape(text) == "".join(map(escaped_char, text))


def test_escape_writes_format_characters_as_control_characters() -> None:
    bidi = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
    assert escape(f"a{bidi}b") == "a" + "".join(f"\\u{ord(c):04x}" for c in bidi) + "b"
    assert escape("\x85\u2028\u2029\x00\n\xad\xa0") == "\\x85\\u2028\\u2029\\x00\\x0a\\xad\\xa0"
    assert escape("\U000e0001 \udcff") == "\\U000e0001 \\udcff"  # a tag character, a lone surrogate
    assert escape("caf\u00e9 \u20ac \U0001f4a9") == "caf\u00e9 \u20ac \U0001f4a9"  # printable: as it is


@settings(max_examples=200, deadline=None)
@given(
    agent=st.text(st.characters(codec="utf-8"), max_size=30),
    method=st.sampled_from(["GET", "POST", 'G"T', "GET\nX", "G\\T"]),
    allowed=st.booleans(),
)
def test_format_line_escapes_what_the_parts_escaped_would(agent: str, method: str, allowed: bool) -> None:
    environ = create_environ("/a", base_url="http://localhost")
    environ.update({"HTTP_USER_AGENT": agent, "REQUEST_METHOD": method})
    request = Request(environ)
    decision = Decision(Client("192.0.2.1", request), None, allowed)
    head = f"192.0.2.1 {decision.reason} {request.method} http://localhost/a"
    assert format_line(decision) == f'{escape(head)} "{escape(agent)}"'

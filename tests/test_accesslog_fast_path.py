"""The access log's fast write path gives exactly what the slow, standard one gives.

``url_of`` against ``request.url``; the access log's LogRecords against ``LogRecord()``; its
formatter against ``logging.Formatter``; its file handler's rollovers against
``RotatingFileHandler``'s, line for line.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from flask import Flask, Request
from hypothesis import example, given, settings
from hypothesis import strategies as st
from werkzeug.test import create_environ

from flask_allow.accesslog import _FileHandler, _Formatter, _Records, url_of

APP = Flask("urls")

# mostly plain, with one odd piece now and then: what the fast path takes, and what it must not
plain = st.sampled_from([*"abcXYZ019/._~!$&'()*+,;=:@-", "x=1", "&"])
odd = st.sampled_from([*'%?# \u00e9\u2028\\"\t', "%41", "%2F", "%C3%A9", "%", "%zz"])
paths = st.lists(st.one_of(plain, plain, plain, odd), max_size=12).map(lambda parts: "/" + "".join(parts))
queries = st.lists(st.one_of(plain, plain, plain, odd), max_size=8).map("".join)
hosts = st.sampled_from(
    ["localhost", "example.com", "EXAMPLE.com", "a.b:8080", "a.b:80", "a.b:443", "[::1]:5000", "xn--n3h.net", "h:99999"]
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
    except Exception as exc:  # werkzeug refuses it (an untrusted host, a bad port): so must we
        try:
            url_of(request)
        except Exception as mine:
            assert type(mine) is type(exc)
            return
        raise AssertionError(f"url_of answered where request.url raised {exc!r}") from None
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


def test_file_handler_rolls_over_where_the_standard_one_does(tmp_path: Path) -> None:
    lines = [f"line {n} " + "x" * (n * 7 % 90) for n in range(400)]
    results = []
    for kind, cls in (("ours", _FileHandler), ("stdlib", logging.handlers.RotatingFileHandler)):
        directory = tmp_path / kind
        directory.mkdir()
        (directory / "log").write_text("already here\n")  # appended to, counted from the start
        handler = cls(str(directory / "log"), maxBytes=2000, backupCount=50, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        for line in lines:
            handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))
        handler.close()
        results.append(sorted((path.name, path.read_text()) for path in directory.iterdir()))
    assert results[0] == results[1]
    assert len(results[0]) > 10

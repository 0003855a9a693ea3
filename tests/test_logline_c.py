"""The C maker and writer of a plain request's line (``_logline.c``) write what the Python code writes.

For any request parts (plain ones mostly, with odd characters, hosts, ports and non-str values
mixed in), the C line is either None (the Python code then writes the line) or byte for byte the
Python line: the formatter's text before the message, ``format_line``'s message, the tail and a
newline; the C writer writes that line to the file, or answers False (not plain: the Python code writes it)
or the line's bytes (the handler rolls over first, maybe). The plain requests must take the C
path, and an app's log is the same with it and without it (``FLASK_ALLOW_PURE_PYTHON``). These
tests also run under the sanitizers (``test_clookup_sanitized.py``).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.test import create_environ
from werkzeug.wrappers import Request

from flask_allow.accesslog import fastline
from flask_allow.accesslog import formatter as formatting
from flask_allow.accesslog.file import RECOUNT
from flask_allow.accesslog.formatter import _Formatter, _Records
from flask_allow.accesslog.line import format_line
from flask_allow.clookup import ENVIRON_KEY

make = fastline.maker()
write = fastline.writer()
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


def clock_at(seconds: float) -> Any:
    """The clock's value at ``seconds`` as the formatter reads it (``formatter.clock()``): seconds, or
    nanoseconds where records use them (3.13+)."""
    return int(seconds * 1_000_000_000) if formatting._NS_CLOCK else seconds


@pytest.fixture(scope="module")
def log_fd() -> Iterator[int]:
    """A file to write lines to (emptied before each line: see ``c_written``)."""
    with tempfile.TemporaryFile() as file:
        yield file.fileno()


def c_written(
    fd: int, formatter: _Formatter, level: int, request: Request, address: str, reason: str, now: Any, **count: int
) -> tuple[Any, bytes, Any]:
    """What the C writer answers, what it wrote to the emptied file ``fd``, and its count after."""
    assert write is not None
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    counted = fastline.count()
    counted.size, counted.uncounted = count.get("size", 0), count.get("uncounted", 0)
    answer = write(
        formatter,
        now,
        level,
        request.environ,
        request.method,
        address,
        reason,
        formatter.tail or "",
        counted,
        count.get("max_bytes", 1 << 40),
        fd,
        RECOUNT,
    )
    return answer, os.pread(fd, 1 << 20, 0), counted


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
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
    log_fd: int, scheme: str, host: Any, root: Any, path: Any, query: Any, agent: Any, method: str
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
            found = c_line(formatter, 20, request, address, reason, moment)  # the prefix made for moment
            if formatter.per_second:  # the writer writes that line, or leaves it to Python
                answer, data, counted = c_written(log_fd, formatter, 20, request, address, reason, moment[0])
                assert (answer, data) == ((False, b"") if found is None else (True, found))  # False: not plain
                assert (counted.size, counted.uncounted) == ((0, 0) if found is None else (len(found), 1))
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
    assert (log._make is None) == (log._write is None) == pure
    answers: list[Any] = []
    if not pure:

        def spy(*args: Any) -> Any:
            answers.append(log_writer(*args))
            return answers[-1]

        def maker_spy(*args: Any) -> Any:
            made.append(args[0]["PATH_INFO"])
            return log_maker(*args)

        log_writer, log._write = log._write, spy
        log_maker, log._make = log._make, maker_spy
    made: list[str] = []
    client = app.test_client()
    for address in ("192.0.2.7", "198.51.100.1"):
        for path, agent in (
            ("/", "curl/8.5.0"),
            ("/a%20b?q=%E2%82%AC", "caf\u00e9"),
            ("/x;y=1?z", 'say "hi"'),
            ("/", "c"),
        ):
            client.get(path, headers={"User-Agent": agent}, environ_base={"REMOTE_ADDR": address})
    app.extensions["flask_allow"].close()
    if not pure:  # the plain requests' lines written in C (the first sizes the file: put_bytes)
        # a client's first line makes the prefix of the second and level (Python), its second plain
        # request's is written in C; the others are not plain (False), and are not planned again
        # by the C maker
        assert answers == [None, False, False, True] * 2
        assert made == ["/", "/"]
    return [line.split(" - ", 1)[1] for line in (tmp_path / name).read_text().splitlines()]


def test_the_log_is_the_same_with_and_without_the_c_maker(
    tmp_path: Path, make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("flask.allow"), "propagate", False)  # not pytest's capture: the C way
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)  # one second for every line
    monkeypatch.setattr(time, "time_ns", lambda: int(now * 1_000_000_000))
    with_c = _logged(tmp_path, "c.log", False, make_app)
    without = _logged(tmp_path, "py.log", True, make_app)
    assert with_c == without and len(with_c) == 8


def plain_request() -> Request:
    environ = create_environ("/api?x=1", base_url="http://10.0.0.1:31337", headers={"User-Agent": "curl/8.5.0"})
    return Request(environ)


def test_the_writer_counts_the_line_as_put_bytes_does_and_leaves_a_rollover_to_it(log_fd: int) -> None:
    """Written only when the count says it fits (the size known, under maxBytes, not due to be
    read again); else the line's bytes come back, written by no one yet, the count untouched."""
    formatter, request = _Formatter(FORMATS[0]), plain_request()
    now = clock_at(time.time())
    formatter.parts(20, _Records({}), (now, None, None))
    answer, line, counted = c_written(log_fd, formatter, 20, request, "192.0.2.1", "allowed", now, size=1000)
    assert answer is True and line.endswith(b' - 192.0.2.1 allowed GET http://10.0.0.1:31337/api?x=1 "curl/8.5.0"\n')
    assert (counted.size, counted.uncounted) == (1000 + len(line), 1)
    for count in (
        {"size": -1},  # not known: the file is asked
        {"size": 1000, "max_bytes": 1000 + len(line)},  # would reach maxBytes
        {"size": 0, "uncounted": RECOUNT - 1},  # due to be read again
    ):
        answer, data, counted = c_written(log_fd, formatter, 20, request, "192.0.2.1", "allowed", now, **count)
        assert (answer, data) == (line, b""), count
        assert (counted.size, counted.uncounted) == (count["size"], count.get("uncounted", 0))
    for extreme in ({"size": sys.maxsize}, {"uncounted": sys.maxsize}, {"uncounted": -sys.maxsize - 1}):
        count = {"size": 0, "max_bytes": sys.maxsize, **extreme}  # no overflow (UBSan watches): Python's to check
        answer, data, counted = c_written(log_fd, formatter, 20, request, "192.0.2.1", "allowed", now, **count)
        assert (answer, data, counted.size, counted.uncounted) == (line, b"", count["size"], count.get("uncounted", 0))
    with pytest.raises(ValueError, match="recount"):
        write(formatter, now, 20, request.environ, "GET", "a", "r", "", fastline.count(), 1, log_fd, 0)  # type: ignore[misc]
    for size in (-1, 0, 10**9):  # maxBytes 0: no rollover, the count not kept (as _rolls() keeps none)
        answer, data, counted = c_written(
            log_fd, formatter, 20, request, "192.0.2.1", "allowed", now, size=size, max_bytes=0
        )
        assert (answer, data, counted.size, counted.uncounted) == (True, line, size, 0)
    answer, data, _ = c_written(
        log_fd, formatter, 20, request, "192.0.2.1", "allowed", now, size=999, max_bytes=1000 + len(line)
    )
    assert (answer, data) == (True, line)  # one byte under


def test_the_writer_leaves_a_line_to_python_when_the_prefix_is_not_the_current_one(log_fd: int) -> None:
    formatter, request = _Formatter(FORMATS[0]), plain_request()
    second = 1_800_000_000.25
    now = clock_at(second)
    formatter.parts(20, _Records({}), (now, None, None))
    assert c_written(log_fd, formatter, 20, request, "a", "r", clock_at(second + 0.7))[0] is True  # the same second
    stale = [
        (20, clock_at(second + 1)),  # the next second
        (20, clock_at(second - 1)),
        (30, now),  # another level
        (20, clock_at(-1.5)),  # before 1970: Python's
        (20, float("nan")),
        (20, "now"),
    ]
    for level, moment in stale:
        assert c_written(log_fd, formatter, level, request, "a", "r", moment)[:2] == (None, b""), (level, moment)
    formatter.converter = time.gmtime  # type: ignore[assignment]
    assert c_written(log_fd, formatter, 20, request, "a", "r", now)[:2] == (None, b"")
    formatter.parts(20, _Records({}), (now, None, None))
    assert c_written(log_fd, formatter, 20, request, "a", "r", now)[0] is True
    formatter.default_msec_format = "%s.%03d"
    assert c_written(log_fd, formatter, 20, request, "a", "r", now)[:2] == (None, b"")
    formatter.parts(20, _Records({}), (now, None, None))  # a key of its own: not the writer's
    assert c_written(log_fd, formatter, 20, request, "a", "r", now)[:2] == (None, b"")
    assert not _Formatter("%(asctime)s %(process)d %(message)s").per_second  # a template field: Python's
    assert not _Formatter("%(levelname)s %(message)s").per_second  # no asctime: made once a millisecond
    fresh = _Formatter(FORMATS[0])  # nothing made yet
    assert c_written(log_fd, fresh, 20, request, "a", "r", now)[:2] == (None, b"")


def test_lines_of_several_levels_in_turn_each_keep_their_prefix(log_fd: int) -> None:
    """Allowed (INFO), denied (ERROR) and unmatched (WARNING) requests mixed: once each level's
    text is made for the second, every line of each is written in C, none left to Python."""
    formatter, request = _Formatter(FORMATS[0]), plain_request()
    now = clock_at(time.time())
    for level in (20, 40, 30):
        formatter.parts(level, _Records({}), (now, None, None))
    for level in (20, 40, 30, 40, 20, 30, 20):
        answer, data, _ = c_written(log_fd, formatter, level, request, "192.0.2.1", "r", now)
        assert answer is True, level
        assert f" - {logging.getLevelName(level):>7} - 192.0.2.1 r GET ".encode() in data


@pytest.mark.parametrize("clock", ["ns", "float"])
@pytest.mark.parametrize("fraction", [0, 1, 999_999, 1_000_000, 500_123_456, 998_999_999, 999_000_000, 999_999_999])
def test_the_writer_reads_the_clock_as_the_formatter_does(
    log_fd: int, monkeypatch: pytest.MonkeyPatch, clock: str, fraction: int
) -> None:
    """``time.time_ns()`` (the clock of 3.13's records) and ``time.time()``: the same second and
    milliseconds as ``_times()`` and ``parts()``, at the edges of a second too."""
    monkeypatch.setattr(formatting, "_NS_CLOCK", clock == "ns")
    request = plain_request()
    for second in (1_796_686_179, 1_000_000_000, 86_399):
        ns = second * 1_000_000_000 + fraction
        now: Any = ns if clock == "ns" else ns / 1e9
        formatter = _Formatter(FORMATS[0])
        moment = (now, None, None)
        message = format_line(decision_for(request, "192.0.2.1", "allowed"))
        expected = python_line(formatter, 20, message, moment)
        formatter.parts(20, _Records({}), moment)
        answer, data, _ = c_written(log_fd, formatter, 20, request, "192.0.2.1", "allowed", now)
        assert (answer, data) == (True, expected), (second, fraction)


def test_a_count_starts_unknown_and_holds_whole_numbers() -> None:
    assert write is not None
    count = fastline.count()
    assert type(count).__module__ == "flask_allow._logline"
    assert (count.size, count.uncounted) == (-1, 0)
    count.size, count.uncounted = 10, 2
    assert (count.size, count.uncounted) == (10, 2)
    with pytest.raises(TypeError):
        count.size = "10"  # type: ignore[assignment]
    with pytest.raises(TypeError):
        type(count)(1)  # type: ignore[call-arg]


def test_a_write_that_fails_is_an_os_error() -> None:
    formatter, request = _Formatter(FORMATS[0]), plain_request()
    now = clock_at(time.time())
    formatter.parts(20, _Records({}), (now, None, None))

    def attempt(fd: int) -> Any:
        count = fastline.count()
        count.size = 0
        return write(formatter, now, 20, request.environ, "GET", "a", "r", "", count, 1 << 40, fd, RECOUNT)  # type: ignore[misc]

    read, written = os.pipe()
    unused = os.dup2(written, 1000)  # a number the system will not hand out again meanwhile
    os.close(unused)
    with pytest.raises(OSError) as closed:
        attempt(unused)
    assert closed.value.errno == errno.EBADF
    os.close(read)
    with pytest.raises(BrokenPipeError):  # Python ignores SIGPIPE: the error is EPIPE
        attempt(written)
    os.close(written)
    line = attempt(2**40)  # not a file descriptor: the line handed back for put_bytes()
    assert isinstance(line, bytes) and line.endswith(b' - a r GET http://10.0.0.1:31337/api?x=1 "curl/8.5.0"\n')


def filled(written: int) -> int:
    """Fill a pipe until a write would block; how many bytes it took."""
    os.set_blocking(written, False)
    held = 0
    try:
        while True:
            held += os.write(written, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(written, True)
    return held


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
@pytest.mark.parametrize("full", [False, True], ids=["short write", "EINTR"])
@pytest.mark.parametrize("raising", [False, True], ids=["handler runs", "handler raises"])
def test_a_write_interrupted_by_a_signal_runs_its_handler_and_writes_the_rest(full: bool, raising: bool) -> None:
    """A line longer than a pipe holds, its reader late: the write blocks and a signal interrupts
    it, after part of the line (a short write) or before any (EINTR, the pipe full). Its Python
    handler runs and the rest of the line is written, as ``os.write`` and ``_finish`` would do;
    a handler that raises ends the write there with its error."""
    assert write is not None
    formatter = _Formatter(FORMATS[0])
    request = Request(create_environ("/", headers={"User-Agent": "a" * 300_000}))  # beyond a pipe's 64 KiB
    now = clock_at(time.time())
    formatter.parts(20, _Records({}), (now, None, None))
    handled: list[int] = []

    def handler(number: int, frame: Any) -> None:
        handled.append(number)
        if raising:
            raise ValueError("stop")

    previous = signal.signal(signal.SIGALRM, handler)
    read, written = os.pipe()
    received = bytearray()

    def drain() -> None:
        time.sleep(0.3)
        while chunk := os.read(read, 1 << 16):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    count = fastline.count()
    count.size = 0
    try:
        held = filled(written) if full else 0
        reader.start()
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        try:
            answer = write(formatter, now, 20, request.environ, "GET", "a", "r", "", count, 1 << 40, written, RECOUNT)
        except ValueError as exc:
            answer = exc
        signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)
        os.close(written)
        if reader.ident is not None:
            reader.join()
        os.close(read)
    assert handled == [signal.SIGALRM]
    line = received[held:]
    if raising:
        assert isinstance(answer, ValueError)  # from the write, not after it
        assert len(line) < count.size  # the rest not written
    else:
        assert answer is True
        assert len(line) == count.size > 300_000 and line.endswith(b' "' + b"a" * 300_000 + b'"\n')

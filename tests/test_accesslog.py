"""The access log: one line per request, 2.0.x levels and format, rotation, injection, isolation."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO_ROOT, MakeApp, get, lines, status
from werkzeug.test import create_environ

from flask_allow import FlaskAllow

ACCESS_LOGGER = logging.getLogger("flask.allow")
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


#: Every test here runs on both ways a line is written (see conftest's ``write_path``).
pytestmark = pytest.mark.usefixtures("write_path")


def test_levels_and_the_2_0_default_format(make_app: MakeApp, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = make_app(
        {
            "ADDRESS_RESTRICTION": [{"ALLOW": "127.0.0.1", "DENY": "10.0.0.0/8"}],
            "ACCESS_LOG": str(log),
        }
    )
    assert status(app, "127.0.0.1") == 200
    assert get(app, "10.1.2.3", "/admin?x=1", headers={"User-Agent": "curl/8.0"}).status_code == 403
    assert status(app, "2001:db8::1") == 200
    written = lines(log)
    assert len(written) == 3
    assert re.fullmatch(
        rf"{STAMP} -    INFO - 127\.0\.0\.1 allowed by ADDRESS_RESTRICTION\[0\]\.ALLOW '127\.0\.0\.1' "
        r'GET http://localhost/ "Werkzeug/[0-9.]+"',
        written[0],
    ), written[0]
    assert re.fullmatch(
        rf"{STAMP} -   ERROR - 10\.1\.2\.3 denied by ADDRESS_RESTRICTION\[0\]\.DENY '10\.0\.0\.0/8' "
        r'GET http://localhost/admin\?x=1 "curl/8\.0"',
        written[1],
    ), written[1]
    assert re.fullmatch(
        rf"{STAMP} - WARNING - 2001:db8::1 allowed by default \(no rule matched\) "
        r'GET http://localhost/ "Werkzeug/[0-9.]+"',
        written[2],
    ), written[2]


def test_levels_through_the_logger(
    make_app: MakeApp, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ACCESS_LOGGER, "propagate", True)  # to pytest's handler on the root logger
    app = make_app(
        {"ADDRESS_RESTRICTION": [{"ALLOW": "127.0.0.1"}, {"DENY": "10.0.0.0/8"}], "ACCESS_LOG": str(tmp_path / "a.log")}
    )
    with caplog.at_level(logging.INFO, logger="flask.allow"):
        for address in ("127.0.0.1", "10.0.0.1", "192.0.2.1"):
            status(app, address)
    records = [(r.levelname, r.getMessage().split(" ")[0]) for r in caplog.records if r.name == "flask.allow"]
    assert records == [("INFO", "127.0.0.1"), ("ERROR", "10.0.0.1"), ("WARNING", "192.0.2.1")]


def test_dict_form_with_formatter(make_app: MakeApp, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = make_app(
        {
            "ADDRESS_RESTRICTION": [{"DENY": "2001:db8::/32"}],
            "ACCESS_LOG": {"filename": str(log), "formatter": "%(levelname)s|%(name)s|%(message)s"},
        }
    )
    status(app, "2001:db8::5")
    assert lines(log) == [
        "ERROR|flask.allow|2001:db8::5 denied by ADDRESS_RESTRICTION[0].DENY '2001:db8::/32' "
        f'GET http://localhost/ "Werkzeug/{_werkzeug_version()}"'
    ]


def _werkzeug_version() -> str:
    from importlib.metadata import version

    return version("werkzeug")


def test_rotation_with_max_bytes_and_backup_count(make_app: MakeApp, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = make_app(
        {
            "ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}],
            "ACCESS_LOG": {"filename": str(log), "maxBytes": 400, "backupCount": 2, "formatter": "%(message)s"},
        }
    )
    for i in range(40):
        status(app, f"192.0.2.{i}")
    files = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("access.log"))
    assert files == ["access.log", "access.log.1", "access.log.2"]
    for name in files:
        assert 0 < (tmp_path / name).stat().st_size <= 400
    kept = lines(tmp_path / "access.log.2") + lines(tmp_path / "access.log.1") + lines(log)
    numbers = [int(line.split(" ")[0].rsplit(".", 1)[1]) for line in kept]
    assert numbers == list(range(40 - len(numbers), 40))  # the newest lines, in order, none lost in between
    assert 3 < len(numbers) < 40


@pytest.mark.parametrize("propagate", [True, False], ids=["records", "direct"])
def test_max_bytes_zero_never_rotates(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, propagate: bool
) -> None:
    monkeypatch.setattr(ACCESS_LOGGER, "propagate", propagate)  # False: no one else listens, written in C
    log = tmp_path / "access.log"
    app = make_app({"ACCESS_LOG": {"filename": str(log), "maxBytes": 0, "backupCount": 1}})
    for i in range(30):
        status(app, f"192.0.2.{i}")
    written = lines(log)
    assert [line.split(" - ")[-1].split(" ")[0] for line in written] == [f"192.0.2.{i}" for i in range(30)]
    assert not (tmp_path / "access.log.1").exists()


# -- one request, one line ---------------------------------------------------------------------

NASTY = [
    "\r\n2024-01-01 00:00:00,000 -    INFO - 127.0.0.1 allowed by ADDRESS_RESTRICTION[0].ALLOW",
    "a\nb",
    "a\rb",
    "nul\x00bell\x07esc\x1b[31mred",
    "vt\x0bff\x0cfs\x1cgs\x1drs\x1e",
    "nel\x85del\x7f",
    "ls\u2028ps\u2029",
    'quote " and \\" backslash \\',
    '" - INFO - forged',
]


@pytest.mark.parametrize("agent", NASTY)
def test_user_agent_cannot_forge_lines(make_app: MakeApp, tmp_path: Path, agent: str) -> None:
    log = tmp_path / "access.log"
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ACCESS_LOG": str(log)})
    get(app, "10.0.0.1", environ_base={"HTTP_USER_AGENT": agent})
    get(app, "192.0.2.1", environ_base={"HTTP_USER_AGENT": agent})
    raw = log.read_bytes()
    assert raw.count(b"\n") == 2 and b"\r" not in raw
    text = raw.decode("utf-8")
    assert len(text.splitlines()) == 2  # str.splitlines also splits on \x0b \x1c \x85 \u2028 ...
    for line in text.splitlines():
        quoted = line.split(' "', 1)[1]
        assert quoted.endswith('"')
        inner = quoted[:-1]
        assert not re.search(r'(?<!\\)"', inner.replace("\\\\", "")), inner  # every quote inside is escaped
        assert all(ch.isprintable() for ch in line)


def test_url_path_cannot_forge_lines(make_app: MakeApp, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ACCESS_LOG": str(log)})
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.0.0.1"  # the client sets it over a raw environ's
    for path in ("/a\r\nforged", '/q"uote', "/esc\x1b[2J", "/nel\x85x", "/ls\u2028x".encode().decode("latin-1")):
        environ = create_environ("/")
        environ["PATH_INFO"] = path
        environ["QUERY_STRING"] = "a=\r\nb"
        assert client.open(environ).status_code == 403
    raw = log.read_bytes()
    assert raw.count(b"\n") == 5 and b"\r" not in raw
    written = raw.decode("utf-8").splitlines()
    assert len(written) == 5
    assert all(line.isprintable() for line in written)
    assert '/q\\"uote' in written[1]


def test_method_is_escaped_too(make_app: MakeApp, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = make_app({"ACCESS_LOG": str(log)})
    environ = create_environ("/")
    environ["REQUEST_METHOD"] = "GET\nX"
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "192.0.2.1"
    client.open(environ)
    written = lines(log)
    assert len(written) == 1 and "192.0.2.1 " in written[0] and "GET\\x0aX" in written[0]


# -- isolation and no duplicates --------------------------------------------------------------------


def test_two_apps_write_only_their_own_requests(make_app: MakeApp, tmp_path: Path) -> None:
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    app_a = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ACCESS_LOG": str(log_a)}, name="a")
    app_b = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "10.0.0.0/8"}], "ACCESS_LOG": str(log_b)}, name="b")
    unlogged = make_app({"ADDRESS_RESTRICTION": [{"DENY": "192.0.2.0/24"}]}, name="c")
    assert status(app_a, "10.0.0.1") == 403
    assert status(app_b, "10.0.0.2") == 200
    assert status(app_a, "192.0.2.1") == 200
    assert status(unlogged, "192.0.2.2") == 403
    assert status(app_b, "192.0.2.3") == 200
    a, b = lines(log_a), lines(log_b)
    assert [line.split(" - ")[-1].split(" ")[0] for line in a] == ["10.0.0.1", "192.0.2.1"]
    assert [line.split(" - ")[-1].split(" ")[0] for line in b] == ["10.0.0.2", "192.0.2.3"]


def test_two_apps_sharing_one_extension_and_one_file_name(make_app: MakeApp, tmp_path: Path) -> None:
    allow = FlaskAllow()
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    app_a = make_app({"ACCESS_LOG": str(log_a)}, extension=allow, name="a")
    app_b = make_app({"ACCESS_LOG": str(log_b)}, extension=allow, name="b")
    status(app_a, "192.0.2.1")
    status(app_b, "192.0.2.2")
    assert len(lines(log_a)) == 1 and "192.0.2.1" in lines(log_a)[0]
    assert len(lines(log_b)) == 1 and "192.0.2.2" in lines(log_b)[0]


def test_init_app_twice_and_reload_never_duplicate_lines(make_app: MakeApp, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ACCESS_LOG": str(log)})
    allow: FlaskAllow = app.extensions["flask_allow"].extension
    handlers = len(ACCESS_LOGGER.handlers)
    allow.init_app(app)
    allow.init_app(app)
    for _ in range(3):
        allow.reload(app)
    app.config["ACCESS_LOG"] = {"filename": str(log)}  # the same file written differently: still one handler
    allow.reload(app)
    assert len(ACCESS_LOGGER.handlers) == handlers
    assert sum(f.__name__ == "flask_allow_guard" for f in app.url_value_preprocessors[None]) == 1
    status(app, "10.0.0.1")
    status(app, "192.0.2.1")
    assert len(lines(log)) == 2


def test_another_extension_on_the_same_app_is_refused(make_app: MakeApp, tmp_path: Path) -> None:
    app = make_app({"ACCESS_LOG": str(tmp_path / "access.log")})
    with pytest.raises(RuntimeError, match="already guarded"):
        FlaskAllow(app)


def test_access_log_without_rules_logs_every_request(make_app: MakeApp, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = make_app({"ACCESS_LOG": str(log)})
    for address in ("127.0.0.1", "10.0.0.1", "2001:db8::1", "::ffff:10.0.0.1"):
        assert status(app, address) == 200
    written = lines(log)
    assert len(written) == 4
    assert all(" -    INFO - " in line and "allowed by default" in line for line in written)


def test_report_only_lines(make_app: MakeApp, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ACCESS_LOG": str(log), "ALLOW_REPORT_ONLY": True})
    assert status(app, "10.0.0.1") == 200
    assert status(app, "192.0.2.1") == 200
    denied, passed = lines(log)
    assert (
        " -   ERROR - 10.0.0.1 denied by ADDRESS_RESTRICTION[0].DENY '10.0.0.0/8' [report-only: let through]" in denied
    )
    assert "report-only" not in passed and " - WARNING - 192.0.2.1 allowed by default" in passed


# -- the opt-in queue -----------------------------------------------------------------------------------


def test_queue_loses_no_line_when_the_state_is_closed(make_app: MakeApp, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    app = make_app(
        {"ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}], "ACCESS_LOG": {"filename": str(log), "queue": True}}
    )
    state = app.extensions["flask_allow"]
    assert state.access_log.queue is not None and state.access_log.queue.running
    for i in range(300):
        status(app, f"10.0.{i // 256}.{i % 256}")
    state.close()
    written = lines(log)
    assert len(written) == 300
    assert [line.split(" - ")[-1].split(" ")[0] for line in written] == [
        f"10.0.{i // 256}.{i % 256}" for i in range(300)
    ]
    assert state.access_log.handler not in ACCESS_LOGGER.handlers


def test_queue_loses_no_line_on_reload_to_another_file(make_app: MakeApp, tmp_path: Path) -> None:
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    app = make_app({"ACCESS_LOG": {"filename": str(first), "queue": True}})
    for i in range(100):
        status(app, f"192.0.2.{i}")
    app.config["ACCESS_LOG"] = {"filename": str(second), "queue": True}
    app.extensions["flask_allow"].extension.reload(app)
    assert len(lines(first)) == 100  # the old writer was drained when it was replaced
    status(app, "192.0.2.200")
    app.extensions["flask_allow"].close()
    assert len(lines(second)) == 1


@pytest.mark.parametrize("queue", [True, False])
@pytest.mark.parametrize("form", ["%(asctime)s %(message)s", "%(levelname)s %(exc_text)s %(message)s"])
def test_a_line_handed_over_after_a_reload_replaced_the_log_is_written(
    make_app: MakeApp, tmp_path: Path, queue: bool, form: str
) -> None:
    """A request that got the old log before a reload replaced it (its observers read before the
    swap) writes its line after the old log stopped: to the old file, not lost, formatted as its
    record would be (a format the log writes without records, and one it does not)."""
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    app = make_app({"ACCESS_LOG": {"filename": str(first), "queue": queue, "formatter": form}})
    status(app, "192.0.2.1")
    old = app.extensions["flask_allow"].access_log
    app.config["ACCESS_LOG"] = {"filename": str(second), "queue": queue}
    app.extensions["flask_allow"].extension.reload(app)
    assert old is not app.extensions["flask_allow"].access_log
    decision = app.extensions["flask_allow"].extension.check("192.0.2.2", app=app)
    assert (old._formatter.direct is None) == ("exc_text" in form)
    old.write(decision)  # late, as the request in flight during the reload writes it
    assert len(lines(first)) == 2 and lines(first)[-1].endswith("192.0.2.2 allowed by default (no rule matched)")
    if "exc_text" in form:
        assert lines(first)[-1].startswith("INFO None ")
    if queue:  # handed to the stopped queue itself (the request passed the check as it stopped)
        old.queue.put("a line queued as the queue stopped")  # type: ignore[union-attr]
        assert lines(first)[-1].endswith("a line queued as the queue stopped")
    app.extensions["flask_allow"].close()
    assert not lines(second)


def test_queue_loses_no_line_at_interpreter_exit(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    script = textwrap.dedent(
        f"""
        from flask import Flask
        from flask_allow import FlaskAllow

        app = Flask("exit")
        app.config["ACCESS_LOG"] = {{"filename": {str(log)!r}, "queue": True}}
        FlaskAllow(app)
        client = app.test_client()
        for i in range(500):
            client.get("/", environ_base={{"REMOTE_ADDR": "192.0.2.%d" % (i % 250)}})
        # no close(): the process just ends
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO_ROOT, timeout=60)
    assert len(lines(log)) == 500

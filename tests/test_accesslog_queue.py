"""``ACCESS_LOG {"queue": true}``: lines handed to a writer thread, written in batches, none lost.

Ordering with records (when others listen), rollover as the synchronous handler does it, fork
(the child writes its own lines, not the parent's again), and the thread's own failures.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from conftest import MakeApp, lines, status

from flask_allow.accesslog import queue as logqueue
from flask_allow.accesslog.queue import LineQueue
from flask_allow.config import ACCESS_LOGGER_NAME

PLAIN = "%(levelname)s %(message)s"  # no time stamp: files of two apps can be compared byte for byte
pytestmark = pytest.mark.usefixtures("access_log_alone")  # lines as text, unless a test adds a listener


def files(folder: Path, name: str) -> dict[str, bytes]:
    return {path.name.replace(name, "X"): path.read_bytes() for path in folder.glob(f"{name}*")}


def test_queued_lines_are_written_in_batches_and_in_order(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logqueue, "INTERVAL", 3600)  # nothing written until drained: requests only hand lines over
    log = tmp_path / "access.log"
    app = make_app({"ACCESS_LOG": {"filename": str(log), "queue": True, "formatter": PLAIN}})
    queue = app.extensions["flask_allow"].access_log.queue
    assert queue is not None
    for i in range(50):
        status(app, f"192.0.2.{i}")
    assert len(queue._items) == 50 and all(callable(item) for item in queue._items)  # lines to make, no records
    app.extensions["flask_allow"].close()
    assert [line.split(" ")[1] for line in lines(log)] == [f"192.0.2.{i}" for i in range(50)]


def test_queue_rolls_over_as_the_synchronous_log_does(make_app: MakeApp, tmp_path: Path) -> None:
    options = {"maxBytes": 1500, "backupCount": 40, "formatter": PLAIN}
    sync = make_app({"ACCESS_LOG": {"filename": str(tmp_path / "sync.log"), **options}}, name="sync")
    queued = make_app({"ACCESS_LOG": {"filename": str(tmp_path / "queued.log"), "queue": True, **options}}, name="q")
    for i in range(400):
        address = f"10.{i % 7}.{i // 256}.{i % 256}"
        status(sync, address)
        status(queued, address)
    sync.extensions["flask_allow"].close()
    queued.extensions["flask_allow"].close()
    written = files(tmp_path, "sync.log")
    assert len(written) > 10
    assert written == files(tmp_path, "queued.log")


def test_records_and_lines_keep_their_order(make_app: MakeApp, tmp_path: Path) -> None:
    """When someone else listens the lines go as records, through the same queue, in order."""
    log = tmp_path / "access.log"
    app = make_app({"ACCESS_LOG": {"filename": str(log), "queue": True, "formatter": PLAIN}})
    seen: list[str] = []
    listener = logging.Handler()
    listener.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    for i in range(30):
        if i == 10:
            logging.getLogger(ACCESS_LOGGER_NAME).addHandler(listener)
        if i == 20:
            logging.getLogger(ACCESS_LOGGER_NAME).removeHandler(listener)
        status(app, f"192.0.2.{i}")
    app.extensions["flask_allow"].close()
    assert [line.split(" ")[1] for line in lines(log)] == [f"192.0.2.{i}" for i in range(30)]
    assert [text.split(" ")[0] for text in seen] == [f"192.0.2.{i}" for i in range(10, 20)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_writes_its_own_lines_once(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logqueue, "INTERVAL", 3600)
    log = tmp_path / "access.log"
    app = make_app({"ACCESS_LOG": {"filename": str(log), "queue": True, "formatter": PLAIN}})
    state = app.extensions["flask_allow"]
    for i in range(5):
        status(app, f"192.0.2.{i}")  # handed over, not yet written, when the process forks
    child = os.fork()
    if child == 0:  # the child: its own thread, its own lines only
        code = 1
        try:
            code = 0 if state.access_log.queue.running else 2
            for i in range(3):
                status(app, f"198.51.100.{i}")
            state.close()
        finally:
            os._exit(code)
    _, code = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(code) == 0
    state.close()
    written = sorted(line.split(" ")[1] for line in lines(log))
    assert written == sorted([f"192.0.2.{i}" for i in range(5)] + [f"198.51.100.{i}" for i in range(3)])


def test_a_line_made_late_is_made_as_the_request_would_have(make_app: MakeApp, tmp_path: Path) -> None:
    """A queued line is formatted in the writer thread, from what was read in the request: the
    request (held until then), the time and the thread's name; a DNS rule's line is made at once."""
    log = tmp_path / "access.log"
    fmt = "%(threadName)s %(message)s"
    app = make_app(
        {
            "ADDRESS_RESTRICTION": [{"DENY": "10.0.0.0/8"}],
            "ACCESS_LOG": {"filename": str(log), "queue": True, "formatter": fmt},
        }
    )
    client = app.test_client()
    client.get("/some/path?q=1", environ_base={"REMOTE_ADDR": "10.1.1.1", "HTTP_USER_AGENT": "agent/1"})
    app.extensions["flask_allow"].close()
    assert lines(log) == [
        "MainThread 10.1.1.1 denied by ADDRESS_RESTRICTION[0].DENY '10.0.0.0/8' GET "
        'http://localhost/some/path?q=1 "agent/1"'
    ]


def test_a_failed_write_is_reported_and_the_thread_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    class Failing(logging.Handler):
        written: list[str] = []  # noqa: RUF012
        fail = True

        def put_many(self, texts: list[str]) -> None:
            if self.fail:
                self.fail = False
                raise OSError("disk full")
            self.written.extend(texts)

        def emit(self, record: logging.LogRecord) -> None:
            self.written.append(f"record {record.getMessage()}")

    handler = Failing()
    queue = LineQueue(handler, interval=0.01)
    queue.start()
    queue.put("first")
    queue.drain()
    queue.put("second")
    queue.put(lambda: 1 / 0)  # type: ignore[arg-type,return-value]  # a line that cannot be made
    queue.put(lambda: "fourth")
    queue.put(logging.makeLogRecord({"msg": "third"}))
    queue.stop()
    assert handler.written == ["second", "fourth", "record third"]
    assert "disk full" in capsys.readouterr().err and not queue.running
    queue.stop()  # twice is harmless

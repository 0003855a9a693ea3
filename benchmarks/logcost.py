"""Where the synchronous access log's cost goes, in one process: the floor of one write per line.

The 10-rule app of ``requests.py`` with its access log, against the same app whose log observer
is replaced by less and less of it: only ``os.write`` of a constant line (the floor of any
synchronous log: one system call per request), that write under the handler's lock after the
reason is made, and the real observer with ``maxBytes`` 0 (no size counting) and as configured.
The same log written to ext4 (the working folder), tmpfs (``/dev/shm``) and ``/dev/null`` says
how much of the write is the file system's. Each row is divided by the bare app of its round;
CPU time, as ``requests.py``. Also prints the observer's own time per call, measured around it
inside the requests, against the same call repeated warm in a loop.

    python benchmarks/logcost.py [--quick] [--json PATH]
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import _common as common
from requests import CLIENT, hello_app, ten_rules

from flask_allow.accesslog.line import reason_of

LINE = (
    b"2026-12-08 01:36:43,820 -    INFO - 192.0.2.10 allowed by ADDRESS_RESTRICTION[8].ALLOW '192.0.2.0/24'"
    b' GET http://localhost/ "Werkzeug/3.1.9"\n'
)


def logged(name: str, path: str, max_bytes: int = 5 * 2**20) -> Any:
    return hello_app(
        name, {"ADDRESS_RESTRICTION": ten_rules(), "ACCESS_LOG": {"filename": path, "maxBytes": max_bytes}}
    )


def observe(app: Any, write: Any) -> None:
    """Put ``write(log, decision)`` in place of the app's access-log observer."""
    log = app.extensions["flask_allow"].access_log
    log.write = types.MethodType(write, log)


def write_only(log: Any, decision: Any, app: Any = None) -> None:
    os.write(log.file_handler._fd, LINE)


def reason_and_locked_write(log: Any, decision: Any, app: Any = None) -> None:
    log._way(logging.INFO)
    reason_of(decision)
    with log.file_handler.lock:
        os.write(log.file_handler._fd, LINE)


class Timed:
    """The real observer, timed around each call (``perf_counter_ns``); keeps the last request."""

    def __init__(self, log: Any) -> None:
        self.write, self.nanoseconds, self.calls, self.last = type(log).write, 0, 0, None

    def __call__(self, log: Any, decision: Any, app: Any = None) -> None:
        start = time.perf_counter_ns()
        self.write(log, decision, app)
        self.nanoseconds += time.perf_counter_ns() - start
        self.calls += 1
        self.last = (decision, decision.client.request)


def main() -> None:
    args = common.arguments(__doc__.splitlines()[0])
    rounds, batch = (3, 100) if args.quick else (40, 1000)
    common.print_header(
        "Where the access log's cost goes (Flask test client, hello world, 10 rules)",
        [f"{rounds} rounds of {batch} requests per app; client {CLIENT}; CPU time, as requests.py"],
    )
    memory = "/dev/shm" if os.path.isdir("/dev/shm") else None  # tmpfs on Linux
    with tempfile.TemporaryDirectory(dir=".") as disk, tempfile.TemporaryDirectory(dir=memory) as shm:
        apps = {
            "bare": hello_app("bare"),
            "bare (control)": hello_app("bare2"),
            "10 rules": hello_app("ten", {"ADDRESS_RESTRICTION": ten_rules()}),
            "10 rules + os.write of a constant line": logged("floor", str(Path(disk) / "floor.log"), 0),
            "... + _way(), the reason, the handler's lock": logged("locked", str(Path(disk) / "locked.log"), 0),
            "10 rules + access log, maxBytes 0": logged("nomax", str(Path(disk) / "nomax.log"), 0),
            "10 rules + access log (ext4 or the working folder's)": logged("log", str(Path(disk) / "access.log")),
            "10 rules + access log, tmpfs": logged("shm", str(Path(shm) / "access.log")),
            "10 rules + access log, /dev/null": logged("null", os.devnull, 0),
        }
        observe(apps["10 rules + os.write of a constant line"], write_only)
        observe(apps["... + _way(), the reason, the handler's lock"], reason_and_locked_write)
        timed_app = apps["10 rules + access log (ext4 or the working folder's)"]
        timed = Timed(timed_app.extensions["flask_allow"].access_log)
        observe(timed_app, timed)
        variants = common.request_batches(apps, batch, CLIENT, clock=time.process_time)
        found = common.interleave(variants, rounds)
        rows = common.ratio_rows(found, "bare", 1e6)
        common.table(["app", "µs per request", "÷ bare (median of rounds)", "range"], rows, "Against the bare app")
        in_requests = timed.nanoseconds / timed.calls / 1000
        assert timed.last is not None
        decision, request = timed.last
        log = timed_app.extensions["flask_allow"].access_log
        object.__setattr__(decision.client, "request", request)  # released after its request
        request.__dict__.pop("url", None)  # as in a request: its URL not made yet
        count = 2000 if args.quick else 20000
        start = time.perf_counter_ns()
        for _ in range(count):
            timed.write(log, decision)
        warm = (time.perf_counter_ns() - start) / count / 1000
        print(
            f"the observer (AccessLog.write) per call: {in_requests:.2f} µs inside the requests,"
            f" {warm:.2f} µs repeated warm in a loop"
        )
        for app in apps.values():
            state = app.extensions.get("flask_allow")
            if state is not None:
                state.close()
        expected = (rounds + 1) * batch + 1  # the rounds, the warm-up and request_batches' check
        for folder, name, more in ((disk, "floor.log", 0), (disk, "locked.log", 0), (disk, "nomax.log", 0),
                                   (disk, "access.log", count), (shm, "access.log", 0)):  # fmt: skip
            lines = sum(len(path.read_bytes().splitlines()) for path in Path(folder).glob(name + "*"))
            if lines != expected + more:
                raise SystemExit(f"{name} in {folder}: {lines:,} lines, not {expected + more:,}")
        print(f"every log holds one line per request ({expected:,} each, and the {count:,} warm ones)")
    common.write_json(args.json, "logcost", args, {"seconds": found, "table": rows, "observer_us": [in_requests, warm]})


if __name__ == "__main__":
    sys.exit(main())

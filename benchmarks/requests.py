"""In-process request overhead: a guarded hello-world app against the bare one, in one process.

Flask's test client sends the same GET to each app in turn, a batch at a time, the order rotated
each round; each guarded app's time is divided by the bare app's of the same round. Guarded
variants: 10 rules; a 1,000,000-network ``file:`` rule; 10 rules with the access log on (written
synchronously, the default; and with a port >= 10000 in the Host header, divided by a bare app
sent the same Host: Werkzeug and Flask take longer over such a Host whatever the guard does) and with
``ACCESS_LOG {"queue": true}`` (its thread running only during its own batches, and timed until
it has written the batch's lines: see ``drained``). The control row is a second
bare app measured the same way.

    python benchmarks/requests.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common
from flask import Flask

from flask_allow import FlaskAllow

CLIENT = "192.0.2.10"  # TEST-NET-1: the client of every request


def hello_app(name: str, config: dict[str, Any] | None = None) -> Flask:
    app = Flask(name)
    app.config["ALLOW_LOAD_ENTRY_POINTS"] = False

    @app.route("/")
    def hello() -> str:
        return "Hello, World!"

    if config is not None:
        app.config.update(config)
        FlaskAllow(app)
    return app


def ten_rules() -> list[dict[str, Any]]:
    """Ten rules, the client's the ninth."""
    return [{"DENY": [f"10.{i}.0.0/16" for i in range(8)]}, {"ALLOW": "192.0.2.0/24"}, {"DENY": "all"}]


def drained(run: Any, queue: Any, batch: int) -> Any:
    """The queued app's batch with its writer thread running, until the thread has written the
    batch's lines (its CPU time counted for the app whose lines it writes). The thread is stopped
    while the other apps run: a thread that wakes every 50 ms makes this machine's main thread
    slower at every system call (a process would run one app, not several)."""
    queue.stop()

    def timed() -> float:
        queue.start()
        seconds = run()
        start = time.process_time()
        queue.stop()  # writes what is left, then the thread ends
        return seconds + (time.process_time() - start) / batch

    return timed


def main() -> None:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--networks", type=int, help="networks in the big list (default 1,000,000)")

    args = common.arguments(__doc__.splitlines()[0], extra)
    quick = args.quick
    networks = args.networks or (10_000 if quick else 1_000_000)
    rounds, batch = (3, 100) if quick else (40, 1000)
    common.print_header(
        "In-process request overhead (Flask test client, hello world)",
        [
            f"{rounds} rounds of {batch} requests per app; client {CLIENT}; big list: {networks:,} networks",
            "times are the process's CPU time (user + system, the log's write included, its queue's thread too):"
            " a busy shared machine disturbs it far less than the wall clock",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        big = common.write_list(Path(tmp) / "big.txt", common.random_networks(networks, args.seed))
        apps = {
            "bare": hello_app("bare"),
            "bare (control)": hello_app("bare2"),
            "bare, port 31337": hello_app("bareport"),
            "10 rules": hello_app("ten", {"ADDRESS_RESTRICTION": ten_rules()}),
            f"{networks:,}-network file: rule": hello_app("big", {"ADDRESS_RESTRICTION": [{"DENY": f"file:{big}"}]}),
            "10 rules + access log": hello_app(
                "log", {"ADDRESS_RESTRICTION": ten_rules(), "ACCESS_LOG": str(Path(tmp) / "access.log")}
            ),
            "10 rules + access log, port 31337": hello_app(
                "port", {"ADDRESS_RESTRICTION": ten_rules(), "ACCESS_LOG": str(Path(tmp) / "port.log")}
            ),
            "10 rules + access log (queue)": hello_app(
                "queue",
                {
                    "ADDRESS_RESTRICTION": ten_rules(),
                    "ACCESS_LOG": {"filename": str(Path(tmp) / "queued.log"), "queue": True},
                },
            ),
        }
        # an ephemeral or NodePort-style port (>= 10000) in the Host header, as under a real server
        ports = {name: "http://localhost:31337" for name in apps if "port" in name}  # both port rows
        variants = common.request_batches(apps, batch, CLIENT, clock=time.process_time, base_urls=ports)
        queued = apps["10 rules + access log (queue)"].extensions["flask_allow"].access_log.queue
        variants["10 rules + access log (queue)"] = drained(variants["10 rules + access log (queue)"], queued, batch)
        found = common.interleave(variants, rounds)
        rows = common.ratio_rows(found, "bare", 1e6, {"10 rules + access log, port 31337": "bare, port 31337"})
        common.table(
            ["app", "µs per request", "÷ bare (median of rounds; port row: ÷ bare on that port)", "range"],
            rows,
            "Request time against the bare app (same process, interleaved)",
        )
        for app in apps.values():
            state = app.extensions.get("flask_allow")
            if state is not None:
                state.close()
        logged = [  # rotated files included
            sum(len(path.read_text().splitlines()) for path in Path(tmp).glob(f"{name}*"))
            for name in ("access.log", "port.log", "queued.log")
        ]
    expected = (rounds + 1) * batch + 1
    print(
        f"access log lines: {logged[0]:,} (sync), {logged[1]:,} (port 31337), {logged[2]:,} (queue);"
        f" requests per app {expected:,}"
    )
    if logged != [expected] * 3:  # every line is written, the queue drained when the state closed
        raise SystemExit(f"the access log lost lines: {logged} of {expected}")
    common.write_json(args.json, "requests", args, {"seconds": found, "table": rows, "log_lines": logged})


if __name__ == "__main__":
    sys.exit(main())

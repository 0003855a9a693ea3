"""Live list files: request latency while the watcher swaps a 1,000,000-network file in, and the
request overhead of watching.

1. Swap: a threaded gunicorn (one gthread worker, 4 threads, 127.0.0.1 only) serves the hello-world
   app guarded by ``[{"ALLOW": "localhost"}, {"DENY": "file:<1,000,000 networks>"}]`` with
   ``ALLOW_WATCH_INTERVAL`` 0.5. A load generator in its own process keeps 4 keep-alive connections
   busy (as reload.py). Meanwhile this script replaces the list file atomically a few times (two
   versions, one network apart); the app records when each of the watcher's rebuilds starts and
   ends. The p99 of requests overlapping a rebuild is set against the p99 of the others; the
   control row sets one half of the quiet requests against the other half.
2. Overhead: the Flask test client, one process per measurement, a ``file:`` rule of 10,000
   networks with watching on (a look every 0.05 s, 100 times the default rate) against watching
   off (0), interleaved rounds; the control row sets off against off.

    python benchmarks/live.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import _common as common
from reload import common_port, latency_row, serve, split, stop

APP = textwrap.dedent(
    """
    import json, os, time
    from flask import Flask
    from flask_allow import FlaskAllow

    windows = os.environ["BENCH_WINDOWS"]
    original = FlaskAllow._rebuild

    def timed(self, app, reason, automatic=False, current=None):  # the watcher's rebuilds, timed
        start = time.time()
        error = None
        try:
            return original(self, app, reason, automatic, current)
        except Exception as exc:
            error = repr(exc)
            raise
        finally:
            with open(windows, "a") as out:
                out.write(json.dumps({"start": start, "end": time.time(), "error": error}) + "\\n")

    FlaskAllow._rebuild = timed
    app = Flask("bench")
    app.config.update(
        ALLOW_LOAD_ENTRY_POINTS=False,
        ALLOW_WATCH_INTERVAL=0.5,
        ADDRESS_RESTRICTION=[{"ALLOW": "localhost"}, {"DENY": "file:" + os.environ["BENCH_LIST"]}],
    )
    allow = FlaskAllow(app)

    @app.route("/")
    def hello():
        return "Hello, World!"
    """
)


def swap_run(directory: Path, versions: list[Path], swaps: int, quiet: float, connections: int) -> dict[str, Any]:
    """One server under load; the list replaced ``swaps`` times; latencies split by rebuild windows."""
    port = common_port()
    listed = directory / "list.txt"
    os.link(versions[0], listed)
    windows = directory / "windows.jsonl"
    samples_file = directory / "samples.json"
    env = {**os.environ, "BENCH_LIST": str(listed), "BENCH_WINDOWS": str(windows), "PYTHONPATH": str(common.REPO)}

    def rebuilds() -> int:
        return len(windows.read_text().splitlines()) if windows.exists() else 0

    def swap(number: int) -> None:
        new = directory / "list.new"
        os.link(versions[number % 2], new)
        os.replace(new, listed)
        deadline = time.monotonic() + 300
        while rebuilds() < number and time.monotonic() < deadline:
            time.sleep(0.02)

    server = serve(directory, port, env, connections)
    try:
        started = time.time()
        swap(1)  # unmeasured: how long one takes
        first = json.loads(windows.read_text().splitlines()[0])
        length = first["end"] - first["start"] + 1.0  # and the watcher's look and settle time
        seconds = quiet + swaps * (length + quiet) + 1
        load = [str(Path(__file__).with_name("reload.py")), "--load", str(port), str(seconds), str(connections)]
        generator = subprocess.Popen([sys.executable, *load, str(samples_file)])
        time.sleep(quiet)
        for number in range(2, swaps + 2):
            swap(number)
            time.sleep(quiet)
        generator.wait(timeout=seconds + 120)
    finally:
        stop(server)
    return split(windows, samples_file, started, "rebuild")


def overhead_child(listed: str, interval: float, requests: int) -> None:
    """In a child: seconds per guarded test-client request, watching at ``interval`` (0: off)."""
    from flask import Flask

    from flask_allow import FlaskAllow

    app = Flask("bench")
    app.config.update(
        ALLOW_LOAD_ENTRY_POINTS=False,
        ALLOW_WATCH_INTERVAL=interval,
        ADDRESS_RESTRICTION=[{"ALLOW": "localhost"}, {"DENY": f"file:{listed}"}],
    )
    FlaskAllow(app)

    @app.route("/")
    def hello() -> str:
        return "Hello, World!"

    client = app.test_client()
    environ = {"REMOTE_ADDR": "192.0.2.1"}
    for _ in range(500):
        client.get("/", environ_base=environ)
    best = float("inf")
    for _ in range(3):  # the best of three runs: the least disturbed by the rest of the machine
        began = time.perf_counter()
        for _ in range(requests):
            client.get("/", environ_base=environ)
        best = min(best, (time.perf_counter() - began) / requests)
    print(json.dumps({"seconds": best}))


def main() -> None:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--networks", type=int, help="networks in the swapped list (default 1,000,000)")
        parser.add_argument("--overhead-child", nargs=3, help=argparse.SUPPRESS)

    args = common.arguments(__doc__.splitlines()[0], extra)
    if args.overhead_child:
        overhead_child(args.overhead_child[0], float(args.overhead_child[1]), int(args.overhead_child[2]))
        return
    quick = args.quick
    networks = args.networks or (30_000 if quick else 1_000_000)
    swaps, quiet, connections = (1, 1.0, 4) if quick else (3, 2.0, 4)
    rounds, requests = (1, 500) if quick else (6, 4000)
    common.print_header(
        "Live list files",
        [
            f"swap: gunicorn gthread, 1 worker, {connections} threads; {connections} keep-alive connections from a "
            f"separate process; {swaps} atomic replacements of a {networks:,}-network list, {quiet:g} s quiet between",
            f"overhead: Flask test client, {requests:,} requests x 3 per process, {rounds} interleaved rounds",
        ],
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "benchapp.py").write_text(APP)
        base = common.random_networks(networks, args.seed)
        versions = [
            common.write_list(directory / "a.txt", base),
            common.write_list(directory / "b.txt", [*base[:-1], "203.0.113.0/24"]),
        ]
        found = swap_run(directory, versions, swaps, quiet, connections)
        results["swap"] = found
        common.table(
            [
                "rebuild s",
                "requests during",
                "p50 ms",
                "p99 ms quiet",
                "p99 ms during swap",
                "p99 during ÷ quiet",
                "control: p99 quiet ÷ quiet",
                "max ms during",
                "errors",
            ],
            [latency_row(found)],
            "Latency of requests overlapping a watcher swap against the others",
        )
        small = common.write_list(directory / "small.txt", base[:10_000])

        def measure(interval: float) -> Any:
            child = [__file__, "--overhead-child", str(small), str(interval), str(requests)]
            return lambda: common.python_child(child)["seconds"]

        timed = common.interleave({"on": measure(0.05), "off": measure(0), "off again": measure(0)}, rounds)
        rows = []
        for name, baseline, label in (("on", "off", "watching on ÷ off"), ("off again", "off", "control: off ÷ off")):
            middle, low, high = common.ratio(timed, name, baseline)
            rows.append([label, statistics.median(timed[name]) * 1e6, f"{middle:.3f}", common.spread(low, high)])
        headers = ["variant", "µs per request", "ratio (median)", "ratio range"]
        common.table(headers, rows, "Request overhead of watching")
        results["overhead"] = {"rows": rows, "rounds": timed}
    common.write_json(args.json, "live", args, results)


if __name__ == "__main__":
    sys.exit(main())

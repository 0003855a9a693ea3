"""Request latency while ``reload()`` recompiles a 1,000,000-network list next to the requests.

A threaded gunicorn (one gthread worker, 4 threads, 127.0.0.1 only) serves the hello-world app
guarded by ``[{"ALLOW": "localhost"}, {"DENY": "file:<1,000,000 networks>"}]``. A load generator
in its own process keeps 4 keep-alive connections busy and records every request's latency.
Meanwhile ``GET /reload`` makes the app call ``allow.reload()`` in a background thread of the
same process, a few times, with quiet spells between. The p99 of requests that overlap a reload is
set against the p99 of those that do not; the control row sets one half of the quiet requests
against the other half. The same is done with the list compiled in the reloading thread (the
child process switched off), to show what it saves.

    python benchmarks/reload.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import _common as common

APP = textwrap.dedent(
    """
    import json, os, threading, time
    from flask import Flask
    from flask_allow import FlaskAllow
    import flask_allow.index

    if os.environ.get("BENCH_INLINE"):  # compile in the reloading thread: no child process
        flask_allow.index.ELSEWHERE_MIN = 10**15

    app = Flask("bench")
    app.config.update(
        ALLOW_LOAD_ENTRY_POINTS=False,
        ADDRESS_RESTRICTION=[{"ALLOW": "localhost"}, {"DENY": "file:" + os.environ["BENCH_LIST"]}],
    )
    allow = FlaskAllow(app)
    windows = os.environ["BENCH_WINDOWS"]

    def reload_now():
        start = time.time()
        error = None
        try:
            allow.reload(app)
        except Exception as exc:
            error = repr(exc)
        with open(windows, "a") as out:
            out.write(json.dumps({"start": start, "end": time.time(), "error": error}) + "\\n")

    @app.route("/")
    def hello():
        return "Hello, World!"

    @app.route("/reload")
    def reload():
        threading.Thread(target=reload_now).start()
        return "reloading", 202
    """
)


def get(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def load(port: int, seconds: float, connections: int, out: str) -> None:
    """The load generator: keep-alive connections in threads; write (start, latency) pairs as JSON."""
    samples: list[tuple[float, float]] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        mine: list[tuple[float, float]] = []
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < deadline:
            start, began = time.time(), time.perf_counter()
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if ok:
                mine.append((start, time.perf_counter() - began))
            else:
                with lock:
                    errors[0] += 1
        connection.close()
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    Path(out).write_text(json.dumps({"samples": samples, "errors": errors[0]}))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(directory: Path, big: Path, inline: bool, reloads: int, quiet: float, connections: int) -> dict[str, Any]:
    """One server: load it, reload a few times meanwhile; the latencies split by reload windows."""
    port = common_port()
    windows = directory / f"windows-{int(inline)}.jsonl"
    samples_file = directory / f"samples-{int(inline)}.json"
    env = {**os.environ, "BENCH_LIST": str(big), "BENCH_WINDOWS": str(windows), "PYTHONPATH": str(common.REPO)}
    if inline:
        env["BENCH_INLINE"] = "1"
    server = serve(directory, port, env, connections)
    try:
        started = time.time()
        # first a reload unmeasured, to learn how long one takes
        get(port, "/reload")
        while not windows.exists() or len(windows.read_text().splitlines()) < 1:
            time.sleep(0.05)
        first = json.loads(windows.read_text().splitlines()[0])
        length = first["end"] - first["start"]
        seconds = quiet + reloads * (length + quiet) + 1
        generator = subprocess.Popen(
            [sys.executable, __file__, "--load", str(port), str(seconds), str(connections), str(samples_file)]
        )
        time.sleep(quiet)
        for number in range(reloads):
            get(port, "/reload")
            while len(windows.read_text().splitlines()) < number + 2:
                time.sleep(0.02)
            time.sleep(quiet)
        generator.wait(timeout=seconds + 120)
    finally:
        stop(server)
    return split(windows, samples_file, started, "reload")


def serve(directory: Path, port: int, env: dict[str, str], connections: int) -> subprocess.Popen[bytes]:
    """gunicorn (one gthread worker) serving ``directory/benchapp.py`` on 127.0.0.1, once it answers."""
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    command += ["--worker-class", "gthread", "--threads", str(connections), "--log-level", "warning"]
    command += ["--chdir", str(directory), "--timeout", "300", "benchapp:app"]
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while True:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited: {server.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if get(port, "/") == 200:
                return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop(server)
            raise SystemExit("gunicorn did not start")
        time.sleep(0.2)


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


def split(windows: Path, samples_file: Path, started: float, what: str) -> dict[str, Any]:
    """The load generator's latencies after ``started``, split into those overlapping a window
    (all but the first, unmeasured, of those in ``windows``) and the others."""
    spans = [json.loads(line) for line in windows.read_text().splitlines()][1:]
    errors = [span["error"] for span in spans if span["error"]]
    if errors:
        raise SystemExit(f"a {what} failed: {errors[0]}")
    loaded = json.loads(samples_file.read_text())
    during, normal = [], []
    for start, latency in loaded["samples"]:
        if start < started:
            continue
        end = start + latency
        overlapping = any(start < span["end"] and end > span["start"] for span in spans)
        (during if overlapping else normal).append(latency)
    return {
        "seconds": [span["end"] - span["start"] for span in spans],
        "during": during,
        "normal": normal,
        "errors": loaded["errors"],
    }


def common_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def latency_row(found: dict[str, Any]) -> list[Any]:
    """A table row of one run: rebuild seconds, requests during, p50, p99 quiet and during (ms),
    their ratio, the control (p99 of one half of the quiet requests over the other's), max, errors."""
    normal, during = found["normal"], found["during"]
    halves = normal[0::2], normal[1::2]
    p99_normal, p99_during = percentile(normal, 0.99), percentile(during, 0.99)
    return [
        statistics.median(found["seconds"]),
        len(during),
        percentile(normal, 0.5) * 1e3,
        p99_normal * 1e3,
        p99_during * 1e3,
        f"{p99_during / p99_normal:.2f}",
        f"{percentile(halves[1], 0.99) / percentile(halves[0], 0.99):.2f}",
        max(during, default=0) * 1e3,
        found["errors"],
    ]


def main() -> None:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--networks", type=int, help="networks in the list (default 1,000,000)")
        parser.add_argument("--load", nargs=4, help=argparse.SUPPRESS)

    args = common.arguments(__doc__.splitlines()[0], extra)
    if args.load:
        load(int(args.load[0]), float(args.load[1]), int(args.load[2]), args.load[3])
        return
    quick = args.quick
    networks = args.networks or (30_000 if quick else 1_000_000)
    reloads, quiet, connections = (1, 1.0, 4) if quick else (3, 2.0, 4)
    common.print_header(
        "Request latency during reload()",
        [
            f"gunicorn gthread, 1 worker, {connections} threads; {connections} keep-alive connections from a "
            f"separate process; {reloads} reloads of a {networks:,}-network list, {quiet:g} s quiet between",
        ],
    )
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "benchapp.py").write_text(APP)
        big = common.write_list(directory / "big.txt", common.random_networks(networks, args.seed))
        for inline in (False, True):
            found = run(directory, big, inline, reloads, quiet, connections)
            name = "compiled in the reloading thread" if inline else "compiled in a child process (default)"
            results[name] = found
            rows.append([name, *latency_row(found)])
    common.table(
        [
            "reload",
            "reload s",
            "requests during",
            "p50 ms",
            "p99 ms quiet",
            "p99 ms during reload",
            "p99 during ÷ quiet",
            "control: p99 quiet ÷ quiet",
            "max ms during",
            "errors",
        ],
        rows,
        "Latency of requests overlapping a reload against the others",
    )
    common.write_json(
        args.json,
        "reload",
        args,
        {"table": rows, "runs": {k: {**v, "during": v["during"], "normal": v["normal"]} for k, v in results.items()}},
    )


if __name__ == "__main__":
    sys.exit(main())

"""Requests per second under a real WSGI server: gunicorn on 127.0.0.1, loaded by a separate process.

One gunicorn (one sync worker) per app, all on 127.0.0.1 only: the bare hello-world app twice
(the second is the control), the app guarded by 10 rules, by a 1,000,000-network ``file:``
rule, and by 10 rules with the access log (written in the request, and queued). A load
generator in its own process (wrk when installed, else a Python one) loads each
server in turn for a fixed time, the order rotated each round; each guarded server's requests
per second are divided by the bare one's of the same round. Then a server with the access log
behind a queue (``ACCESS_LOG {"queue": true}``) is loaded and stopped with SIGTERM: its log must
hold one line for each request gunicorn logged, none lost on shutdown.

    python benchmarks/server.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
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
    import json, os
    from flask import Flask
    from flask_allow import FlaskAllow

    app = Flask("bench")
    app.config["ALLOW_LOAD_ENTRY_POINTS"] = False

    @app.route("/")
    def hello():
        return "Hello, World!"

    config = json.loads(os.environ["BENCH_CONFIG"])
    if config is not None:
        app.config.update(config)
        FlaskAllow(app)
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fetch(port: int) -> int | None:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/")
        status = connection.getresponse().status
        connection.close()
        return status
    except OSError:
        return None


class Server:
    """One gunicorn serving the bench app with one configuration, on 127.0.0.1."""

    def __init__(self, directory: Path, name: str, config: dict[str, Any] | None, access_log: Path | None = None):
        self.name = name
        self.port = free_port()
        command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", "1"]
        command += ["--worker-class", "sync", "--log-level", "warning", "--chdir", str(directory)]
        if access_log is not None:
            command += ["--access-logfile", str(access_log)]
        env = {**os.environ, "BENCH_CONFIG": json.dumps(config), "PYTHONPATH": str(common.REPO)}
        self.process = subprocess.Popen([*command, "benchapp:app"], env=env, stderr=subprocess.PIPE)

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name}: gunicorn exited: {self.process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            status = fetch(self.port)
            if status is not None:
                if status != 200:
                    raise SystemExit(f"{self.name}: GET / answered {status}")
                return
            time.sleep(0.1)
        raise SystemExit(f"{self.name}: gunicorn did not answer within {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # graceful: the worker finishes and exits
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def load(port: int, seconds: float, connections: int) -> dict[str, float]:
    """Load one server for ``seconds``: requests per second, and errors (a separate process)."""
    wrk = shutil.which("wrk")
    if wrk is not None:
        done = subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"http://127.0.0.1:{port}/"],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
        sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", done.stdout)
        errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
        return {"rate": rate, "errors": errors}
    return common.python_child([__file__, "--load", str(port), str(seconds), str(connections)], timeout=seconds + 60)


def python_load(port: int, seconds: float, connections: int) -> None:
    """The load generator without wrk: threads sending GET / in a loop; prints JSON."""
    counts = [0, 0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        good = bad = 0
        while time.monotonic() < deadline:
            if fetch(port) == 200:
                good += 1
            else:
                bad += 1
        with lock:
            counts[0] += good
            counts[1] += bad

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"rate": counts[0] / (time.monotonic() - start), "errors": counts[1]}))


def main() -> None:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--seconds", type=int, help="load per server per round (default 4; quick 1)")
        parser.add_argument("--connections", type=int, default=8, help="concurrent connections (default 8)")
        parser.add_argument("--networks", type=int, help="networks in the big list (default 1,000,000)")
        parser.add_argument("--load", nargs=3, help=argparse.SUPPRESS)

    args = common.arguments(__doc__.splitlines()[0], extra)
    if args.load:
        python_load(int(args.load[0]), float(args.load[1]), int(args.load[2]))
        return
    quick = args.quick
    seconds = args.seconds or (1 if quick else 4)
    rounds = 1 if quick else 5
    networks = args.networks or (10_000 if quick else 1_000_000)
    generator = "wrk" if shutil.which("wrk") else "a Python load generator (install wrk: it saturates later)"
    common.print_header(
        "Requests per second under gunicorn (127.0.0.1 only)",
        [
            f"gunicorn, 1 sync worker per app; load: {generator}, {args.connections} connections, "
            f"{seconds:g} s per server per round, {rounds} rounds; big list: {networks:,} networks",
        ],
    )
    ten = [{"DENY": [f"10.{i}.0.0/16" for i in range(8)]}, {"ALLOW": "127.0.0.1"}, {"DENY": "all"}]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "benchapp.py").write_text(APP)
        big = common.write_list(directory / "big.txt", common.random_networks(networks, args.seed))
        configs: dict[str, dict[str, Any] | None] = {
            "bare": None,
            "bare (control)": None,
            "10 rules": {"ADDRESS_RESTRICTION": ten},
            f"{networks:,}-network file: rule": {
                "ADDRESS_RESTRICTION": [{"ALLOW": "localhost"}, {"DENY": f"file:{big}"}]
            },
            # written in the request (the default): a line is in the file when the response is sent
            "10 rules + access log": {"ADDRESS_RESTRICTION": ten, "ACCESS_LOG": str(directory / "sync.log")},
            "10 rules + access log (queue)": {
                "ADDRESS_RESTRICTION": ten,
                "ACCESS_LOG": {"filename": str(directory / "rows-queued.log"), "queue": True},
            },
        }
        servers = {name: Server(directory, name, config) for name, config in configs.items()}
        errors: dict[str, int] = {}
        try:
            for server in servers.values():
                server.wait(timeout=180)

            def variant(server: Server) -> Any:
                def run() -> float:
                    found = load(server.port, seconds, args.connections)
                    errors[server.name] = errors.get(server.name, 0) + int(found["errors"])
                    return 1.0 / found["rate"]  # seconds per request, so ratios read as for time

                return run

            found = common.interleave({name: variant(server) for name, server in servers.items()}, rounds)
        finally:
            for server in servers.values():
                server.stop()
        rows = []
        for name, values in found.items():
            ratio, low, high = common.ratio(found, "bare", name)  # rate ÷ bare rate = bare time ÷ time
            rows.append([name, statistics.median(1 / v for v in values), f"{ratio:.3f}", common.spread(low, high)])
            rows[-1].append(errors.get(name, 0))
        common.table(
            ["app", "requests/s", "÷ bare requests/s (median of rounds)", "range", "errors"],
            rows,
            "Throughput against the bare app (same load, rotated)",
        )

        # the queued access log under a real server, stopped with SIGTERM: no line may be lost
        log, served = directory / "access.log", directory / "gunicorn.log"
        queued = Server(
            directory,
            "queued log",
            {"ADDRESS_RESTRICTION": ten, "ACCESS_LOG": {"filename": str(log), "queue": True}},
            access_log=served,
        )
        try:
            queued.wait(timeout=60)
            load(queued.port, seconds, args.connections)
        finally:
            queued.stop()
        written = len(log.read_text().splitlines())
        handled = len(served.read_text().splitlines())
    print(f"queued access log after SIGTERM: {written:,} lines for {handled:,} requests gunicorn logged")
    if written != handled or not handled:
        raise SystemExit("the queued access log lost lines on shutdown")
    common.write_json(
        args.json,
        "server",
        args,
        {"seconds_per_request": found, "errors": errors, "table": rows, "queued_log": [written, handled]},
    )


if __name__ == "__main__":
    sys.exit(main())

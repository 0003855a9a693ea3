"""What ``gunicorn --preload`` saves with a 1,000,000-line list: start-up time and memory of the workers.

A list of N seeded random networks is written at bench time; gunicorn (W sync workers, a unix
socket in a temporary directory: no port at all) serves an app guarded by ``{"DENY": "file:..."}``,
once as usual (each worker imports the app and compiles the list itself) and once with
``--preload`` (the master compiles it once, before forking). For each: the seconds from launch
until every worker has booted and answered, and the memory of the workers (PSS: shared pages
counted once, split between the processes sharing them), alternating the two, several rounds.

    python benchmarks/preload.py [--quick] [--json PATH] [--workers W] [--size N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import _common as common

APP = textwrap.dedent(
    """
    import os
    from flask import Flask
    from flask_allow import FlaskAllow

    app = Flask("bench")
    app.config["ALLOW_LOAD_ENTRY_POINTS"] = False
    app.config["ADDRESS_RESTRICTION"] = [{"DENY": "file:" + os.environ["BENCH_LIST"]}]
    FlaskAllow(app)

    @app.route("/")
    def hello():
        return "Hello, World!"
    """
)
CONFIG = textwrap.dedent(
    """
    import os

    def post_worker_init(worker):
        open(os.path.join(os.environ["BENCH_READY"], str(worker.pid)), "w").close()
    """
)


def pss(pid: int) -> int:
    """A process's proportional set size in bytes (Linux), or its RSS where smaps_rollup is missing."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def ask(path: str) -> bool:
    """One GET / over the unix socket; whether it was answered (403: the guard ran)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/")
    except OSError:
        return False


def start_once(tmp: Path, list_path: Path, workers: int, preload: bool) -> dict[str, float]:
    """Launch gunicorn, wait for every worker, measure, stop it."""
    ready = tmp / f"ready-{time.monotonic_ns()}"
    ready.mkdir()
    sock = str(tmp / f"g-{time.monotonic_ns()}.sock")
    env = {**os.environ, "BENCH_LIST": str(list_path), "BENCH_READY": str(ready)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp), str(common.REPO), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "gunicorn", "-c", str(tmp / "gconf.py"), "-w", str(workers)]
    command += ["-b", f"unix:{sock}", *(["--preload"] if preload else []), "bench_app:app"]
    started = time.perf_counter()
    server = subprocess.Popen(command, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = started + 600
        while len(list(ready.iterdir())) < workers or not ask(sock):
            if server.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {server.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            if time.perf_counter() > deadline:
                raise RuntimeError("the workers did not boot in 600 s")
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        pids = [int(p.name) for p in ready.iterdir()]
        memory = sum(pss(pid) for pid in pids) + pss(server.pid)
        return {"seconds": seconds, "pss": memory}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(ready, ignore_errors=True)


def main() -> None:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (default 4)")
        parser.add_argument("--size", type=int, default=None, help="networks in the list (default 1,000,000)")

    args = common.arguments(__doc__.splitlines()[0], extra)
    size = args.size or (10_000 if args.quick else 1_000_000)
    if args.quick:
        args.workers = min(args.workers, 2)
    rounds = 1 if args.quick else 3
    common.print_header(
        "gunicorn --preload with a large list",
        [f"{size:,} networks, {args.workers} sync workers, {rounds} rounds, seed {args.seed}"],
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "bench_app.py").write_text(APP)
        (tmp / "gconf.py").write_text(CONFIG)
        list_path = common.write_list(tmp / "list.txt", common.random_networks(size, args.seed + size))
        found: dict[str, list[dict[str, float]]] = {"as usual": [], "--preload": []}
        for _ in range(rounds):
            for label, preload in (("as usual", False), ("--preload", True)):
                found[label].append(start_once(tmp, list_path, args.workers, preload))
    rows = []
    for label, runs in found.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        mib = statistics.median(r["pss"] for r in runs) / 2**20
        rows.append([label, seconds, mib])
        results[label] = runs
    usual, preloaded = rows
    rows.append(["--preload ÷ as usual", preloaded[1] / usual[1], preloaded[2] / usual[2]])
    common.table(
        ["gunicorn", "s until every worker answers", "MiB (PSS, master and workers)"],
        rows,
        f"Starting gunicorn with {args.workers} workers on a {size:,}-network list (median of {rounds})",
    )
    common.write_json(args.json, "preload", args, results)


if __name__ == "__main__":
    main()

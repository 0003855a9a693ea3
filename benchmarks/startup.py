"""Start-up and memory of gunicorn workers guarding an app with a 1,000,000-network list.

Each worker (no ``--preload``: each builds its own rules, as after a watched change) records when
it started importing the app and when ``init_app`` returned; the slowest worker's time from start
to ready is reported, with the private memory (``Private_Clean + Private_Dirty`` of
``/proc/PID/smaps_rollup``) of each worker against the same app without the list. The usual
configuration is used: ``ALLOW localhost``, ``DENY file:big.txt``, ``ALLOW all``. Runs:

- ``cold``: no compiled index on disk yet (one worker builds it, the others wait and map it);
- ``warm``: the index file is there (a restart, or a worker forked later);
- ``in memory``: ``ALLOW_INDEX_CACHE = False``, every worker compiles its own copy (as before).

    python benchmarks/startup.py [--quick] [--workers 16] [--json PATH]
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import _common as common
from server import fetch, free_port

APP = textwrap.dedent(
    """
    import json, os, time
    started = time.time()
    from flask import Flask
    from flask_allow import FlaskAllow

    app = Flask("bench", instance_path=os.environ["BENCH_INSTANCE"])
    app.config["ALLOW_LOAD_ENTRY_POINTS"] = False
    app.config.update(json.loads(os.environ["BENCH_CONFIG"]))

    @app.route("/")
    def hello():
        return "Hello, World!"

    FlaskAllow(app)
    mine = os.path.join(os.environ["BENCH_TIMES"], str(os.getpid()))
    with open(mine + ".tmp", "w") as out:
        json.dump([started, time.time()], out)
    os.replace(mine + ".tmp", mine)
    """
)


def private_kib(pid: int) -> int:
    """The private memory of a process in KiB (clean and dirty pages no other process maps)."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(p) for p in found]


def run(directory: Path, name: str, config: dict[str, Any], workers: int, instance: Path) -> dict[str, Any]:
    """Start gunicorn, wait until every worker is ready, measure, stop."""
    times = directory / f"times-{name.replace(' ', '-')}"
    shutil.rmtree(times, ignore_errors=True)
    times.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "BENCH_CONFIG": json.dumps(config),
        "BENCH_TIMES": str(times),
        "BENCH_INSTANCE": str(instance),
        "PYTHONPATH": str(common.REPO),
    }
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    command += ["--worker-class", "sync", "--log-level", "warning", "--chdir", str(directory), "--timeout", "300"]
    launched = time.monotonic()
    process = subprocess.Popen([*command, "startapp:app"], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 600
        while len(list(times.glob("[0-9]*[0-9]"))) < workers:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name}: gunicorn failed: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.05)
        all_ready = time.monotonic() - launched
        while fetch(port) != 200:
            time.sleep(0.05)
        ready = [json.loads(path.read_text()) for path in times.glob("[0-9]*[0-9]")]
        pids = children(process.pid)
        memory = sorted(private_kib(pid) for pid in pids)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    return {
        "slowest_ready_s": max(end - start for start, end in ready),
        "all_ready_s": all_ready,
        "private_mib_median": memory[len(memory) // 2] / 1024,
        "private_mib_max": memory[-1] / 1024,
    }


def main() -> None:
    args = common.arguments(
        __doc__.splitlines()[0],
        lambda parser: parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (16)"),
    )
    workers = args.workers or (4 if args.quick else 16)
    count = 100_000 if args.quick else 1_000_000
    common.print_header(
        f"Worker start-up and private memory: {count:,} networks, {workers} workers (no --preload)",
        [f"{os.cpu_count()} cores: {workers} workers start at once, so the times include waiting for a core"],
    )
    with tempfile.TemporaryDirectory(prefix="flask_allow-startup-") as folder:
        directory = Path(folder)
        (directory / "startapp.py").write_text(APP)
        common.write_list(directory / "big.txt", common.random_networks(count, seed=11))
        rules = [{"ALLOW": "localhost"}, {"DENY": "file:big.txt"}, {"ALLOW": "all"}]
        cached = {"ADDRESS_RESTRICTION": rules, "ALLOW_WATCH_INTERVAL": 0}
        results = {
            "bare": run(directory, "bare", {"ALLOW_WATCH_INTERVAL": 0}, workers, directory / "instance-bare"),
            "cold": run(directory, "cold", cached, workers, directory / "instance"),
            "warm": run(directory, "warm", cached, workers, directory / "instance"),
            "in memory": run(
                directory, "in memory", {**cached, "ALLOW_INDEX_CACHE": False}, workers, directory / "instance-none"
            ),
        }
    bare = results["bare"]["private_mib_median"]
    rows = [
        [
            name,
            f"{r['slowest_ready_s']:.2f} s",
            f"{r['all_ready_s']:.2f} s",
            f"{r['private_mib_median']:.1f} MiB",
            f"{r['private_mib_median'] - bare:+.1f} MiB",
        ]
        for name, r in results.items()
    ]
    headers = ["run", "slowest worker: start to ready", "launch to all ready", "private / worker", "vs bare"]
    common.table(headers, rows)
    common.write_json(args.json, "startup", args, results)


if __name__ == "__main__":
    main()

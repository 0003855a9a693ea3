"""Real gunicorn with 2 workers in prometheus-client's multiprocess mode: a scrape sums the workers."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import gunicorn  # noqa: F401  (the plugin's test extra installs it: this test must run, not skip)
from prometheus_client.parser import text_string_to_metric_families

APP = """
import json, os
from flask import Flask
from flask_allow import FlaskAllow

app = Flask(__name__)
app.config.update(json.loads(os.environ["FLASK_ALLOW_TEST_CONFIG"]))
FlaskAllow(app)  # flask-allow-prometheus comes in through its entry point


@app.route("/")
def index():
    return "ok"


@app.after_request
def which_worker(response):
    response.headers["X-Pid"] = str(os.getpid())
    return response
"""

CONFIG = {
    "ADDRESS_RESTRICTION": [{"ALLOW": "127.0.0.1"}, {"DENY": "192.0.2.0/24"}],
    "ALLOW_TRUSTED_PROXIES": ["127.0.0.1"],
    "ALLOW_METRICS_PATH": "/metrics",
}


def request(port: int, path: str = "/", client: str | None = None) -> tuple[int, str, str]:
    """One request over loopback (a new connection, so gunicorn may give it to either worker)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Connection": "close", **({"X-Forwarded-For": client} if client else {})}
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    return response.status, response.headers.get("X-Pid", ""), body


def listening_port(log: Path, server: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """The ephemeral port gunicorn bound (``--bind 127.0.0.1:0``), read from its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log.read_text() if log.exists() else "")
        if found:
            return int(found.group(1))
        assert server.poll() is None, log.read_text() if log.exists() else "gunicorn exited"
        time.sleep(0.05)
    raise AssertionError("gunicorn did not start")


def test_two_workers_are_summed(tmp_path: Path) -> None:
    (tmp_path / "metered_app.py").write_text(APP, encoding="utf-8")
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    log = tmp_path / "gunicorn.log"
    env = {
        **os.environ,
        "FLASK_ALLOW_TEST_CONFIG": json.dumps(CONFIG),
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }
    command = [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", "127.0.0.1:0", "--error-logfile", str(log)]
    server = subprocess.Popen([*command, "--chdir", str(tmp_path), "metered_app:app"], env=env)
    try:
        port = listening_port(log, server)
        allowed = denied = 0
        pids: dict[str, int] = {}
        deadline = time.monotonic() + 30
        while len(pids) < 2 or allowed < 20:
            assert time.monotonic() < deadline, f"requests reached only the workers {pids}"
            status, pid, _ = request(port)
            assert status == 200
            allowed += 1
            status, pid_denied, _ = request(port, client="192.0.2.7")
            assert status == 403
            denied += 1
            for worker in (pid, pid_denied):
                if worker:
                    pids[worker] = pids.get(worker, 0) + 1
        assert str(server.pid) not in pids
        status, _, text = request(port, "/metrics")
        assert status == 200
    finally:
        server.terminate()
        server.wait(timeout=20)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def decided(action: str, rule: str) -> float | None:
        labels = (("action", action), ("enforced", "true"), ("rule", rule))
        return samples.get(("flask_allow_decisions_total", labels))

    assert decided("allow", "ADDRESS_RESTRICTION[0].ALLOW") == allowed + 1  # the scrape itself was let in
    assert decided("deny", "ADDRESS_RESTRICTION[1].DENY") == denied
    assert samples[("flask_allow_rules", ())] == 2.0  # the gauge, not the sum of the workers
    assert len(list(multiproc.glob("counter_*.db"))) >= 2  # a file per worker, summed by the scrape

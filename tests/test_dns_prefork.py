"""Under a pre-forking server (gunicorn --preload), each worker refreshes host names itself."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
from pathlib import Path

import gunicorn  # noqa: F401  (the test extra installs it; this test must run, not skip)
from conftest import start_gunicorn, stop_gunicorn
from dns_server import DNSServer, dns_config, wait_for

APP = """
import json, os
from flask import Flask
from flask_allow import FlaskAllow

app = Flask(__name__)
app.config.update(json.loads(os.environ["FLASK_ALLOW_TEST_CONFIG"]))
FlaskAllow(app)


@app.route("/")
def index():
    return "ok"


@app.after_request
def which_worker(response):
    response.headers["X-Pid"] = str(os.getpid())
    return response
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(port: int) -> tuple[int, str] | None:
    """One request over loopback (the client is 127.0.0.1): its status and the worker's pid."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status, response.headers.get("X-Pid", "")
    except OSError:
        return None


def all_are(port: int, expected: int, count: int = 12) -> bool:
    results = [fetch(port) for _ in range(count)]
    return all(r is not None and r[0] == expected for r in results)


def test_workers_follow_a_changed_record(dns: DNSServer, tmp_path: Path) -> None:
    dns.set("gateway.example.com", "A", ["127.0.0.1"], ttl=1)
    config = dns_config(
        dns,
        [{"ALLOW": "gateway.example.com", "DENY": "all"}],
        ALLOW_DNS_MIN_TTL=1,
        ALLOW_DNS_NEGATIVE_TTL=1,
        ALLOW_DNS_TIMEOUT=2.0,  # generous: a loaded CI machine must not turn a slow answer into a failure
    )
    port = free_port()
    server = start_gunicorn(tmp_path, APP, config, "--preload", "--workers", "2", "--bind", f"127.0.0.1:{port}")
    try:
        assert wait_for(lambda: fetch(port) is not None, timeout=15.0), "gunicorn did not start"
        assert wait_for(lambda: all_are(port, 200))
        dns.set("gateway.example.com", "A", ["192.0.2.1"], ttl=1)
        assert wait_for(lambda: all_are(port, 403))
        # Back again: only a refresher running inside each worker can see this (the master's
        # answers never reach the workers after the fork).
        dns.set("gateway.example.com", "A", ["127.0.0.1"], ttl=1)
        assert wait_for(lambda: all_are(port, 200))
        pids = {r[1] for r in (fetch(port) for _ in range(30)) if r is not None}
        assert str(server.pid) not in pids  # the workers answered, not the master
    finally:
        errors = stop_gunicorn(server, timeout=10)
    assert b"Traceback" not in errors, errors.decode(errors="replace")


def test_record_types_are_imported_before_any_fork() -> None:
    """A refresher thread must never be the one to import a record type's module: a fork during
    that import leaves the child's import lock held forever (the worker then never resolves)."""
    code = (
        "import sys; import flask_allow.dns.resolver\n"
        "wanted = ['dns.rdtypes.IN.A', 'dns.rdtypes.IN.AAAA', 'dns.rdtypes.ANY.PTR', 'dns.rdtypes.ANY.CNAME',"
        " 'dns.rdtypes.ANY.SOA', 'dns.rdtypes.ANY.OPT']\n"
        "missing = [m for m in wanted if m not in sys.modules]\n"
        "assert not missing, missing\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

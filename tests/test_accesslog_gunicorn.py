"""The access log under real gunicorn on 127.0.0.1: a Host werkzeug cannot decode sent on a raw
socket still writes its line; several workers rolling one small file over lose no line."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gunicorn  # noqa: F401  (the test extra installs it; this test must run, not skip)
from conftest import start_gunicorn, stop_gunicorn
from dns_server import wait_for

APP = """
import json, os
from flask import Flask
from flask_allow import FlaskAllow

app = Flask(__name__)
app.config.update(json.loads(os.environ["FLASK_ALLOW_TEST_CONFIG"]))
FlaskAllow(app)


@app.route("/")
@app.route("/<path:anything>")
def index(anything=""):
    return "ok"
"""
LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - +(INFO|WARNING|ERROR) - 127\.0\.0\.1 \S.* GET http://\S+ \"[^\"]*\""
)


@contextmanager
def gunicorn_serving(tmp_path: Path, config: dict[str, Any], workers: int) -> Iterator[int]:
    """gunicorn's sync workers serving the app on 127.0.0.1, on a port the system picks; yields the port."""
    errors = tmp_path / "gunicorn.log"
    options = ["--bind", "127.0.0.1:0", "--error-logfile", str(errors), "--workers", str(workers)]
    server = start_gunicorn(tmp_path, APP, config, *options, stderr=subprocess.DEVNULL)
    try:
        found: list[int] = []

        def listening() -> bool:
            match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", errors.read_text() if errors.exists() else "")
            if match:
                found.append(int(match[1]))
            return bool(match)

        assert wait_for(listening, timeout=30.0), "gunicorn did not start"
        assert wait_for(lambda: errors.read_text().count("Booting worker") >= workers, timeout=30.0)
        yield found[0]
    finally:
        stop_gunicorn(server, timeout=15)
    log = errors.read_text()
    assert "Traceback" not in log, log


def raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_host_werkzeug_cannot_decode_still_writes_its_line(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    config = {"ADDRESS_RESTRICTION": [{"DENY": "127.0.0.1"}], "ACCESS_LOG": str(log)}
    sent = [
        b"GET /a HTTP/1.1\r\nHost: xn--a.com\r\nConnection: close\r\n\r\n",
        b"GET /b HTTP/1.1\r\nHost: xn--zz.example:8080\r\nUser-Agent: caf\xc3\xa9 \xe2\x80\xae\r\n"
        b"Connection: close\r\n\r\n",
        b"GET /%E2%80%AEc%FF HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    ]
    with gunicorn_serving(tmp_path, config, workers=1) as port:
        for request in sent:
            assert raw_request(port, request).startswith(b"HTTP/1.1 403 ")
        assert wait_for(lambda: len(log.read_bytes().splitlines()) >= len(sent))
    written = log.read_text(encoding="utf-8").split("\n")
    assert written[-1] == ""
    assert len(written) - 1 == len(sent), written
    assert " GET http://xn--a.com/a " in written[0]
    assert " GET http://xn--zz.example:8080/b " in written[1]
    assert "GET http://localhost/\\u202ec\ufffd " in written[2]  # the byte werkzeug cannot decode: as request.url
    assert "\u202e" not in log.read_text(encoding="utf-8")


def test_workers_rolling_one_file_over_lose_no_line(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    access_log = {"filename": str(log), "maxBytes": 3000, "backupCount": 10_000}
    config = {"ADDRESS_RESTRICTION": [{"ALLOW": "127.0.0.1"}], "ACCESS_LOG": access_log}
    clients, each = 6, 100
    failures: list[str] = []
    with gunicorn_serving(tmp_path, config, workers=3) as port:

        def load(client: int) -> None:
            for i in range(each):
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    conn.request("GET", f"/r/{client}-{i}", headers={"Connection": "close"})
                    response = conn.getresponse()
                    response.read()
                    conn.close()
                    if response.status != 200:
                        failures.append(f"{client}-{i}: {response.status}")
                except OSError as exc:
                    failures.append(f"{client}-{i}: {exc!r}")

        threads = [threading.Thread(target=load, args=(client,)) for client in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(0.2)
    assert failures == []
    files = [path for path in tmp_path.iterdir() if path.name.startswith("access.log")]
    assert len(files) > 8  # rolled over many times (each worker counts its own lines between looks)
    written = [line for path in files for line in path.read_text(encoding="utf-8").split("\n")[:-1]]
    malformed = [line for line in written if not LINE.fullmatch(line)]
    assert malformed == []
    paths = sorted(line.rsplit(" ", 2)[-2].rsplit("/r/", 1)[-1] for line in written)
    assert paths == sorted(f"{client}-{i}" for client in range(clients) for i in range(each))
    assert os.path.exists(tmp_path / ".access.log.lock")

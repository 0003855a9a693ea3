"""Real gunicorn, 4 workers on 127.0.0.1: every worker follows a rewritten list file on its own.

With ``--preload`` (the app built in the master, the watcher started again in each forked worker)
and without (each worker builds its own), the file rewritten atomically and in place: each worker
denies the newly listed address within ``ALLOW_WATCH_INTERVAL`` + 2 s, no request sees a 5xx, and
a half-written or emptied file keeps the last good list.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gunicorn  # noqa: F401  (the test extra installs it: this test must run, not skip)
import pytest
from conftest import start_gunicorn, stop_gunicorn
from test_dns_prefork import APP, free_port
from test_live import networks, write_atomically

INTERVAL = 0.5
WORKERS = 4


def fetch() -> tuple[int, str] | None:
    """One request on a new connection (so that any worker may take it): status and worker pid."""
    conn = http.client.HTTPConnection("127.0.0.1", PORT[0], timeout=10)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status, response.headers.get("X-Pid", "")
    except OSError:
        return None
    finally:
        conn.close()


PORT = [0]


class Poller:
    """Threads that keep requesting and record (time, status, pid) of every answer."""

    def __init__(self, threads: int = 6) -> None:
        self.seen: list[tuple[float, int, str]] = []
        self.failures = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self._lock = threading.Lock()

    def _run(self) -> None:
        while not self._stop.is_set():
            result = fetch()
            with self._lock:
                if result is None:
                    self.failures += 1
                else:
                    self.seen.append((time.monotonic(), *result))

    def __enter__(self) -> Poller:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def since(self, start: float) -> list[tuple[float, int, str]]:
        with self._lock:
            return [s for s in self.seen if s[0] >= start]


@pytest.fixture
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """gunicorn with 4 workers guarding / with ``DENY file:<list>``; yields the list's path."""
    listed = tmp_path / "deny.txt"
    listed.write_text(networks(100), encoding="utf-8")
    config = {"ADDRESS_RESTRICTION": [{"DENY": f"file:{listed}"}], "ALLOW_WATCH_INTERVAL": INTERVAL}
    PORT[0] = port = free_port()
    options = ["--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}"]
    if request.node.callspec.params["preload"]:
        options.append("--preload")
    server = start_gunicorn(tmp_path, APP, config, *options)
    try:
        pids: set[str] = set()
        deadline = time.monotonic() + 60
        while len(pids) < WORKERS:  # every worker up and answering
            if server.poll() is not None or time.monotonic() > deadline:
                stderr = server.stderr.read().decode() if server.stderr and server.poll() is not None else ""
                raise AssertionError(f"gunicorn did not bring up {WORKERS} workers: {stderr[-2000:]}")
            result = fetch()
            if result is not None:
                assert result[0] == 200
                pids.add(result[1])
            else:
                time.sleep(0.1)
        yield listed
    finally:
        stop_gunicorn(server)


def rewrite_in_place(path: Path, text: str) -> None:
    """As ``echo ... > file``: truncate, then write (in two steps, as a slow writer does)."""
    with open(path, "w", encoding="utf-8") as handle:
        half = len(text) // 2
        handle.write(text[:half])
        handle.flush()
        time.sleep(0.05)
        handle.write(text[half:])


@pytest.mark.parametrize(
    ("preload", "how"), [(True, "atomic"), (False, "in-place")], ids=["preload-atomic", "no-preload-in-place"]
)
def test_every_worker_follows_the_file(preload: bool, how: str, served: Path) -> None:
    with Poller() as poller:
        time.sleep(0.5)
        listed = networks(100) + "127.0.0.1\n"
        changed = time.monotonic()
        if how == "atomic":
            write_atomically(served, listed)
        else:
            rewrite_in_place(served, listed)
        bound = changed + INTERVAL + 2
        first_denial: dict[str, float] = {}
        while time.monotonic() < bound + 1 and len(first_denial) < WORKERS:
            for at, code, pid in poller.since(changed):
                if code == 403:
                    first_denial.setdefault(pid, at)
            time.sleep(0.05)
        time.sleep(0.5)  # more answers from every worker after its swap
        # half-written and emptied versions: the last good list (with 127.0.0.1) stays in force
        kept_from = time.monotonic()
        write_atomically(served, networks(30))
        time.sleep(INTERVAL + 1.5)
        rewrite_in_place(served, "")
        time.sleep(INTERVAL + 1.5)
    answers = poller.since(changed)
    assert not [a for a in answers if a[1] >= 500], "a request saw a 5xx during a swap"
    assert poller.failures == 0
    pids = {pid for _, _, pid in answers}
    assert len(pids) == WORKERS
    assert set(first_denial) == pids, f"workers that never denied: {pids - set(first_denial)}"
    late = {pid: at - changed for pid, at in first_denial.items() if at > bound}
    assert not late, f"workers that denied only after ALLOW_WATCH_INTERVAL + 2 s: {late}"
    for pid, at in first_denial.items():  # once swapped, a worker never goes back to the old list
        assert all(code == 403 for t, code, p in answers if p == pid and t > at), pid
    after = [a for a in answers if a[0] >= kept_from]
    assert after and all(code == 403 for _, code, _ in after)
    assert {pid for _, _, pid in after} == pids

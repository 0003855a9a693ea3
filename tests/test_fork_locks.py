"""A fork while another thread is busy (gunicorn's master forking workers from a ``--preload`` app
whose background threads run): the child must never inherit a lock held by a thread it does not
have, nor a SQLite connection, nor a change half made. Each child here gets 10 seconds (SIGALRM)
to do what a worker does next; one that hangs fails the test.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeApp, status

from flask_allow import Ban, hookimpl
from flask_allow.bans.stores.sqlite import SQLiteStore
from flask_allow.live import locks

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

CHILD_SECONDS = 10


def in_child(work: Callable[[], None], fork: Callable[[], int] = os.fork) -> int:
    """Fork (with ``fork``); the child runs ``work()`` and exits 0 when it returned; after ``CHILD_SECONDS`` it
    writes where it hangs (its stack, to the captured stderr) and exits 1. The child's exit code."""
    pid = fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            faulthandler.dump_traceback_later(CHILD_SECONDS, exit=True)
            work()
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + CHILD_SECONDS + 20
    while time.monotonic() < deadline:
        done, result = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(result)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -signal.SIGKILL


@contextlib.contextmanager
def held_by_a_thread(*held: Any) -> Iterator[None]:
    """Within the block, another thread holds the locks ``held`` (let go, and ended, after it)."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with contextlib.ExitStack() as stack:
            for lock in held:
                stack.enter_context(lock)
            taken.set()
            done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(10)
    try:
        yield
    finally:
        done.set()
        holder.join(10)


def ban(address: str) -> Ban:
    return Ban(ip_network(address), datetime.now(timezone.utc), None, "test")


def test_a_fork_while_a_thread_waits_inside_the_sqlite_store(tmp_path: Path) -> None:
    """The sync thread's write waits for another process's transaction (the CLI's, say) when the
    master forks: the child's store works, with a connection of its own."""
    path = tmp_path / "bans.sqlite3"
    store = SQLiteStore(f"sqlite:///{path}")
    store.ping()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")  # the write lock: the store's put() waits for it
        writer = threading.Thread(target=store.put, args=(ban("192.0.2.1"),))
        writer.start()
        time.sleep(0.3)  # the put is waiting inside SQLite, under the store's lock
        threading.Timer(0.5, lambda: other.execute("COMMIT")).start()

        def child() -> None:
            assert store._connection is None  # SQLite: a connection never crosses a fork
            store.put(ban("192.0.2.2"))
            assert {str(b.network) for b in store.active(0)} == {"192.0.2.1/32", "192.0.2.2/32"}
            store.close()

        assert in_child(child) == 0
        writer.join(10)
        assert not writer.is_alive()
        assert {str(b.network) for b in store.active(0)} == {"192.0.2.1/32", "192.0.2.2/32"}  # the parent goes on
    finally:
        other.close()
        store.close()


def test_a_fork_while_threads_use_the_store_never_hangs_a_child(tmp_path: Path) -> None:
    """Many forks while two threads write and read without a pause: every child's store works."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'bans.sqlite3'}")
    store.ping()
    stop = threading.Event()

    def busy(offset: int) -> None:
        n = 0
        while not stop.is_set():
            store.put(ban(f"10.{offset}.{n % 250}.1"))
            store.active(0)
            n += 1
            time.sleep(0.001)  # a busy sync, not a flood that starves the child's writes

    threads = [threading.Thread(target=busy, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    try:
        for i in range(10):

            def child(i: int = i) -> None:
                store.put(ban(f"198.51.100.{i}"))
                assert any(str(b.network) == f"198.51.100.{i}/32" for b in store.active(0))
                store.close()

            assert in_child(child) == 0, f"child {i}"
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        store.close()


def test_a_fork_while_a_thread_bans_leaves_the_child_bans_that_work(make_app: MakeApp) -> None:
    """A thread is putting a ban in force (its listeners, which drop cached decisions, are slow)
    when the master forks: the child bans, syncs with the store and denies the banned client."""
    app = make_app({"ALLOW_BANS": True})
    service = app.extensions["flask_allow"].bans
    inside = threading.Event()

    def slow_listener() -> None:
        if threading.current_thread() is not threading.main_thread():
            inside.set()
            time.sleep(0.5)

    service.listen(slow_listener)
    banning = threading.Thread(target=service.ban, args=("10.0.0.1", 60, "busy"))
    banning.start()
    assert inside.wait(10)

    def child() -> None:
        service.ban("203.0.113.1", 60, "child")
        service.sync()
        assert status(app, "203.0.113.1") == 403
        assert status(app, "10.0.0.1") == 403  # the parent's ban, whole in the child too

    try:
        assert in_child(child) == 0
    finally:
        banning.join(10)


def test_what_the_parent_has_not_written_is_not_written_by_the_child_too(make_app: MakeApp) -> None:
    """A ban and counts made in the parent and not yet synced: in force in the child, but written
    (and counted) by the parent alone."""
    app = make_app({"ALLOW_BANS": True, "ALLOW_AUTOBAN": {"limit": 3, "status": [404]}})
    app.add_url_rule("/missing", "missing", lambda: ("no such page", 404))
    service = app.extensions["flask_allow"].bans
    service.task.stop()  # nothing synced meanwhile
    service.ban("192.0.2.9", 60, "parent")
    for _ in range(2):
        assert status(app, "198.51.100.7", "/missing") == 404  # counted: 2 of 3

    def child() -> None:
        assert service.unwritten() == []
        assert status(app, "192.0.2.9") == 403
        service.sync()
        assert status(app, "198.51.100.7", "/missing") == 404  # this process's first count
        service.sync()
        assert status(app, "198.51.100.7") == 200, "the parent's counts were counted again"

    assert in_child(child) == 0
    assert [str(b.network) for b in service.unwritten()] == ["192.0.2.9/32"]


class SlowRebuild:
    """Holds the app's rebuild lock for a while at each reload (as a rebuild of a big list does)."""

    def __init__(self) -> None:
        self.inside = threading.Event()

    @hookimpl
    def flask_allow_rules_changed(self, state: Any, previous: Any, reason: str) -> None:
        if reason == "reload" and threading.current_thread() is not threading.main_thread():
            self.inside.set()
            time.sleep(0.5)


def test_a_fork_during_a_rebuild_leaves_the_child_able_to_rebuild(make_app: MakeApp, tmp_path: Path) -> None:
    """A watcher's (or a thread's) rebuild is under way when the master forks: the child reloads
    (its own rebuilds are not locked out by a thread it does not have) and follows the file."""
    rules = tmp_path / "deny.txt"
    rules.write_text("192.0.2.0/24\n", encoding="utf-8")
    slow = SlowRebuild()
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": f"file:{rules}"}]}, plugins=[slow])
    extension = app.extensions["flask_allow"].extension
    rebuild = threading.Thread(target=extension.reload, args=(app,))
    rebuild.start()
    assert slow.inside.wait(10)

    def child() -> None:
        rules.write_text("198.51.100.0/24\n", encoding="utf-8")
        extension.reload(app)
        assert status(app, "198.51.100.1") == 403
        assert status(app, "192.0.2.1") == 200

    try:
        assert in_child(child) == 0
    finally:
        rebuild.join(10)


def test_a_fork_waits_for_a_busy_lock_only_so_long(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Past ``FORK_WAIT`` the fork goes on (with a warning) and the child gets a new lock."""
    monkeypatch.setattr(locks, "FORK_WAIT", 0.2)
    lock = locks.ForkSafeLock(locks.LEAF)

    def child() -> None:
        with lock:
            pass

    with held_by_a_thread(lock):
        assert in_child(child) == 0
    assert any("did not wait longer than" in r.getMessage() for r in caplog.records)
    with lock:  # the parent's is free again once its holder let go
        pass


def test_a_child_made_without_the_fork_handlers_gets_new_locks() -> None:
    """An embedding server's own fork (no ``os.fork()`` handlers): the lock, held by a thread of
    the parent, is new in the child, found by the process id."""
    lock = locks.ForkSafeLock(locks.LEAF)
    plain = locks.ProcessLock()

    def child() -> None:
        with lock, plain:
            pass

    with held_by_a_thread(lock, plain):
        # a C fork() that keeps the GIL through the call, as an embedding server's own would
        assert in_child(child, fork=ctypes.PyDLL(None).fork) == 0


def test_a_fork_made_holding_a_lock_does_not_wait_for_itself(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``os.fork()`` called with a lock held by the forking thread (a listener that forks): the
    fork does not wait for it, and the thread lets it go in both processes."""
    monkeypatch.setattr(locks, "FORK_WAIT", 30)
    lock = locks.ForkSafeLock(locks.LEAF)

    def child() -> None:
        lock.__exit__(None, None, None)  # as the child's thread leaves the block
        with lock:
            pass

    with lock:
        assert in_child(child) == 0
    assert not any("did not wait" in r.getMessage() for r in caplog.records)
    with lock:
        pass

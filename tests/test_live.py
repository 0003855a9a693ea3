"""Rules that follow their files while the app runs: the watcher, the swap, the hooks, a fork."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeApp, close_app, new_app, status

from flask_allow import ConfigError, FlaskAllow, hookimpl
from flask_allow.live import BackgroundTask, Watcher, stamp

FAST = 0.05


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` as a careful cron job does: a new file, then a rename."""
    new = path.with_name(path.name + ".new")
    new.write_text(text, encoding="utf-8")
    os.replace(new, path)


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not become true in time")
        time.sleep(0.02)


class Recorder:
    """A plugin that records the live hooks."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, int]] = []
        self.errors: list[tuple[str, str, str | None]] = []

    @hookimpl
    def flask_allow_rules_changed(self, state: Any, previous: Any, reason: str) -> None:
        assert (previous is None) == (reason == "init_app")
        self.changes.append((reason, len(state.engine.rules)))

    @hookimpl
    def flask_allow_error(self, kind: str, message: str, location: str | None) -> None:
        self.errors.append((kind, message, location))


@pytest.fixture
def blocklist(tmp_path: Path) -> Path:
    path = tmp_path / "blocklist.txt"
    path.write_text("192.0.2.0/24\n", encoding="utf-8")
    return path


def test_an_atomic_replacement_is_in_force_within_the_interval(make_app: MakeApp, blocklist: Path) -> None:
    recorder = Recorder()
    app = make_app(
        {"ADDRESS_RESTRICTION": [{"DENY": f"file:{blocklist}"}], "ALLOW_WATCH_INTERVAL": FAST}, plugins=[recorder]
    )
    assert status(app, "192.0.2.1") == 403 and status(app, "198.51.100.1") == 200
    write_atomically(blocklist, "192.0.2.0/24\n198.51.100.0/24\n")
    eventually(lambda: status(app, "198.51.100.1") == 403)
    assert status(app, "192.0.2.1") == 403
    assert recorder.changes[0] == ("init_app", 1)
    eventually(lambda: len(recorder.changes) == 2)  # told once the new rules are in force
    assert recorder.changes[-1] == (f"changed: {blocklist}", 1)
    assert not recorder.errors


def test_a_rewrite_in_place_is_seen_too(make_app: MakeApp, blocklist: Path) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": f"file:{blocklist}"}], "ALLOW_WATCH_INTERVAL": FAST})
    with open(blocklist, "a", encoding="utf-8") as handle:
        handle.write("203.0.113.7\n")
    eventually(lambda: status(app, "203.0.113.7") == 403)


def test_a_bad_version_keeps_the_last_good_rules_and_is_reported_once(
    make_app: MakeApp, blocklist: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    app = make_app(
        {"ADDRESS_RESTRICTION": [{"DENY": f"file:{blocklist}"}], "ALLOW_WATCH_INTERVAL": FAST}, plugins=[recorder]
    )
    state = app.extensions["flask_allow"]
    write_atomically(blocklist, "198.51.100.0/24\n10.0.0.0/33\n")
    eventually(lambda: bool(recorder.errors))
    time.sleep(10 * FAST)  # more looks at the same bad version: no second error
    assert app.extensions["flask_allow"] is state
    assert status(app, "192.0.2.1") == 403 and status(app, "198.51.100.1") == 200
    [(kind, message, _)] = recorder.errors
    assert kind == "source_refused"
    assert "ADDRESS_RESTRICTION[0].DENY" in message and "line 2" in message and str(blocklist) in message
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "last good rules" in r.getMessage()]
    assert len(errors) == 1
    write_atomically(blocklist, "198.51.100.0/24\n")  # fixed: tried again at the change
    eventually(lambda: status(app, "198.51.100.1") == 403)
    assert status(app, "192.0.2.1") == 200


def test_a_vanished_file_keeps_the_last_good_rules(make_app: MakeApp, blocklist: Path) -> None:
    recorder = Recorder()
    app = make_app(
        {"ADDRESS_RESTRICTION": [{"DENY": f"file:{blocklist}"}], "ALLOW_WATCH_INTERVAL": FAST}, plugins=[recorder]
    )
    blocklist.unlink()
    eventually(lambda: bool(recorder.errors))
    assert status(app, "192.0.2.1") == 403
    blocklist.write_text("192.0.2.0/24\n203.0.113.0/24\n", encoding="utf-8")
    eventually(lambda: status(app, "203.0.113.9") == 403)


def test_trusted_proxy_and_route_lists_are_watched(make_app: MakeApp, tmp_path: Path) -> None:
    proxies = tmp_path / "proxies.txt"
    proxies.write_text("192.0.2.1\n", encoding="utf-8")
    office = tmp_path / "office.txt"
    office.write_text("198.51.100.0/24\n", encoding="utf-8")
    allow = FlaskAllow()

    app = new_app({"ALLOW_TRUSTED_PROXIES": [f"file:{proxies}"], "ALLOW_WATCH_INTERVAL": FAST}, root_path=str(tmp_path))

    @app.route("/office")
    @allow.restrict([{"ALLOW": f"file:{office}"}])
    def only_office() -> str:
        return "office"

    allow.init_app(app)
    try:
        client = app.test_client()

        def office_status(peer: str, forwarded: str) -> int:
            response = client.get("/office", environ_base={"REMOTE_ADDR": peer}, headers={"X-Forwarded-For": forwarded})
            return response.status_code

        assert office_status("192.0.2.1", "198.51.100.5") == 200
        assert office_status("192.0.2.2", "198.51.100.5") == 403  # not a trusted proxy: the peer decides
        write_atomically(proxies, "192.0.2.1\n192.0.2.2\n")
        eventually(lambda: office_status("192.0.2.2", "198.51.100.5") == 200)
        write_atomically(office, "203.0.113.0/24\n")
        eventually(lambda: office_status("192.0.2.2", "198.51.100.5") == 403)
        assert office_status("192.0.2.2", "203.0.113.5") == 200
    finally:
        close_app(app)


def test_watching_off_starts_no_thread(make_app: MakeApp, blocklist: Path) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": f"file:{blocklist}"}], "ALLOW_WATCH_INTERVAL": 0})
    state = app.extensions["flask_allow"]
    assert state.watcher.task is None
    assert list(state.watcher.files) == [str(blocklist)]
    write_atomically(blocklist, "198.51.100.0/24\n")
    time.sleep(0.3)
    assert status(app, "198.51.100.1") == 200


def test_the_watcher_stops_with_its_state(make_app: MakeApp, blocklist: Path) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": f"file:{blocklist}"}], "ALLOW_WATCH_INTERVAL": FAST})
    old = app.extensions["flask_allow"]
    assert old.watcher.task is not None
    eventually(lambda: old.watcher.task.running)
    FlaskAllow.reload(old.extension, app)
    new = app.extensions["flask_allow"]
    eventually(lambda: not old.watcher.task.running)
    assert new.watcher.task is not None and new.watcher.task.running
    close_app(app)
    eventually(lambda: not new.watcher.task.running)


def test_no_file_rules_no_thread(make_app: MakeApp) -> None:
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "192.0.2.0/24"}], "ALLOW_WATCH_INTERVAL": FAST})
    task = app.extensions["flask_allow"].watcher.task
    assert task is not None and not task.running


@pytest.mark.parametrize("value", [-1, "5", True, float("nan"), float("inf"), None, [1]])
def test_a_bad_watch_interval_is_a_config_error(make_app: MakeApp, value: object) -> None:
    with pytest.raises(ConfigError, match="ALLOW_WATCH_INTERVAL"):
        make_app({"ALLOW_WATCH_INTERVAL": value})


def test_a_failing_rules_changed_plugin_is_logged_not_fatal(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        @hookimpl
        def flask_allow_rules_changed(self) -> None:
            raise RuntimeError("boom")

    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": "192.0.2.0/24"}]}, plugins=[Broken()])
    assert status(app, "192.0.2.1") == 403
    assert any("flask_allow_rules_changed" in r.getMessage() for r in caplog.records)


def test_reload_and_the_watcher_never_build_at_once(make_app: MakeApp, blocklist: Path) -> None:
    """Many reloads while the watcher rebuilds too: every build finishes, the last version wins."""
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": f"file:{blocklist}"}], "ALLOW_WATCH_INTERVAL": FAST})
    allow = app.extensions["flask_allow"].extension
    for n in range(1, 30):
        write_atomically(blocklist, f"192.0.2.0/24\n203.0.113.{n}\n")
        allow.reload(app)
    eventually(lambda: status(app, "203.0.113.29") == 403)
    time.sleep(5 * FAST)
    assert status(app, "203.0.113.28") == 200
    state = app.extensions["flask_allow"]
    assert state.watcher.changed() == {}


def test_the_watcher_waits_for_a_file_to_settle(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("192.0.2.1\n", encoding="utf-8")
    rebuilt: list[list[str]] = []
    watcher = Watcher(0, rebuilt.append, logging.getLogger("test"), settle=0.2)
    watcher.add(str(path), "X")
    assert watcher.poll() is None and rebuilt == []
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("192.0.2.2")  # a writer still at work: it changes again during the settle time
        handle.flush()
        import threading

        def more() -> None:
            time.sleep(0.1)
            handle.write("\n")
            handle.flush()

        writer = threading.Thread(target=more)
        writer.start()
        assert watcher.poll() == 0.2  # changed during the settle time: look again soon
        writer.join()
    assert rebuilt == []
    assert watcher.poll() is None
    assert rebuilt == [[str(path)]]


def test_a_background_task_survives_its_function_failing(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def flaky() -> float | None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first run fails")
        return None

    task = BackgroundTask("flaky", 0.01, flaky, delay=0)
    task.start()
    try:
        eventually(lambda: len(calls) >= 3)
    finally:
        task.stop()
    assert any("flaky failed" in r.getMessage() for r in caplog.records)


def test_stamp_sees_an_atomic_rename(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("a\n", encoding="utf-8")
    before = stamp(str(path))
    new = tmp_path / "g"
    new.write_text("a\n", encoding="utf-8")
    os.utime(new, ns=(before[0], before[0]))  # type: ignore[index]
    os.replace(new, path)
    after = stamp(str(path))
    assert after is not None and before is not None and after != before and after[2] != before[2]
    assert stamp(str(tmp_path / "missing")) is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_follows_the_file_on_its_own(make_app: MakeApp, blocklist: Path) -> None:
    """As a gunicorn worker forked from a --preload master: the child's own watcher swaps."""
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": f"file:{blocklist}"}], "ALLOW_WATCH_INTERVAL": FAST})
    assert status(app, "198.51.100.1") == 200
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(ready_r)
            os.close(go_w)
            state = app.extensions["flask_allow"]
            os.write(ready_w, b"1" if state.watcher.task.running else b"0")
            os.read(go_r, 1)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if not app.extensions["flask_allow"].extension.check("198.51.100.1", app=app).allowed:
                    code = 0
                    break
                time.sleep(0.02)
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(go_r)
    try:
        assert os.read(ready_r, 1) == b"1", "the watcher thread was not started again in the child"
        app.extensions["flask_allow"].watcher.stop()  # only the child's watcher may see the change
        write_atomically(blocklist, "192.0.2.0/24\n198.51.100.0/24\n")
        os.write(go_w, b"1")
        _, result = os.waitpid(pid, 0)
    finally:
        os.close(ready_r)
        os.close(go_w)
    assert os.waitstatus_to_exitcode(result) == 0


# -- the shrink limit ---------------------------------------------------------


def networks(count: int, third: int = 0) -> str:
    """``count`` /32s in 10.<third>.x.y, one a line."""
    return "".join(f"10.{third}.{n // 256}.{n % 256}\n" for n in range(count))


def shrink_app(make_app: MakeApp, path: Path, recorder: Recorder | None = None, **config: Any) -> Any:
    path.write_text(networks(100), encoding="utf-8")
    settings = {"ADDRESS_RESTRICTION": [{"DENY": f"file:{path}"}], "ALLOW_WATCH_INTERVAL": FAST, **config}
    return make_app(settings, plugins=[recorder] if recorder else [])


def test_an_automatic_shrink_is_held_back_and_reload_applies_it(
    make_app: MakeApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = tmp_path / "deny.txt"
    recorder = Recorder()
    app = shrink_app(make_app, path, recorder)
    state = app.extensions["flask_allow"]
    write_atomically(path, networks(40))  # a half-written list: 40 of 100
    eventually(lambda: bool(recorder.errors))
    time.sleep(10 * FAST)
    assert app.extensions["flask_allow"] is state
    assert status(app, "10.0.0.99") == 403  # the last good list still denies
    [(kind, message, _)] = recorder.errors
    assert kind == "source_refused"
    assert "ADDRESS_RESTRICTION[0].DENY" in message and str(path) in message and "from 100 to 40 entries" in message
    refusals = [r.getMessage() for r in caplog.records if "last good rules stay in force" in r.getMessage()]
    assert len(refusals) == 1 and "100 entries" in refusals[0]
    assert state.watcher.why[str(path)].endswith("unchanged for 600 s")
    app.extensions["flask_allow"].extension.reload(app)  # the operator says the list really shrank
    assert status(app, "10.0.0.99") == 200 and status(app, "10.0.0.39") == 403
    assert any("100 -> 40 entries" in r.getMessage() for r in caplog.records)


def test_an_emptied_list_is_held_back(make_app: MakeApp, tmp_path: Path) -> None:
    path = tmp_path / "deny.txt"
    recorder = Recorder()
    app = shrink_app(make_app, path, recorder, ALLOW_LIST_SHRINK_LIMIT=0.01)
    write_atomically(path, "# nothing here today\n")
    eventually(lambda: bool(recorder.errors))
    assert "from 100 to 0 entries" in recorder.errors[0][1]
    assert status(app, "10.0.0.1") == 403


def test_a_shrink_within_the_limit_and_growth_apply_at_once(make_app: MakeApp, tmp_path: Path) -> None:
    path = tmp_path / "deny.txt"
    recorder = Recorder()
    app = shrink_app(make_app, path, recorder)
    write_atomically(path, networks(60))
    eventually(lambda: status(app, "10.0.0.70") == 200)
    write_atomically(path, networks(31))  # 31 of the last good 60 (not of the first 100)
    eventually(lambda: status(app, "10.0.0.40") == 200)
    assert not recorder.errors


def test_a_held_back_shrink_is_applied_once_it_stays_for_the_hold_time(
    make_app: MakeApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "deny.txt"
    recorder = Recorder()
    app = shrink_app(make_app, path, recorder, ALLOW_LIST_SHRINK_HOLD=0.6)
    write_atomically(path, networks(10))
    eventually(lambda: bool(recorder.errors))
    refused_at = time.monotonic()
    assert status(app, "10.0.0.50") == 403
    eventually(lambda: status(app, "10.0.0.50") == 200)
    assert time.monotonic() - refused_at > 0.4
    assert len(recorder.errors) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    warnings = [message for message in warnings if "applied, as" in message]
    assert len(warnings) == 1 and "from 100 to 10 entries" in warnings[0]


def test_a_change_during_the_hold_starts_it_again(make_app: MakeApp, tmp_path: Path) -> None:
    path = tmp_path / "deny.txt"
    recorder = Recorder()
    app = shrink_app(make_app, path, recorder, ALLOW_LIST_SHRINK_HOLD=1.0)
    write_atomically(path, networks(10))
    eventually(lambda: len(recorder.errors) == 1)
    time.sleep(0.6)
    write_atomically(path, networks(11))  # still too small, and a new version: held anew
    eventually(lambda: len(recorder.errors) == 2)
    changed_at = time.monotonic()
    eventually(lambda: status(app, "10.0.0.10") == 403 and status(app, "10.0.0.50") == 200)
    assert time.monotonic() - changed_at > 0.7


def test_a_shrink_limit_of_zero_applies_every_shrink(make_app: MakeApp, tmp_path: Path) -> None:
    path = tmp_path / "deny.txt"
    app = shrink_app(make_app, path, ALLOW_LIST_SHRINK_LIMIT=0)
    write_atomically(path, networks(1))
    eventually(lambda: status(app, "10.0.0.50") == 200)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ALLOW_LIST_SHRINK_LIMIT", 1.5),
        ("ALLOW_LIST_SHRINK_LIMIT", -0.1),
        ("ALLOW_LIST_SHRINK_LIMIT", "half"),
        ("ALLOW_LIST_SHRINK_HOLD", -1),
        ("ALLOW_LIST_SHRINK_HOLD", None),
    ],
)
def test_bad_shrink_settings_are_config_errors(make_app: MakeApp, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        make_app({key: value})

"""A process that reads only the bans changed since its last sync holds what one reading all holds.

Two services share one store (memory, a real SQLite file, a real redis-server); for random sequences of bans,
unbans (by either), clock steps and syncs, each service's bans (and the answer for every probe
address) equal those of a fresh service that read the whole store. The overlay bound is made small
so that both ways of building a snapshot (the index with the changes laid over it, and the index
compiled whole) are taken.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_allow.bans import BanService, BanSettings, store_from_string
from flask_allow.bans import service as service_module
from flask_allow.bans.stores import BanStore
from flask_allow.bans.stores.memory import MemoryStore

NETWORKS = ["198.51.100.1", "198.51.100.2", "198.51.100.0/24", "203.0.113.0/25", "2001:db8::/64", "2001:db8::1"]
PROBES = [(4, 0xC6336401), (4, 0xC6336402), (4, 0xC63364FE), (4, 0xCB007105), (6, (0x20010DB8 << 96) | 1)]

step = st.one_of(
    st.tuples(st.just("ban"), st.integers(0, 1), st.integers(0, len(NETWORKS) - 1), st.sampled_from([0, 3, 20])),
    st.tuples(st.just("unban"), st.integers(0, 1), st.integers(0, len(NETWORKS) - 1), st.just(0)),
    st.tuples(st.just("clock"), st.just(0), st.just(0), st.sampled_from([1, 4, 25])),
    st.tuples(st.just("sync"), st.integers(0, 1), st.just(0), st.just(0)),
)


def empty_store(kind: str, folder: Path, request: pytest.FixtureRequest, database: int) -> BanStore:
    """An empty store of ``kind``: memory, a SQLite file in ``folder``, or a Redis database of the session's server."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return store_from_string(f"sqlite:///{folder}/b.sqlite3")
    server = request.getfixturevalue("redis_server")
    store = store_from_string(f"redis://127.0.0.1:{server.port}/{database}")
    store.client.flushdb()  # type: ignore[attr-defined]  # every example from an empty database
    return store


def state_of(service: BanService) -> tuple[list[str], list[bool]]:
    bans = sorted(f"{b.network} {b.until}" for b in service.bans())
    return bans, [service.snapshot.banned_key(key) for key in PROBES]


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, max_size=30))
def test_reading_the_changes_equals_reading_everything(
    kind: str, steps: list[Any], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setattr(service_module, "OVERLAY_MAX", 3)
    monkeypatch.setattr(service_module, "RECOMPILE_EVERY", 10.0)
    with tempfile.TemporaryDirectory() as folder:
        store = empty_store(kind, Path(folder), request, database=3)
        errors: list[Any] = []
        settings_ = BanSettings.from_config({"ALLOW_BANS": True, "ALLOW_BAN_EXEMPT": []}, errors)
        now = [1_000_000.0]
        logger = logging.getLogger("test")
        services = [BanService(settings_, store, logger, clock=lambda: now[0]) for _ in range(2)]
        for service in services:
            service.sync()
        try:
            for kind_, who, which, value in steps:
                service = services[who]
                if kind_ == "ban":
                    service.ban(NETWORKS[which], value)
                elif kind_ == "unban":
                    service.unban(NETWORKS[which])
                elif kind_ == "clock":
                    now[0] += value
                else:
                    service.sync()
            for service in services:
                service.sync()
            for service in services:  # the other's last changes were written by its last sync
                service.sync()
            fresh = BanService(settings_, store, logger, clock=lambda: now[0])
            fresh.sync()
            for service in services:
                assert state_of(service) == state_of(fresh)
                if service.snapshot.earliest > now[0]:  # else counted until compiled again
                    assert service.snapshot.size == len(service.bans())
        finally:
            for service in services:
                service.task.stop()
            store.close()


def test_a_sync_after_one_change_reads_one_row(tmp_path: Path) -> None:
    """With 2,000 bans, the other process's sync after one more ban reads the change, not the
    2,001 bans, and lays it over its index instead of compiling it again."""
    uri = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    errors: list[Any] = []
    settings_ = BanSettings.from_config({"ALLOW_BANS": True, "ALLOW_BAN_EXEMPT": []}, errors)
    one = BanService(settings_, store_from_string(uri), logging.getLogger("test"))
    two = BanService(settings_, store_from_string(uri), logging.getLogger("test"))
    for i in range(2000):
        one.ban(f"10.{i >> 8}.{i & 255}.0/24", 3600)
    one.sync()
    two.sync()
    compiled = two.snapshot.compiled
    assert two.snapshot.size == 2000
    read: list[str] = []
    active, changes = two.store.active, two.store.changes
    two.store.active = lambda now: read.append("all") or active(now)  # type: ignore[method-assign]
    two.store.changes = lambda since: read.append("changes") or changes(since)  # type: ignore[method-assign]
    one.ban("192.0.2.99", 60)
    one.sync()
    two.sync()
    assert read == ["changes"] and two.snapshot.compiled is compiled  # laid over, not compiled again
    assert two.banned("192.0.2.99") and two.snapshot.size == 2001
    one.unban("10.0.5.0/24")
    one.sync()
    two.sync()
    assert not two.banned("10.0.5.9") and two.snapshot.size == 2000 and read == ["changes", "changes"]
    for service in (one, two):
        service.close()


def test_a_version_without_its_change_reads_everything(tmp_path: Path) -> None:
    """A writer that keeps no log of changes (an older flask_allow on the same file) bumps the
    version alone: the other processes then read every ban again, never miss one."""
    import json
    import sqlite3

    from flask_allow.bans.ban import Ban, moment, network_of

    uri = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    errors: list[Any] = []
    settings_ = BanSettings.from_config({"ALLOW_BANS": True, "ALLOW_BAN_EXEMPT": []}, errors)
    service = BanService(settings_, store_from_string(uri), logging.getLogger("test"))
    service.sync()
    ban = Ban(network_of("192.0.2.50"), moment(0), None, "old writer", 0, "cli")
    with contextlib.closing(sqlite3.connect(tmp_path / "b.sqlite3")) as db, db:
        db.execute("INSERT INTO bans VALUES (?, NULL, ?)", (str(ban.network), json.dumps(ban.to_dict())))
        db.execute("UPDATE meta SET value = value + 1 WHERE name = 'version'")
    assert service.store.changes("0") is None
    service.sync()
    assert service.banned("192.0.2.50")
    service.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
def test_bans_in_a_row_are_written_together(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A list of bans reaches the store in a few writes (``put_many``: one SQLite transaction, one
    Redis round trip per ``BATCH``), each of them a change the other processes read."""
    from flask_allow.bans.stores import BATCH

    store = empty_store(kind, tmp_path, request, database=4)
    errors: list[Any] = []
    settings_ = BanSettings.from_config({"ALLOW_BANS": True, "ALLOW_BAN_EXEMPT": []}, errors)
    one, two = (BanService(settings_, store, logging.getLogger("test")) for _ in range(2))
    one.sync()
    two.sync()
    writes: list[int] = []
    put_many = store.put_many
    store.put_many = lambda bans: writes.append(len(bans)) or put_many(bans)  # type: ignore[method-assign]
    count = 2 * BATCH + 7
    networks = [f"10.{i >> 8}.{i & 255}.0/24" for i in range(count)]
    one.ban_many(networks[:-1], 3600, "list")
    one.unban(networks[0])
    one.ban(networks[-1], 60)
    one.sync()
    assert writes == [BATCH, BATCH, count - 1 - 2 * BATCH, 1]  # a batch at a time; the unban between the runs
    two.sync()
    assert len(two.bans()) == count - 1 and not two.banned("10.0.0.1") and two.banned("10.0.1.1")
    assert {b.reason for b in two.bans()} == {"list", ""}
    assert sorted(str(b.network) for b in store.active(0)) == sorted(str(b.network) for b in two.bans())
    for service in (one, two):
        service.task.stop()
    store.close()

"""Bans made in a process under faults and races: expiry in the layers, the ban a denial names,
a store write failing midway, two whole compiles at once, exemptions, threads banning while the
sync runs, and loops of unbans.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from flask_allow.addresses import parse_client, parse_span
from flask_allow.bans import BanService, BanSettings, store_from_string
from flask_allow.bans import service as service_module
from flask_allow.bans import snapshot as snapshot_module
from flask_allow.bans.stores import BATCH
from flask_allow.bans.stores.memory import MemoryStore

LOGGER = logging.getLogger("test")
FILLER = [f"10.{i >> 8}.{i & 255}.0/24" for i in range(1000)]  # OVERLAY_MAX bans: a large index


def settings_of(**config: Any) -> BanSettings:
    errors: list[Any] = []
    found = BanSettings.from_config({"ALLOW_BANS": True, "ALLOW_BAN_EXEMPT": [], **config}, errors)
    assert not errors
    return found


def service_on(store: Any, clock: Any, **config: Any) -> BanService:
    return BanService(settings_of(**config), store, LOGGER, clock=clock)


def test_layered_ban_that_ended_is_not_counted_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a large index (OVERLAY_MAX bans or more) a ban made since lives in a layer; once it
    has ended, the sync compiles again (``RECOMPILE_EVERY``) and ``size`` stops counting it:
    the sync looks at the layers' ends (``snapshot.earliest``), not only the index's."""
    monkeypatch.setattr(service_module, "COMPILE_SPACING", 0.0)  # wall time: the test's clock jumps
    now = [1_000_000.0]
    service = service_on(MemoryStore(), lambda: now[0])
    try:
        service.ban_many(FILLER, 0)
        service.sync()
        assert len(service.snapshot.compiled.bans) == 1000 and not service.snapshot.layers
        service.ban("192.0.2.1", 5, "short")
        service.sync()
        assert service.snapshot.size == 1001
        for _ in range(10):  # ten minutes of syncs, the store quiet
            now[0] += 60
            service.sync()
        assert not service.banned("192.0.2.1") and len(service.bans()) == 1000
        assert service.snapshot.size == 1000, "the ban that ended at once is still counted 10 minutes later"
    finally:
        service.task.stop()


def test_the_sync_is_not_woken_at_a_layered_bans_end() -> None:
    """``sync()`` asks to run again at the end of a ban in a layer too, not only of the index's
    (here: an index without ends, a layered 5 s ban, the interval 30 s)."""
    now = [1_000_000.0]
    service = service_on(MemoryStore(), lambda: now[0], ALLOW_BAN_SYNC_INTERVAL=30)
    try:
        service.ban_many(FILLER, 0)
        service.sync()
        service.ban("192.0.2.1", 5)
        wait = service.sync()
        assert service.snapshot.earliest == pytest.approx(now[0] + 5)
        assert wait is not None and wait <= 5.0 + 1e-6, (
            f"next sync in {wait} (None: the 30 s interval), the ban ends in 5 s"
        )
    finally:
        service.task.stop()


def test_the_reason_shown_is_the_same_in_the_process_that_banned_and_one_that_read_it() -> None:
    """Two bans cover a client and last equally long (both until unbanned): ``ban_of`` names the
    narrowest, in the process that made them (layers) as in one that read them (one index),
    and still after the maker compiles whole."""
    now = [1_000_000.0]
    store = MemoryStore()
    maker, reader = (service_on(store, lambda: now[0]) for _ in range(2))
    try:
        maker.ban_many(FILLER, 0)
        maker.sync()
        reader.sync()
        maker.ban("203.0.113.9", 0, "unrelated")
        maker.ban("198.51.100.1", 0, "the address")
        maker.ban("198.51.100.0/24", 0, "its network")  # a layer of its own: [2 changes, 1 change]
        maker.sync()  # written; the index is large, so laid over, not compiled again
        reader.sync()
        key = parse_client("198.51.100.1")
        made, read = maker.ban_of(key), reader.ban_of(key)
        assert made is not None and read is not None
        assert made.reason == read.reason, f"the maker says {made.reason!r}, a reader {read.reason!r}"
    finally:
        maker.task.stop()
        reader.task.stop()


def test_a_put_many_failing_midway_does_not_undo_a_later_unban(tmp_path: Path) -> None:
    """A run of puts is written a batch at a time (one SQLite transaction, one Redis MULTI/EXEC)
    and each batch leaves the queue once written: when a later batch fails (SQLITE_BUSY past the
    timeout, a full disk; here a trigger), the written ones are not written again over what
    another process did with them meanwhile (here an unban stays an unban)."""
    path = tmp_path / "b.sqlite3"
    uri = f"sqlite:///{path}"
    now = [1_000_000.0]
    one = service_on(store_from_string(uri), lambda: now[0])
    two = service_on(store_from_string(uri), lambda: now[0])
    one.sync()
    two.sync()
    refused = "192.0.2.99/32"
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # the file refuses one ban: the second batch fails
        db.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON bans WHEN NEW.network = '{refused}' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    try:
        targets = ["198.51.100.7", *FILLER[: BATCH - 1], *FILLER[BATCH - 1 : BATCH + 10], refused]
        one.ban_many(targets, 3600, "list")
        one.sync()
        assert one.down  # the second batch failed; the first (198.51.100.7 among them) is committed
        two.sync()
        assert two.banned("198.51.100.7")
        assert two.unban("198.51.100.7")  # an operator lifts it, in another process
        now[0] += 1
        two.sync()
        assert not any(b.network == ipaddress.ip_network("198.51.100.7") for b in two.store.active(now[0]))
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute("DROP TRIGGER refuse")
        now[0] += 1
        one.sync()  # the store is back: what failed is written
        assert not one.down
        two.sync()
        fresh = service_on(store_from_string(uri), lambda: now[0])
        fresh.sync()
        assert fresh.banned("192.0.2.99")  # the ban that failed was written in the end
        assert not fresh.banned("198.51.100.7"), "the unban made meanwhile was undone by writing the ban again"
        fresh.close()
    finally:
        one.close()
        two.close()


class _GatedNetwork(ipaddress.IPv4Network):
    """A network whose span, read in the thread named ``gate.thread``, waits for ``gate.go``:
    holds that thread inside ``Compiled(...)``, between ``_rebuild``'s two locked sections."""

    gate: Any = None

    @property
    def broadcast_address(self) -> ipaddress.IPv4Address:
        gate = type(self).gate
        if gate is not None and threading.current_thread().name == gate.thread and not gate.go.is_set():
            gate.inside.set()
            gate.go.wait(10)
        return ipaddress.IPv4Network(str(self)).broadcast_address


class _Gate:
    def __init__(self, thread: str) -> None:
        self.thread = thread
        self.inside = threading.Event()
        self.go = threading.Event()


def test_a_sync_compiling_while_the_proxies_change_drops_a_ban_and_the_new_proxies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whole compiles run one at a time (the sync thread's, and ``set_proxies`` on a reload's
    thread): a ban made while the sync compiles, and the proxies a reload sets meanwhile, are
    both in force after both end (with two at once, the sync's snapshot, of the bans and the
    proxies of when it began, replaced the reload's)."""
    now = [1_000_000.0]
    service = service_on(MemoryStore(), lambda: now[0])  # MemoryStore keeps the Ban objects given
    gate = _Gate("sync")
    monkeypatch.setattr(_GatedNetwork, "gate", gate)
    try:
        service.ban_many([*FILLER, _GatedNetwork("198.51.100.0/24"), "192.0.2.0/24"], 0)
        syncing = threading.Thread(target=service.sync, name="sync")
        syncing.start()  # the first sync: reads every ban and compiles whole; held inside
        assert gate.inside.wait(10)
        service.ban("203.0.113.7", 0, "made meanwhile")
        reload = threading.Thread(target=service.set_proxies, args=([parse_span("192.0.2.10")[0]],))
        reload.start()  # a reload: compiles whole at once (or, were compiles one at a time, waits)
        reload.join(0.5)
        gate.go.set()
        syncing.join(10)
        reload.join(10)
        assert service.banned("198.51.100.1") and service.banned("192.0.2.11")
        lost = not service.banned("203.0.113.7")
        service.sync()  # the store answers: the ban made meanwhile is read back and laid again
        proxy_banned = service.banned("192.0.2.10")
        assert (lost, proxy_banned) == (False, False), "(the ban made meanwhile lost, the new proxy banned)"
    finally:
        gate.go.set()
        service.task.stop()


def test_a_put_many_failing_midway_is_written_whole_at_the_next_sync(tmp_path: Path) -> None:
    """A run of puts whose second SQLite batch fails stays queued whole: none is lost, and
    a later unban of one of them (queued after) still wins in the store."""
    path = tmp_path / "b.sqlite3"
    uri = f"sqlite:///{path}"
    service = service_on(store_from_string(uri), lambda: 1_000_000.0)
    service.sync()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON bans WHEN NEW.network = '192.0.2.99/32' "
            "BEGIN SELECT RAISE(ABORT, 'no'); END"
        )
    try:
        service.ban_many([*FILLER[: BATCH + 5], "192.0.2.99"], 3600)
        service.unban(FILLER[0])
        service.sync()
        assert service.down and service.banned("10.0.1.1") and not service.banned("10.0.0.1")
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute("DROP TRIGGER refuse")
        service.sync()
        assert not service.down
        stored = {str(b.network) for b in service.store.active(1_000_000.0)}
        assert stored == {*FILLER[1 : BATCH + 5], "192.0.2.99/32"}
    finally:
        service.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
def test_put_remove_put_of_one_network_ends_as_the_last_put(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """ban, unban, ban again of one network between two syncs (the puts split by the
    remove) reach the store in order, in each store, and a reader holds the last ban."""
    if kind == "memory":
        store: Any = MemoryStore()
    elif kind == "sqlite":
        store = store_from_string(f"sqlite:///{tmp_path / 'b.sqlite3'}")
    else:
        server = request.getfixturevalue("redis_server")
        store = store_from_string(f"redis://127.0.0.1:{server.port}/6")
        store.client.flushdb()
    now = [1_000_000.0]
    one, two = (service_on(store, lambda: now[0]) for _ in range(2))
    try:
        one.sync()
        two.sync()
        one.ban_many(["198.51.100.1", "203.0.113.0/24"], 60, "first")
        one.unban("198.51.100.1")
        one.ban("198.51.100.1", 120, "last")
        one.unban("203.0.113.0/24")
        one.sync()
        two.sync()
        (ban,) = two.bans()
        assert ban.reason == "last" and [str(b.network) for b in store.active(now[0])] == ["198.51.100.1/32"]
        assert not two.banned("203.0.113.1") and two.banned("198.51.100.1")
        assert two.ban_of(parse_client("198.51.100.1")) == one.ban_of(parse_client("198.51.100.1"))
    finally:
        one.task.stop()
        two.task.stop()
        store.close()


def test_exempt_and_proxies_are_never_banned_through_a_layer_or_a_reader() -> None:
    """A ban of a network holding an exempt address or a trusted proxy bans the rest of it,
    never them: in the layers of the process that made it, in the one that read it, after a
    whole compile; and a ban of exactly a proxy is refused."""
    now = [1_000_000.0]
    store = MemoryStore()
    proxy = [parse_span("198.51.100.10")[0]]
    one, two = (service_on(store, lambda: now[0], ALLOW_BAN_EXEMPT=["198.51.100.5"]) for _ in range(2))
    try:
        for service in (one, two):
            service.set_proxies(proxy)
        one.ban_many(FILLER, 0)  # a large index: what follows stays in layers
        one.sync()
        two.sync()
        with pytest.raises(ValueError, match="exempt"):
            one.ban("198.51.100.10", 0)
        one.ban("198.51.100.0/24", 0)
        one.sync()
        two.sync()
        assert two.snapshot.layers and one.snapshot.layers
        for service in (one, two):
            assert service.banned("198.51.100.6") and service.snapshot.banned_key(parse_client("198.51.100.6"))
            for spared in ("198.51.100.5", "198.51.100.10"):
                assert not service.banned(spared) and not service.snapshot.banned_key(parse_client(spared))
                assert service.ban_of(parse_client(spared)) is None
        two._rebuild(now[0])  # and compiled whole
        assert not two.snapshot.layers and not two.banned("198.51.100.10") and two.banned("198.51.100.6")
    finally:
        one.task.stop()
        two.task.stop()


@pytest.mark.parametrize("filler", [0, len(FILLER)])
def test_threads_banning_and_unbanning_while_the_sync_swaps_never_fail_open(filler: int) -> None:
    """Threads ban and unban their own networks in a loop while the sync thread runs
    (woken at every change; a small index: compiled whole at most syncs, a large one: the
    changes read back laid over it): after ``ban()`` returns its network is denied, after
    ``unban()`` it is not, every time; at the end the store and the process agree."""
    store = MemoryStore()
    service = BanService(settings_of(ALLOW_BAN_SYNC_INTERVAL=0.01), store, LOGGER)
    service.ban_many(FILLER[:filler], 0)
    service.sync()
    service.start_background()
    failures: list[str] = []

    def worker(which: int) -> None:
        for i in range(250):
            network = f"172.{16 + which}.{i & 255}.0/24"
            address = f"172.{16 + which}.{i & 255}.9"
            service.ban(network, 3600)
            if not service.banned(address) or service.ban_of(parse_client(address)) is None:
                failures.append(f"{network} not denied after ban()")
            if i % 3:
                service.unban(network)
                if service.banned(address):
                    failures.append(f"{network} denied after unban()")
            time.sleep(0.001)  # else the sync stays in _push as long as the loops run

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not failures, failures[:5]
        assert service.task.runs > 1  # the sync ran meanwhile
        service.task.stop()
        service.sync()
        service.sync()
        expected = {f"172.{16 + w}.{i}.0/24" for w in range(4) for i in range(250) if i % 3 == 0}
        assert {str(b.network) for b in service.bans()} == {*FILLER[:filler], *expected}
        assert {str(b.network) for b in store.active(time.time())} == {*FILLER[:filler], *expected}
        assert service.snapshot.size == filler + len(expected)
    finally:
        service.task.stop()


def test_a_loop_of_unbans_compiles_n_log_n_bans(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop of unbans (of bans made in a loop, so in the layers) with a sync after every
    tenth compiles O(n log n) bans in all, and leaves every ban lifted at once."""
    compiled = [0]
    real = snapshot_module.Compiled.__init__

    def counting(self: Any, bans: Any, exempt: Any) -> None:
        compiled[0] += len(bans)
        real(self, bans, exempt)

    service = service_on(MemoryStore(), lambda: 1_000_000.0)
    count = 3000
    networks = [f"10.{i >> 8}.{i & 255}.0/24" for i in range(count)]
    service.ban("192.0.2.0/24", 0)
    service.sync()
    monkeypatch.setattr(service_module, "COMPILE_SPACING", 1e9)  # no whole compile after this one
    for network in networks:
        service.ban(network, 0)
    monkeypatch.setattr(snapshot_module.Compiled, "__init__", counting)
    for i, network in enumerate(networks):
        assert service.unban(network)
        assert not service.banned(network.replace(".0/24", ".1"))
        if i % 10 == 0:
            service.sync()
    assert compiled[0] <= 2 * count * math.log2(count)
    assert service.snapshot.size == 1 and [str(b.network) for b in service.bans()] == ["192.0.2.0/24"]
    service.task.stop()


def test_the_cli_says_which_bans_did_not_reach_the_store(tmp_path: Path) -> None:
    """``flask allow ban`` of more than a batch, the store failing after the first: the bans
    written are printed as banned, the others named in the error, and it exits 2."""
    from flask import Flask

    from flask_allow import FlaskAllow

    path = tmp_path / "b.sqlite3"
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(
        ALLOW_BANS=True,
        ALLOW_BAN_STORE=f"sqlite:///{path}",
        ALLOW_BAN_EXEMPT=[],
        ADDRESS_RESTRICTION=[{"ALLOW": "all"}],
    )
    FlaskAllow(app)
    refused = "192.0.2.99/32"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON bans WHEN NEW.network = '{refused}' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    try:
        targets = [*FILLER[:BATCH], "192.0.2.98", refused]
        result = app.test_cli_runner().invoke(args=["allow", "ban", *targets, "--ttl", "1h"])
        assert result.exit_code == 2, result.output
        assert result.stdout.count("banned ") == BATCH
        assert "not banned: 2 of 502 (192.0.2.98/32, 192.0.2.99/32)" in result.stderr
    finally:
        app.extensions["flask_allow"].close()


def test_a_sync_writes_only_what_was_queued_when_it_began() -> None:
    """Bans made while the sync writes (another thread banning on) wait for the next sync: a
    stream of bans never keeps the sync writing, away from reading and counting."""
    now = [1_000_000.0]
    writes: list[int] = []

    class Busy(MemoryStore):
        def put_many(self, bans: Any) -> None:
            super().put_many(bans)
            writes.append(len(bans))
            if len(writes) < 50:  # each write sees one more ban made meanwhile
                service.ban(f"10.9.{len(writes)}.0/24", 0)

    service = service_on(Busy(), lambda: now[0])
    try:
        service.ban("192.0.2.1", 0)
        service.sync()  # it writes twice (before and after counting): what was queued then
        assert len(writes) == 2 and len(service.unwritten()) == 1
        assert service.banned("10.9.2.1")  # in force here at once all the same
    finally:
        service.task.stop()


def test_a_redis_batch_refused_midway_does_not_undo_a_later_unban(redis_server: Any) -> None:
    """The Redis store's batches are MULTI/EXEC transactions: when the server refuses the
    second (here out of memory, as a full Redis with ``noeviction`` does), the first stays
    written and leaves the queue, the second is written whole once the server takes writes again,
    and an unban another process made of a ban in the first batch meanwhile is not undone."""
    url = f"redis://127.0.0.1:{redis_server.port}/7"
    admin = store_from_string(url)
    admin.client.flushdb()
    calls: list[int] = []

    def full_from_the_second_batch(store: Any) -> Any:
        real = store.put_many

        def put_many(bans: Any) -> None:
            calls.append(len(bans))
            if len(calls) == 2:  # the server fills up between the first batch and the second
                admin.client.config_set("maxmemory-policy", "noeviction")
                admin.client.config_set("maxmemory", "1")
            real(bans)

        store.put_many = put_many
        return store

    now = [1_000_000.0]
    one = service_on(full_from_the_second_batch(store_from_string(url)), lambda: now[0])
    two = service_on(store_from_string(url), lambda: now[0])
    try:
        one.sync()
        two.sync()
        one.ban_many(["198.51.100.7", *FILLER[: BATCH - 1], *FILLER[BATCH - 1 : BATCH + 10]], 3600, "list")
        one.sync()
        assert calls[:2] == [BATCH, 11] and one.down, "the second batch was not refused"
        assert len(one.unwritten()) == 11, "the written batch stayed queued, or the refused one left the queue"
        admin.client.config_set("maxmemory", "0")
        two.sync()
        assert two.banned("198.51.100.7") and not two.banned(FILLER[BATCH].split("/")[0])
        assert two.unban("198.51.100.7")  # an operator lifts it, in another process
        now[0] += 1
        two.sync()
        now[0] += 1
        one.sync()  # the server takes writes again: what it refused is written
        assert not one.down and one.unwritten() == []
        fresh = service_on(store_from_string(url), lambda: now[0])
        fresh.sync()
        assert fresh.banned(FILLER[BATCH].split("/")[0]), "the refused batch was never written"
        assert not fresh.banned("198.51.100.7"), "the unban made meanwhile was undone by writing the ban again"
        fresh.close()
    finally:
        admin.client.config_set("maxmemory", "0")
        admin.client.flushdb()
        admin.close()
        one.close()
        two.close()


class CuttingProxy:
    """A TCP proxy on loopback in front of redis-server that, once armed, forwards a client's
    commands up to the ``at``-th EVALSHA (counted from when it was armed) and then cuts the
    connection: a connection lost in the middle of a batch, as a network or a failover does."""

    def __init__(self, port: int) -> None:
        import socket

        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.at: int | None = None
        self.seen = 0
        self.cut = False
        self.sockets: list[Any] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, at: int) -> None:
        self.at, self.seen, self.cut = at, 0, False

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: Any, target: Any, commands: bool) -> None:
        tail = b""  # the end of the last chunk: a word split across two
        try:
            while chunk := source.recv(1 << 16):
                if commands and self.at is not None and not self.cut:
                    data, start = tail + chunk, len(tail)
                    found = data.find(b"EVALSHA", 0)
                    while found >= 0:
                        if found + 7 > start:  # not counted with the chunk before
                            self.seen += 1
                            if self.seen == self.at:
                                target.sendall(data[start : max(start, found)])
                                self.cut = True
                                raise ConnectionResetError("cut")
                        found = data.find(b"EVALSHA", found + 7)
                    tail = data[-6:]
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


def test_a_redis_connection_cut_inside_a_batch_writes_none_of_that_batch(redis_server: Any) -> None:
    """A batch is one MULTI/EXEC: the connection cut after ten of the second batch's bans reached
    the server (EXEC not sent) leaves the first batch written whole and none of the second (a
    plain pipeline would have written those ten), and writing the batch again (as the sync does
    with a refused batch) writes it whole."""
    from flask_allow.bans import Ban
    from flask_allow.bans.stores import StoreError

    proxy = CuttingProxy(redis_server.port)
    admin = store_from_string(f"redis://127.0.0.1:{redis_server.port}/8")
    store = store_from_string(f"redis://127.0.0.1:{proxy.port}/8")
    try:
        admin.client.flushdb()
        since = datetime.now(timezone.utc)
        bans = [Ban(ipaddress.ip_network(f"10.{i >> 8}.{i & 255}.0/24"), since, None) for i in range(BATCH + 100)]
        store.ping()  # connected (and the scripts loaded on first use) before the cut is armed
        proxy.arm(BATCH + 11)
        with pytest.raises(StoreError):
            store.put_many(bans)
        assert proxy.cut and proxy.seen == BATCH + 11, "the connection was not cut inside the second batch"
        written = {str(ban.network) for ban in admin.active(time.time())}
        assert written == {str(ban.network) for ban in bans[:BATCH]}, f"{len(written) - BATCH} of the cut batch written"
        proxy.arm(10**9)  # never again
        store.put_many(bans[BATCH:])  # as the service writes a refused batch: again, whole
        assert len(admin.active(time.time())) == len(bans)
    finally:
        admin.client.flushdb()
        admin.close()
        store.close()
        proxy.close()

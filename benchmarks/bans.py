"""Bans: request overhead with 10,000 active bans and with auto-ban counting, and how fast a ban spreads.

Flask's test client sends the same GET to each app in turn (interleaved rounds, as requests.py):
10 static rules without bans; the same with ``banned`` first and 10,000 active bans (the client
not banned); the same with ``ALLOW_AUTOBAN`` counting (the client's responses are counted).
Then the propagation time: a ban made in one process until another process (a second app on the
same SQLite file; a second app on a real redis-server, when one is installed) denies the client;
how long another process's sync takes after one new ban among 100,000 (its changes read, and
every ban read); and banning 2,000 and 20,000 networks in one app, in a loop and with ban_many().

    python benchmarks/bans.py [--quick] [--json PATH]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common
from flask import Flask
from requests import CLIENT, hello_app, ten_rules

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def propagation(store: str, tmp: str, samples: int) -> list[float]:
    """Seconds from ``ban()`` in one app until another app on the same store denies the client."""
    config = {"ALLOW_BANS": True, "ALLOW_BAN_STORE": store, "ALLOW_BAN_SYNC_INTERVAL": 1.0}
    one = hello_app("one", config)
    two = hello_app("two", config)
    one.instance_path = two.instance_path = tmp
    found = []
    for i in range(samples):
        address = f"198.51.100.{i + 1}"
        start = time.perf_counter()
        one.extensions["flask_allow"].bans.ban(address, 600)
        while two.test_client().get("/", environ_base={"REMOTE_ADDR": address}).status_code != 403:
            time.sleep(0.005)
        found.append(time.perf_counter() - start)
    for app in (one, two):
        app.extensions["flask_allow"].close()
    return found


def sync_after_one_ban(uri: str, count: int) -> tuple[float, float]:
    """Seconds another process's sync takes after one new ban among ``count``: reading the store's
    changes (the usual), and reading every ban (as before 3.1's log of changes; still every
    ``REREAD_EVERY`` seconds)."""
    import logging

    from flask_allow.bans import BanService, BanSettings, store_from_string

    store = fill_store(uri, count)
    errors: list[Any] = []
    settings = BanSettings.from_config({"ALLOW_BANS": True, "ALLOW_BAN_EXEMPT": []}, errors)
    one, two = (BanService(settings, store_from_string(uri), logging.getLogger("benchmark")) for _ in range(2))
    one.sync()
    two.sync()
    found = []
    for whole in (False, True):
        if whole:
            two._read_at = -float("inf")  # as REREAD_EVERY does
        one.ban(f"192.0.2.{10 + whole}", 600)
        one.sync()
        start = time.perf_counter()
        two.sync()
        found.append(time.perf_counter() - start)
        assert two.banned(f"192.0.2.{10 + whole}")
    for service in (one, two):
        service.close()
    store.close()
    return found[0], found[1]


def fill_store(uri: str, count: int) -> Any:
    """The store at ``uri`` holding ``count`` bans of an hour (a /24 each), open."""
    from flask_allow.bans import store_from_string
    from flask_allow.bans.ban import Ban, moment, network_of

    store = store_from_string(uri)
    now = time.time()
    for i in range(count):
        store.put(Ban(network_of(_net(i)), moment(now), moment(now + 3600), "", 0, "benchmark"))
    return store


def main() -> None:
    args = common.arguments(__doc__.splitlines()[0])
    rounds, batch, count = (3, 100, 1000) if args.quick else (40, 1000, 10_000)
    common.print_header(
        "Bans: request overhead and propagation",
        [
            f"{rounds} rounds of {batch} requests per app; {count:,} active bans; client {CLIENT} (not banned)",
            "request times are the process's CPU time (its sync thread's included): far less disturbed by a"
            " busy shared machine than the wall clock",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        memory = {"ALLOW_BAN_STORE": "memory", "ADDRESS_RESTRICTION": [{"DENY": "banned"}, *ten_rules()]}
        # the bans written to a store first, as another process would: the app reads them whole at
        # start and compiles one index (bans made in the app itself would be laid over it until a sync)
        stored = f"sqlite:///{tmp}/active.sqlite3"
        fill_store(stored, count).close()
        apps: dict[str, Flask] = {
            "10 rules": hello_app("plain", {"ADDRESS_RESTRICTION": ten_rules()}),
            f"banned first + {count:,} bans": hello_app(
                "bans", {**memory, "ALLOW_BAN_STORE": stored, "ALLOW_BANS": True}
            ),
            "banned first + auto-ban counting": hello_app(
                "auto", {**memory, "ALLOW_AUTOBAN": {"status": [200], "limit": 10**9}}
            ),
        }
        service = apps[f"banned first + {count:,} bans"].extensions["flask_allow"].bans
        assert service.snapshot.size == count and not service.snapshot.layers

        for name, app in apps.items():
            if app.test_client().get("/", environ_base={"REMOTE_ADDR": CLIENT}).status_code != 200:
                raise SystemExit(f"{name}: not 200")
        environ = {"REMOTE_ADDR": CLIENT}
        variants = {name: common.timed_gets(app, batch, environ, time.process_time) for name, app in apps.items()}
        for run in variants.values():
            run()
        found = common.interleave(variants, rounds)
        rows = []
        results: dict[str, Any] = {}
        for name, values in found.items():
            ratio, low, high = common.ratio(found, name, "10 rules")
            rows.append([name, statistics.median(values) * 1e6, f"{ratio:.3f}", common.spread(low, high)])
            results[name] = {"us": statistics.median(values) * 1e6, "ratio": ratio}
        common.table(["app", "µs per request", "÷ 10 rules", "range"], rows, "Request time with bans")
        for app in apps.values():
            app.extensions["flask_allow"].close()
        samples = 3 if args.quick else 10
        spread_rows = []
        sqlite = propagation(f"sqlite:///{tmp}/bans.sqlite3", tmp, samples)
        spread_rows.append(["SQLite (two apps, one file)", statistics.median(sqlite), max(sqlite)])
        if shutil.which("redis-server"):
            from redis_server import RedisServer  # tests/: a redis-server on a free port

            server = RedisServer()
            server.start()
            try:
                redis = propagation(server.url, tmp, samples)
            finally:
                server.stop()
            spread_rows.append(["Redis (two apps, one server)", statistics.median(redis), max(redis)])
        common.table(
            ["store", "median s", "max s"], spread_rows, "Propagation of a ban (ALLOW_BAN_SYNC_INTERVAL 1; bound 2 s)"
        )
        results["propagation"] = {row[0]: {"median": row[1], "max": row[2]} for row in spread_rows}
        many = 1000 if args.quick else 100_000
        sync_rows = [["SQLite", *sync_after_one_ban(f"sqlite:///{tmp}/many.sqlite3", many)]]
        if shutil.which("redis-server"):
            from redis_server import RedisServer

            server = RedisServer()
            server.start()
            try:
                sync_rows.append(["Redis", *sync_after_one_ban(server.url, many)])
            finally:
                server.stop()
        common.table(
            ["store", "s, changes read", "s, every ban read"],
            sync_rows,
            f"Another process's sync after one new ban among {many:,}",
        )
        results["sync_after_one_ban"] = {row[0]: {"changes": row[1], "whole": row[2]} for row in sync_rows}
        sizes = (200, 2000) if args.quick else (2000, 20_000)
        bulk_rows = []
        for size in sizes:
            looped, together, looped_stored, together_stored = bulk_bans(f"sqlite:///{tmp}/bulk-{size}.sqlite3", size)
            bulk_rows.append([f"{size:,}", looped, looped / size * 1e6, together, looped_stored, together_stored])
        growth = (bulk_rows[1][2] / bulk_rows[0][2]) if bulk_rows[0][2] else float("nan")
        common.table(
            ["bans", "s, ban() in a loop", "µs per ban", "s, ban_many()", "s in the store: loop", "ban_many()"],
            bulk_rows,
            f"Banning in bulk in one app (SQLite, sync running); µs per ban grows {growth:.2f}x for 10x the bans"
            " (O(n^2) would be 10x; goal <= 2x)",
        )
        results["bulk"] = {"rows": bulk_rows, "growth": growth}
    common.write_json(args.json, "bans", args, results)


def bulk_bans(uri: str, count: int) -> tuple[float, float, float, float]:
    """Seconds for ``count`` bans by ``ban()`` in a loop, and by one ``ban_many()`` (another app),
    each with its sync thread running, as in a real app; then the seconds until each is written
    to the store (in force in the other processes)."""
    from flask_allow import FlaskAllow

    found = []
    for way in ("loop", "many"):
        app = Flask(f"bulk-{way}")
        app.config.update(ALLOW_BANS=True, ALLOW_BAN_STORE=f"{uri}-{way}", ADDRESS_RESTRICTION=[{"ALLOW": "all"}])
        allow = FlaskAllow(app)
        networks = [_net(i) for i in range(count)]
        started = time.perf_counter()
        if way == "loop":
            for network in networks:
                allow.ban(network, ttl=0)
        else:
            allow.ban_many(networks, ttl=0)
        found.append(time.perf_counter() - started)
        assert len(allow.bans()) == count
        service = app.extensions["flask_allow"].bans
        while service._ops:  # written to the store by the sync thread: wait, then close
            time.sleep(0.05)
        found.append(time.perf_counter() - started)
        app.extensions["flask_allow"].close()
    return found[0], found[2], found[1], found[3]


def _net(i: int) -> str:
    return f"{10 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24"


if __name__ == "__main__":
    main()

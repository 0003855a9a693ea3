"""Bans in a SQLite file (``sqlite:///PATH``, the default): shared by every worker of one machine.

WAL mode, so readers (every worker's sync) never wait for the writer; a counter is added to in
one ``BEGIN IMMEDIATE`` transaction, so two workers never lose each other's counts. A connection
is opened per process and used under a lock. SQLite forbids carrying a connection across a fork:
``os.fork()`` waits for the lock and closes the connection first, so a child never inherits one
(each process opens its own when it needs it). A child made without ``os.fork()``'s handlers
keeps the connection it inherited unused and unclosed: closing it would undo, in the WAL index
the parent shares, what the parent was doing.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from ...live.locks import LEAF, ForkSafeLock
from ..ban import Ban, Network, network_of
from ..settings import AutobanPolicy
from . import BATCH, BanStore, StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS bans (network TEXT PRIMARY KEY, until REAL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (client TEXT PRIMARY KEY, counted INTEGER NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS offenses (client TEXT PRIMARY KEY, offenses INTEGER NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS counters_expires ON counters (expires);
CREATE INDEX IF NOT EXISTS offenses_expires ON offenses (expires);
INSERT OR IGNORE INTO meta VALUES ('version', 0);
CREATE TABLE IF NOT EXISTS changes (version INTEGER PRIMARY KEY, network TEXT NOT NULL, data TEXT);
INSERT OR IGNORE INTO meta SELECT 'trimmed', value FROM meta WHERE name = 'version';
"""
#: Changes kept for ``changes()`` (a process further behind reads every ban again).
KEEP = 10_000
#: Seconds a writer waits for another process's transaction.
BUSY_TIMEOUT = 5.0
#: Connections a child inherited without ``os.fork()``'s handlers: never used, never closed.
_INHERITED: list[sqlite3.Connection] = []


class SQLiteStore(BanStore):
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.path = uri[len("sqlite:///") - 1 :] if uri.startswith("sqlite:////") else uri[len("sqlite:///") :]
        self._lock = ForkSafeLock(LEAF, before_fork=self._drop)  # before a fork: no one's after it
        self._connection: sqlite3.Connection | None = None
        self._pid = 0

    def _drop(self) -> None:
        """Close this process's connection (the lock held); one inherited from the parent
        without ``os.fork()``'s handlers is kept unclosed (see the module's docstring)."""
        if self._connection is not None:
            if self._pid == os.getpid():
                self._connection.close()
            else:
                _INHERITED.append(self._connection)
        self._connection = None

    def _db(self) -> sqlite3.Connection:
        if self._connection is None or self._pid != os.getpid():
            self._drop()
            try:
                folder = os.path.dirname(os.path.abspath(self.path))
                os.makedirs(folder, exist_ok=True)
                connection = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
                )
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.executescript(SCHEMA)
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"cannot open {self.path}: {exc}") from exc
            self._connection, self._pid = connection, os.getpid()
        return self._connection

    def _run(self, work: Any) -> Any:
        with self._lock:
            try:
                return work(self._db())
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from exc

    def ping(self) -> None:
        self._run(lambda db: db.execute("SELECT 1").fetchone())

    def version(self) -> str:
        return str(self._run(lambda db: db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()[0]))

    @staticmethod
    def _bump(db: sqlite3.Connection, network: Network, ban: Ban | None) -> None:
        """A new version, and the change it is (in the caller's transaction)."""
        db.execute("UPDATE meta SET value = value + 1 WHERE name = 'version'")
        (version,) = db.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()
        data = None if ban is None else json.dumps(ban.to_dict())
        db.execute("INSERT OR REPLACE INTO changes VALUES (?, ?, ?)", (version, str(network), data))
        if version % 100 == 0:  # trimmed now and then, not at every change
            db.execute("DELETE FROM changes WHERE version <= ?", (version - KEEP,))
            db.execute("UPDATE meta SET value = MAX(value, ?) WHERE name = 'trimmed'", (version - KEEP,))

    def changes(self, since: str) -> list[tuple[Network, Ban | None]] | None:
        try:
            after = int(since)
        except ValueError:
            return None

        def work(db: sqlite3.Connection) -> list[tuple[str, str | None]] | None:
            db.execute("BEGIN")  # one snapshot of the file (WAL) for the three reads
            try:
                meta = dict(db.execute("SELECT name, value FROM meta WHERE name IN ('version', 'trimmed')").fetchall())
                if not meta.get("trimmed", after + 1) <= after <= meta.get("version", -1):
                    return None  # trimmed away, or another file's version
                rows = db.execute(
                    "SELECT network, data FROM changes WHERE version > ? AND version <= ? ORDER BY version",
                    (after, meta["version"]),
                ).fetchall()
                if len(rows) != meta["version"] - after:  # a version without its change: a writer
                    return None  # that keeps no log (an older flask_allow on the same file)
                return [(network, data) for network, data in rows]
            finally:
                db.execute("COMMIT")

        rows = self._run(work)
        if rows is None:
            return None
        return [
            (network_of(network), None if data is None else Ban.from_dict(json.loads(data))) for network, data in rows
        ]

    def put(self, ban: Ban) -> None:
        self.put_many([ban])

    def put_many(self, bans: Sequence[Ban]) -> None:
        """One transaction per ``BATCH`` bans (the file's write lock is never held long)."""
        for at in range(0, len(bans), BATCH):
            chunk = bans[at : at + BATCH]

            def work(db: sqlite3.Connection, chunk: Sequence[Ban] = chunk) -> None:
                with db:
                    db.execute("BEGIN IMMEDIATE")
                    for ban in chunk:
                        db.execute(
                            "INSERT OR REPLACE INTO bans VALUES (?, ?, ?)",
                            (str(ban.network), ban.until_ts, json.dumps(ban.to_dict())),
                        )
                        self._bump(db, ban.network, ban)

            self._run(work)

    def remove(self, network: Network, now: float) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            with db:
                db.execute("BEGIN IMMEDIATE")
                found = db.execute(
                    "DELETE FROM bans WHERE network = ? AND (until IS NULL OR until > ?)", (str(network), now)
                ).rowcount
                db.execute("DELETE FROM bans WHERE network = ?", (str(network),))
                self._bump(db, network, None)
                return found > 0

        return bool(self._run(work))

    def active(self, now: float) -> list[Ban]:
        rows = self._run(
            lambda db: db.execute("SELECT data FROM bans WHERE until IS NULL OR until > ?", (now,)).fetchall()
        )
        return [Ban.from_dict(json.loads(data)) for (data,) in rows]

    def offend(self, client: str, policy: AutobanPolicy, now: float) -> int:
        def work(db: sqlite3.Connection) -> int:
            with db:
                db.execute("BEGIN IMMEDIATE")
                return self._offend(db, client, policy, now)

        return int(self._run(work))

    @staticmethod
    def _offend(db: sqlite3.Connection, client: str, policy: AutobanPolicy, now: float) -> int:
        """Raise the client's count of bans (in the caller's transaction)."""
        row = db.execute("SELECT offenses, expires FROM offenses WHERE client = ?", (client,)).fetchone()
        offenses = 1 if row is None or row[1] <= now else int(row[0]) + 1
        forget = now + policy.forget(policy.ban_ttl(offenses))
        db.execute("INSERT OR REPLACE INTO offenses VALUES (?, ?, ?)", (client, offenses, forget))
        return offenses

    def count(self, counts: Mapping[str, int], policy: AutobanPolicy, now: float) -> dict[str, tuple[int, int]]:
        def work(db: sqlite3.Connection) -> dict[str, tuple[int, int]]:
            reached: dict[str, tuple[int, int]] = {}
            with db:
                db.execute("BEGIN IMMEDIATE")
                for client, weight in counts.items():
                    row = db.execute("SELECT counted, expires FROM counters WHERE client = ?", (client,)).fetchone()
                    counted, expires = (0, now + policy.window) if row is None or row[1] <= now else row
                    counted += weight
                    if counted < policy.limit:
                        db.execute("INSERT OR REPLACE INTO counters VALUES (?, ?, ?)", (client, counted, expires))
                        continue
                    db.execute("DELETE FROM counters WHERE client = ?", (client,))
                    reached[client] = (counted, self._offend(db, client, policy, now))
                db.execute("DELETE FROM counters WHERE expires <= ?", (now,))
                db.execute("DELETE FROM offenses WHERE expires <= ?", (now,))
            return reached

        return dict(self._run(work))

    def close(self) -> None:
        with self._lock:
            self._drop()

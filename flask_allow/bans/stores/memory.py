"""Bans kept in this process only (``ALLOW_BAN_STORE = "memory"``): tests, one-process servers."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping

from ...live.locks import LEAF, ForkSafeLock
from ..ban import Ban, Network
from ..settings import AutobanPolicy
from . import BanStore

#: Changes kept for ``changes()``.
KEEP = 10_000


class MemoryStore(BanStore):
    """Dicts under a lock. Other processes (workers, the CLI) never see these bans."""

    uri = "memory"

    def __init__(self) -> None:
        self._lock = ForkSafeLock(LEAF)
        self._bans: dict[Network, Ban] = {}
        self._counters: dict[str, tuple[int, float]] = {}  # client -> (count, expires)
        self._offenses: dict[str, tuple[int, float]] = {}
        self._versions = itertools.count(1)
        self._version = 0
        #: (version, network, ban or None) of the last ``KEEP`` changes, for ``changes()``.
        self._log: deque[tuple[int, Network, Ban | None]] = deque()
        self._trimmed = 0  # the last version dropped from the log

    def ping(self) -> None:
        return None

    def version(self) -> str:
        return str(self._version)

    def put(self, ban: Ban) -> None:
        with self._lock:
            self._bans[ban.network] = ban
            self._changed(ban.network, ban)

    def remove(self, network: Network, now: float) -> bool:
        with self._lock:
            self._changed(network, None)
            found = self._bans.pop(network, None)
            return found is not None and found.active(now)

    def _changed(self, network: Network, ban: Ban | None) -> None:
        self._version = next(self._versions)
        self._log.append((self._version, network, ban))
        if len(self._log) > KEEP:
            self._trimmed = self._log.popleft()[0]

    def changes(self, since: str) -> list[tuple[Network, Ban | None]] | None:
        with self._lock:
            try:
                after = int(since)
            except ValueError:
                return None
            if not self._trimmed <= after <= self._version:
                return None
            found = []
            for version, network, ban in reversed(self._log):  # the newest first: O(the changes since)
                if version <= after:
                    break
                found.append((network, ban))
            found.reverse()
            return found

    def active(self, now: float) -> list[Ban]:
        with self._lock:
            for network in [n for n, ban in self._bans.items() if not ban.active(now)]:
                del self._bans[network]
            return list(self._bans.values())

    def offend(self, client: str, policy: AutobanPolicy, now: float) -> int:
        with self._lock:
            return self._offend(client, policy, now)

    def _offend(self, client: str, policy: AutobanPolicy, now: float) -> int:
        offenses, forget = self._offenses.get(client, (0, 0.0))
        offenses = 1 if forget <= now else offenses + 1
        self._offenses[client] = (offenses, now + policy.forget(policy.ban_ttl(offenses)))
        return offenses

    def count(self, counts: Mapping[str, int], policy: AutobanPolicy, now: float) -> dict[str, tuple[int, int]]:
        reached: dict[str, tuple[int, int]] = {}
        with self._lock:
            for client, weight in counts.items():
                counted, expires = self._counters.get(client, (0, 0.0))
                if expires <= now:
                    counted, expires = 0, now + policy.window
                counted += weight
                if counted < policy.limit:
                    self._counters[client] = (counted, expires)
                    continue
                self._counters.pop(client, None)
                reached[client] = (counted, self._offend(client, policy, now))
            if len(self._counters) + len(self._offenses) > 1024:  # bounded: drop what has expired
                for client in [c for c, (_, e) in self._counters.items() if e <= now]:
                    del self._counters[client]
                for client in [c for c, (_, e) in self._offenses.items() if e <= now]:
                    del self._offenses[client]
        return reached

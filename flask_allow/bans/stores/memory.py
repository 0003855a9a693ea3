"""Bans kept in this process only (``ALLOW_BAN_STORE = "memory"``): tests, one-process servers."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping

from ..ban import Ban, Network
from ..settings import AutobanPolicy
from . import BanStore


class MemoryStore(BanStore):
    """Dicts under a lock. Other processes (workers, the CLI) never see these bans."""

    uri = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bans: dict[Network, Ban] = {}
        self._counters: dict[str, tuple[int, float]] = {}  # client -> (count, expires)
        self._offenses: dict[str, tuple[int, float]] = {}
        self._versions = itertools.count(1)
        self._version = 0

    def ping(self) -> None:
        return None

    def version(self) -> str:
        return str(self._version)

    def put(self, ban: Ban) -> None:
        with self._lock:
            self._bans[ban.network] = ban
            self._version = next(self._versions)

    def remove(self, network: Network, now: float) -> bool:
        with self._lock:
            self._version = next(self._versions)
            found = self._bans.pop(network, None)
            return found is not None and found.active(now)

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

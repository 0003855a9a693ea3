"""For random streams of requests, strikes and clock steps, the bans equal a naive model of the policy."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from flask_allow.bans import BanService, BanSettings
from flask_allow.bans.stores.memory import MemoryStore

CLIENTS = [(4, 0xC6336400 + i) for i in range(4)] + [(6, (0x20010DB8 << 96) | (i << 64) | 7) for i in range(2)]
POLICY = {"status": [404], "limit": 4, "window": 10, "ttl": 5, "factor": 2, "max_ttl": 40, "prefix_v6": 64}


class Model:
    """The policy as the docs state it, written the plain way."""

    def __init__(self) -> None:
        self.counters: dict[tuple[int, int], tuple[int, float]] = {}  # client -> (counted, window ends)
        self.offenses: dict[tuple[int, int], tuple[int, float]] = {}  # client -> (bans, forgotten at)
        self.until: dict[tuple[int, int], float] = {}
        self.pending: dict[tuple[int, int], int] = {}

    def net(self, key: tuple[int, int]) -> tuple[int, int]:
        return key if key[0] == 4 else (6, key[1] >> 64)

    def count(self, key: tuple[int, int], weight: int) -> None:
        """Counts are added up at each sync (one store round trip per sync, never per request)."""
        client = self.net(key)
        self.pending[client] = self.pending.get(client, 0) + weight

    def sync(self, now: float) -> None:
        for client, weight in self.pending.items():
            self.add(client, weight, now)
        self.pending = {}

    def add(self, client: tuple[int, int], weight: int, now: float) -> None:
        counted, ends = self.counters.get(client, (0, 0.0))
        if ends <= now:
            counted, ends = 0, now + POLICY["window"]
        counted += weight
        if counted < POLICY["limit"]:
            self.counters[client] = (counted, ends)
            return
        self.counters.pop(client, None)
        bans, forgotten = self.offenses.get(client, (0, 0.0))
        bans = 1 if forgotten <= now else bans + 1
        ttl = min(POLICY["ttl"] * POLICY["factor"] ** (bans - 1), POLICY["max_ttl"])
        self.offenses[client] = (bans, now + ttl + POLICY["max_ttl"])
        self.until[client] = datetime.fromtimestamp(now + ttl, timezone.utc).timestamp()  # a Ban's end: to the µs

    def banned(self, key: tuple[int, int], now: float) -> bool:
        return self.until.get(self.net(key), -math.inf) > now


step = st.one_of(
    st.tuples(st.just("count"), st.sampled_from(range(len(CLIENTS))), st.integers(1, 3)),
    st.tuples(st.just("clock"), st.floats(0.0, 12.0, allow_nan=False), st.just(0)),
)


@settings(max_examples=60, deadline=None)
@example([[("clock", 1.76171875, 0), *[("count", 0, 1)] * 4, ("clock", 5.0, 0)]])  # an end between two µs
@given(st.lists(st.lists(step, max_size=6), max_size=12))
def test_bans_follow_the_model(rounds: list[list[Any]]) -> None:
    now = [1000.0]
    errors: list[Any] = []
    ban_settings = BanSettings.from_config({"ALLOW_AUTOBAN": POLICY, "ALLOW_BAN_EXEMPT": []}, errors)
    assert not errors
    service = BanService(ban_settings, MemoryStore(), logging.getLogger("test"), clock=lambda: now[0])
    service.start()
    service.task.stop()
    model = Model()
    try:
        for events in rounds:
            for kind, a, b in events:
                if kind == "count":
                    service.count(CLIENTS[a], b)
                    model.count(CLIENTS[a], b)
                else:
                    service.sync()  # a sync before the clock moves: counted when they happened
                    model.sync(now[0])
                    now[0] += a
                for key in CLIENTS:
                    assert service.snapshot.banned_key(key) == model.banned(key, now[0]) or kind == "count"
            service.sync()
            model.sync(now[0])
            for key in CLIENTS:
                assert service.snapshot.banned_key(key) == model.banned(key, now[0]), (key, now[0])
            active = {str(b.network) for b in service.bans()}
            assert len(active) == sum(1 for u in model.until.values() if u > now[0])
    finally:
        service.close()

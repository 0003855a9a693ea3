"""Bans made in this process are laid over the index in layers: right at every step, and cheap in bulk.

``ban()`` and ``unban()`` take effect at once without compiling the whole index again. For random
streams of bans, re-bans, unbans and clock steps (no sync in between), the process's answers equal
a plain dict of the bans; a loop of bans compiles O(n log n) bans in all, not O(n^2); and the sync
task compiles the whole index no more often than its spacing allows, however fast bans arrive.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_allow.bans import BanService, BanSettings
from flask_allow.bans import service as service_module
from flask_allow.bans import snapshot as snapshot_module
from flask_allow.bans.ban import moment
from flask_allow.bans.stores.memory import MemoryStore

NETWORKS = ["198.51.100.1", "198.51.100.0/24", "198.51.100.0/25", "203.0.113.7", "2001:db8::/64", "2001:db8::1"]
PROBES = ["198.51.100.1", "198.51.100.200", "198.51.100.9", "203.0.113.7", "2001:db8::1", "2001:db8::2"]

step = st.one_of(
    st.tuples(st.just("ban"), st.integers(0, len(NETWORKS) - 1), st.sampled_from([0, 2, 5, 30])),
    st.tuples(st.just("unban"), st.integers(0, len(NETWORKS) - 1), st.just(0)),
    st.tuples(st.just("clock"), st.just(0), st.sampled_from([1, 3, 10])),
    st.tuples(st.just("sync"), st.just(0), st.just(0)),
)


def service_with(clock: Any, **config: Any) -> BanService:
    errors: list[Any] = []
    settings_ = BanSettings.from_config({"ALLOW_BANS": True, "ALLOW_BAN_EXEMPT": [], **config}, errors)
    assert not errors
    return BanService(settings_, MemoryStore(), logging.getLogger("test"), clock=clock)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(step, max_size=40))
def test_the_layers_equal_a_dict_of_bans(steps: list[Any]) -> None:
    now = [1_000_000.0]
    service = service_with(lambda: now[0])
    service.sync()
    model: dict[str, float] = {}  # network -> until (inf: no end); the newest ban of a network wins
    try:
        for kind, which, value in steps:
            network = str(ipaddress.ip_network(NETWORKS[which]))
            if kind == "ban":
                service.ban(network, value)
                model[network] = math.inf if value == 0 else moment(now[0] + value).timestamp()
            elif kind == "unban":
                was = model.pop(network, -math.inf) > now[0]
                assert service.unban(network) == was
            elif kind == "clock":
                now[0] += value
            else:
                service.sync()
            active = {n: u for n, u in model.items() if u > now[0]}
            assert sorted(str(b.network) for b in service.bans()) == sorted(active)
            for probe in PROBES:
                address = ipaddress.ip_address(probe)
                expected = any(address in ipaddress.ip_network(n) for n in active)
                assert service.banned(probe) == expected, (probe, active)
            if service.snapshot.earliest > now[0]:  # else counted until compiled again
                assert service.snapshot.size == len(active)
    finally:
        service.task.stop()


def test_a_loop_of_bans_compiles_n_log_n_bans_not_n_squared(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = [0]
    real = snapshot_module.Compiled.__init__

    def counting(self: Any, bans: Any, exempt: Any) -> None:
        compiled[0] += len(bans)
        real(self, bans, exempt)

    monkeypatch.setattr(snapshot_module.Compiled, "__init__", counting)
    service = service_with(lambda: 1_000_000.0)
    count = 3000
    for i in range(count):
        service.ban(f"10.{i >> 8}.{i & 255}.0/24", 0)
    snapshot = service.snapshot
    assert compiled[0] <= 2 * count * math.log2(count)  # one index of them all each time: 4.5 million
    assert len(snapshot.layers) <= math.log2(count) + 1
    assert snapshot.size == count and len(service.bans()) == count
    assert all(service.banned(f"10.{i >> 8}.{i & 255}.77") for i in range(count))
    assert not service.banned("10.200.0.1")
    assert service.unban("10.3.4.0/24") and not service.banned("10.3.4.1") and service.banned("10.3.5.1")
    service.task.stop()


def test_ban_many_is_one_change_and_all_or_none() -> None:
    service = service_with(lambda: 1_000_000.0, ALLOW_BAN_EXEMPT=["192.0.2.0/24"])
    made = service.ban_many(["198.51.100.1", "2001:db8::/64", "198.51.100.1"], 60, "list")
    assert [str(b.network) for b in made] == ["198.51.100.1/32", "2001:db8::/64", "198.51.100.1/32"]
    assert len(service.snapshot.layers) == 1 and service.snapshot.size == 2
    with pytest.raises(ValueError, match="exempt"):
        service.ban_many(["203.0.113.1", "192.0.2.9"], 60)
    with pytest.raises(ValueError):
        service.ban_many(["203.0.113.1", "not an address"], 60)
    assert not service.banned("203.0.113.1") and service.banned("2001:db8::5")
    service.task.stop()


def test_a_shorter_ban_replaces_a_longer_one_at_once() -> None:
    now = [1_000_000.0]
    service = service_with(lambda: now[0])
    service.ban("198.51.100.1", 3600)
    service.sync()  # now in the compiled index
    assert service.snapshot.compiled.ban_for(ipaddress.ip_network("198.51.100.1")) is not None
    service.ban("198.51.100.1", 5, "shorter")
    (ban,) = service.bans()
    assert ban.reason == "shorter"
    now[0] += 6
    assert not service.banned("198.51.100.1")
    service.task.stop()


def test_a_stream_of_bans_is_not_compiled_whole_at_every_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "OVERLAY_MAX", 10)
    service = service_with(lambda: 1_000_000.0)
    service.sync()
    monkeypatch.setattr(service_module, "COMPILE_SPACING", 1e9)  # after the next whole compile: never again
    for i in range(50):
        service.ban(f"10.0.{i}.0/24", 0)
    service.sync()  # compiled whole: more than OVERLAY_MAX changed
    compiled = service.snapshot.compiled
    assert len(compiled.bans) == 50 and not service.snapshot.layers
    for i in range(50, 100):
        service.ban(f"10.0.{i}.0/24", 0)
        service.sync()
    assert service.snapshot.compiled is compiled  # laid over, the spacing not yet over
    assert all(service.banned(f"10.0.{i}.1") for i in range(100)) and service.snapshot.size == 100
    monkeypatch.setattr(service, "_compile_next", -math.inf)
    service.sync()
    assert len(service.snapshot.compiled.bans) == 100 and not service.snapshot.layers
    service.task.stop()

"""The DNS caches: bounded LRU with expiry, single-flight loading, and the failure-log limiter."""

from __future__ import annotations

import ipaddress
import threading

import pytest

from flask_allow.dns import DNSSettings
from flask_allow.dns.cache import FailureLog, TTLCache


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_of_100000_distinct_clients_stays_within_the_bound() -> None:
    size = DNSSettings.from_config({"ALLOW_DNS_HOSTS_FILE": None}).cache_size  # the default, 10,000
    cache: TTLCache[tuple[int, int], str] = TTLCache(size)
    base = int(ipaddress.IPv6Address("2001:db8::"))
    largest = 0
    for i in range(100_000):
        key = (6, base + i * 0x10000)
        assert cache.get_or_load(key, lambda: ("no record", 60.0), wait=1.0) == "no record"
        largest = max(largest, len(cache))
    assert largest == size == len(cache)
    assert cache.loads == 100_000
    assert cache.get((6, base + 99_999 * 0x10000)) == "no record"  # the most recent are kept
    assert cache.get((6, base)) is None  # the oldest went first


def test_least_recently_used_goes_first() -> None:
    cache: TTLCache[str, int] = TTLCache(2)
    cache.get_or_load("a", lambda: (1, 60.0), 1.0)
    cache.get_or_load("b", lambda: (2, 60.0), 1.0)
    assert cache.get("a") == 1  # "a" is now more recent than "b"
    cache.get_or_load("c", lambda: (3, 60.0), 1.0)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3


def test_values_expire_and_are_loaded_again() -> None:
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(10, clock=clock)
    calls = []

    def load() -> tuple[int, float]:
        calls.append(clock.now)
        return len(calls), 30.0

    assert cache.get_or_load("k", load, 1.0) == 1
    clock.now += 29.9
    assert cache.get_or_load("k", load, 1.0) == 1
    clock.now += 0.2
    assert cache.get("k") is None
    assert cache.get_or_load("k", load, 1.0) == 2
    assert len(calls) == 2


def test_a_value_with_nothing_to_keep_is_not_kept() -> None:
    cache: TTLCache[str, str] = TTLCache(10)
    assert cache.get_or_load("k", lambda: ("cut short", 0.0), 1.0) == "cut short"
    assert len(cache) == 0 and cache.get("k") is None


def test_concurrent_loads_of_one_key_are_one_load() -> None:
    cache: TTLCache[str, str] = TTLCache(10)
    release = threading.Event()
    started = threading.Event()
    loads = []

    def load() -> tuple[str, float]:
        loads.append(1)
        started.set()
        release.wait(5.0)
        return "answer", 60.0

    results: list[str | None] = []
    leader = threading.Thread(target=lambda: results.append(cache.get_or_load("k", load, 5.0)))
    leader.start()
    assert started.wait(5.0)
    followers = [threading.Thread(target=lambda: results.append(cache.get_or_load("k", load, 5.0))) for _ in range(20)]
    for thread in followers:
        thread.start()
    release.set()
    for thread in [leader, *followers]:
        thread.join()
    assert loads == [1] and results == ["answer"] * 21


def test_a_waiter_gives_up_after_its_wait_and_a_failed_load_is_not_kept() -> None:
    cache: TTLCache[str, str] = TTLCache(10)
    release = threading.Event()
    started = threading.Event()

    def slow() -> tuple[str, float]:
        started.set()
        release.wait(5.0)
        raise RuntimeError("boom")

    errors: list[BaseException] = []

    def lead() -> None:
        try:
            cache.get_or_load("k", slow, 5.0)
        except RuntimeError as exc:
            errors.append(exc)

    leader = threading.Thread(target=lead)
    leader.start()
    assert started.wait(5.0)
    assert cache.get_or_load("k", slow, 0.05) is None  # waited, gave up
    release.set()
    leader.join()
    assert [str(e) for e in errors] == ["boom"]
    assert cache.get_or_load("k", lambda: ("fine", 60.0), 1.0) == "fine"


def test_the_cache_needs_room() -> None:
    with pytest.raises(ValueError):
        TTLCache(0)


def test_failure_log_once_per_name_per_window_and_bounded_bursts() -> None:
    clock = Clock()
    log = FailureLog(window=60.0, maxsize=100, burst=3, clock=clock)
    assert log.should_log("a")
    assert not log.should_log("a")  # the same name within its window
    assert log.should_log("b") and log.should_log("c")
    assert not log.should_log("d") and not log.should_log("e")  # a flood of names: left out, counted
    assert log.take_suppressed() == 2 and log.take_suppressed() == 0
    clock.now += 60.0
    assert log.should_log("a") and log.should_log("d")
    assert not log.should_log("a")

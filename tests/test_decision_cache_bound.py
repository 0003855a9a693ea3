"""The decision cache is bounded in bytes: crafted address texts cannot fill memory.

65,536 texts ``fe80::1%<4 KiB zone>`` once held 259 MiB, the cache being keyed by the text the
client (or its proxy header) chose. Texts longer than any real address with an interface zone
are decided, correctly, but not cached.
"""

from __future__ import annotations

import sys

from conftest import MakeApp
from flask import Flask

from flask_allow import Client, Matcher, hookimpl
from flask_allow.engine import CACHED_TEXT_MAX, Engine


class EvenMatcher(Matcher):
    """``even:x``: a dynamic rule (asked per client, its answers cacheable) matching even last bytes."""

    prefix = "even"

    def matches(self, client: Client) -> bool:
        return client.key is not None and client.key[1] % 2 == 0


class EvenPlugin:
    @hookimpl
    def flask_allow_matchers(self) -> list[type[Matcher]]:
        return [EvenMatcher]


def engine_of(app: Flask) -> Engine:
    return app.extensions["flask_allow"].engine  # type: ignore[no-any-return]


def test_crafted_zone_texts_are_decided_but_not_cached(make_app: MakeApp) -> None:
    app = make_app(
        {"ADDRESS_RESTRICTION": [{"DENY": ["even:x", "2001:db8::/32"]}], "ALLOW_LOAD_ENTRY_POINTS": False},
        plugins=[EvenPlugin()],
    )
    engine = engine_of(app)
    check = app.extensions["flask_allow"].extension.check
    for i in range(500):
        address = f"fe80::{2 * i + 1:x}%{'z' * 4096}{i}"
        decision = check(address, app=app)
        assert decision.allowed  # odd, not in 2001:db8::/32: allowed, as its normalised address is
        assert engine.lookup(address) is None
    assert not check("fe80::2%" + "z" * 4096, app=app).allowed
    assert len(engine._cache) == 0

    for address in ("fe80::3%eth0", "192.0.2.1", "2001:db8::1", "fe80::1234:5678:9abc:def0%enp0s31f6abcdef"):
        check(address, app=app)
    assert len(engine._cache) == 4  # real addresses, zones included, are cached
    held = sum(sys.getsizeof(key) for key in engine._cache)
    assert held <= 4 * sys.getsizeof("x" * CACHED_TEXT_MAX)


def test_the_longest_real_address_text_fits() -> None:
    longest = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%" + "i" * 15  # IFNAMSIZ - 1 on Linux
    assert len(longest) <= CACHED_TEXT_MAX

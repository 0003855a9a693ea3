"""The ``ALLOW_BAN*`` settings of one app, validated at start-up (every bad value a ``ConfigError``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .. import config as keys
from ..errors import ConfigError

#: ``ALLOW_AUTOBAN`` fields and their defaults (fail2ban's maxretry, findtime, bantime,
#: bantime.factor, bantime.maxtime; and the IPv6 prefix one host is counted by).
AUTOBAN_DEFAULTS: dict[str, Any] = {
    "status": (401, 403, 404),
    "limit": 20,
    "window": 60,
    "ttl": 600,
    "factor": 2,
    "max_ttl": 86400,
    "prefix_v6": 64,
}


@dataclass(frozen=True)
class AutobanPolicy:
    """When a client is banned by itself: ``limit`` counted responses and strikes within ``window``
    seconds ban it for ``ttl`` seconds, times ``factor`` for each earlier ban, at most ``max_ttl``."""

    status: frozenset[int]
    limit: int
    window: float
    ttl: float
    factor: float
    max_ttl: float
    prefix_v6: int

    def ban_ttl(self, offenses: int) -> float:
        """The ttl of a client's ``offenses``-th ban (1 for the first): fail2ban's bantime.increment."""
        return min(self.ttl * self.factor ** min(offenses - 1, 1000), self.max_ttl)

    def forget(self, ttl: float) -> float:
        """Seconds a client's count of bans is kept after a ban of ``ttl``: until ``max_ttl`` after it ends."""
        return ttl + self.max_ttl

    @classmethod
    def from_value(cls, value: Any) -> AutobanPolicy:
        key = keys.ALLOW_AUTOBAN
        if not isinstance(value, dict):
            raise ConfigError(
                "must be a dict (status, limit, window, ttl, factor, max_ttl, prefix_v6) or None", key, value
            )
        unknown = sorted(str(k) for k in value if k not in AUTOBAN_DEFAULTS)
        if unknown:
            raise ConfigError(
                f"unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(AUTOBAN_DEFAULTS)}", key
            )
        merged = {**AUTOBAN_DEFAULTS, **value}
        status = merged["status"]
        if isinstance(status, int) and not isinstance(status, bool):
            status = (status,)
        if (
            not isinstance(status, (list, tuple, set, frozenset))
            or not status
            or not all(isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in status)
        ):
            raise ConfigError("must be a list of HTTP statuses (100-599)", f"{key}['status']", merged["status"])
        limit = merged["limit"]
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ConfigError("must be a whole number >= 1", f"{key}['limit']", limit)
        window = _positive(merged, "window")
        ttl = _positive(merged, "ttl")
        factor = merged["factor"]
        if not _number(factor) or factor < 1 or factor > 1000:
            raise ConfigError("must be a number from 1 to 1000", f"{key}['factor']", factor)
        max_ttl = _positive(merged, "max_ttl")
        if max_ttl < ttl:
            raise ConfigError(f"must not be below ttl ({ttl:g})", f"{key}['max_ttl']", merged["max_ttl"])
        prefix = merged["prefix_v6"]
        if not isinstance(prefix, int) or isinstance(prefix, bool) or not 1 <= prefix <= 128:
            raise ConfigError("must be a prefix length from 1 to 128", f"{key}['prefix_v6']", prefix)
        return cls(frozenset(status), limit, window, ttl, float(factor), max_ttl, prefix)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(merged: dict[str, Any], name: str) -> float:
    value = merged[name]
    if not _number(value) or value <= 0 or value > 10**9:
        raise ConfigError("must be a number of seconds > 0", f"{keys.ALLOW_AUTOBAN}[{name!r}]", value)
    return float(value)


@dataclass(frozen=True)
class BanSettings:
    """What the bans of one app are kept and decided with; equal settings share one ban service."""

    enabled: bool
    autoban: AutobanPolicy | None
    ttl: float
    exempt: tuple[str, ...]
    store: str | None
    store_required: bool
    sync_interval: float
    max_tracked: int

    @property
    def in_use(self) -> bool:
        """Whether ``{"DENY": "banned"}`` is implied (``ALLOW_BANS`` or ``ALLOW_AUTOBAN`` set)."""
        return self.enabled or self.autoban is not None

    @property
    def implied_by(self) -> str:
        """The key that made bans be in use, for the implied rule's location."""
        return keys.ALLOW_BANS if self.enabled else keys.ALLOW_AUTOBAN

    @classmethod
    def from_config(cls, config: Any, errors: list[ConfigError]) -> BanSettings:
        """Validate every ``ALLOW_BAN*`` key; add a ``ConfigError`` to ``errors`` for each bad one
        (its default is used instead, so that every mistake is reported at once)."""

        def attempt(check: Any, key: str) -> Any:
            try:
                return check(keys.get(config, key))
            except ConfigError as exc:
                errors.append(exc)
                return check(keys.DEFAULTS[key])

        return cls(
            enabled=attempt(lambda v: _flag(v, keys.ALLOW_BANS), keys.ALLOW_BANS),
            autoban=attempt(lambda v: None if v is None else AutobanPolicy.from_value(v), keys.ALLOW_AUTOBAN),
            ttl=attempt(lambda v: _seconds(v, keys.ALLOW_BAN_TTL, zero_ok=True), keys.ALLOW_BAN_TTL),
            exempt=attempt(_exempt, keys.ALLOW_BAN_EXEMPT),
            store=attempt(_store, keys.ALLOW_BAN_STORE),
            store_required=attempt(lambda v: _flag(v, keys.ALLOW_BAN_STORE_REQUIRED), keys.ALLOW_BAN_STORE_REQUIRED),
            sync_interval=attempt(
                lambda v: _seconds(v, keys.ALLOW_BAN_SYNC_INTERVAL, zero_ok=False), keys.ALLOW_BAN_SYNC_INTERVAL
            ),
            max_tracked=attempt(_tracked, keys.ALLOW_BAN_MAX_TRACKED),
        )


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError("must be True or False", key, value)
    return value


def _seconds(value: Any, key: str, zero_ok: bool) -> float:
    if not _number(value) or value < 0 or (value == 0 and not zero_ok) or value > 10**9:
        raise ConfigError(f"must be a number of seconds {'>= 0' if zero_ok else '> 0'}", key, value)
    return float(value)


def _tracked(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError("must be a whole number >= 1", keys.ALLOW_BAN_MAX_TRACKED, value)
    return value


def _exempt(value: Any) -> tuple[str, ...]:
    from ..addresses import parse_span

    key = keys.ALLOW_BAN_EXEMPT
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError("must be a list of addresses, networks or 'localhost'", key, value)
    for i, entry in enumerate(value):
        if entry.strip().lower() == "localhost":
            continue
        try:
            parse_span(entry.strip())
        except ValueError as exc:
            raise ConfigError(str(exc), f"{key}[{i}]", entry) from None
    return tuple(v.strip() for v in value)


def _store(value: Any) -> str | None:
    from .stores import SCHEMES, scheme_of

    if value is None:
        return None
    if not isinstance(value, str) or scheme_of(value) not in SCHEMES:
        raise ConfigError(
            "must be 'memory', 'sqlite:///PATH', 'redis://HOST:PORT/DB' or 'rediss://...'", keys.ALLOW_BAN_STORE, value
        )
    if value.startswith("sqlite:") and not value.startswith("sqlite:///"):
        raise ConfigError("a SQLite store is 'sqlite:///PATH' (three slashes)", keys.ALLOW_BAN_STORE, value)
    return value

"""One ban: a network, since and until when, and why."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Ban:
    """A banned network (a single address is its /32 or /128).

    ``since`` and ``until`` are aware UTC datetimes; ``until`` None is a ban without expiry.
    ``strikes`` is what was counted against the client when it was banned (0 for a ban by hand);
    ``source`` says who made it: ``"api"``, ``"cli"``, ``"autoban"``.
    """

    network: Network
    since: datetime
    until: datetime | None
    reason: str = ""
    strikes: int = 0
    source: str = "api"

    def active(self, now: float) -> bool:
        """Whether the ban is in force at ``now`` (seconds since the epoch)."""
        return self.until is None or self.until.timestamp() > now

    @property
    def until_ts(self) -> float | None:
        return None if self.until is None else self.until.timestamp()

    def describe(self) -> str:
        """``banned 203.0.113.0/24 until 2026-01-01T12:00:00Z (reason)``, for reasons and logs."""
        until = "unbanned" if self.until is None else _iso(self.until)
        why = f" ({self.reason})" if self.reason else ""
        return f"banned {self.network} until {until}{why}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times as epoch seconds), as the stores keep it."""
        return {
            "network": str(self.network),
            "since": self.since.timestamp(),
            "until": self.until_ts,
            "reason": self.reason,
            "strikes": self.strikes,
            "source": self.source,
        }

    def to_json(self) -> dict[str, Any]:
        """What ``flask allow bans --json`` prints (times as ISO 8601 UTC)."""
        return {**self.to_dict(), "since": _iso(self.since), "until": None if self.until is None else _iso(self.until)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ban:
        until = data.get("until")
        return cls(
            network=network_of(str(data["network"])),
            since=moment(float(data["since"])),
            until=None if until is None else moment(float(until)),
            reason=str(data.get("reason") or ""),
            strikes=int(data.get("strikes") or 0),
            source=str(data.get("source") or ""),
        )

    def with_until(self, until: float | None) -> Ban:
        return replace(self, until=None if until is None else moment(until))


def moment(ts: float) -> datetime:
    """An aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(ts, timezone.utc)


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def network_of(value: Any) -> Network:
    """An address or network (text or ``ipaddress`` object) as a network; IPv4-mapped IPv6 as IPv4.

    Raises ``ValueError`` for anything else, and for a network with host bits set.
    """
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        value = str(value)
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        network: Network = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP address or network: {exc}") from None
    else:
        raise ValueError(f"{value!r} is not an IP address or network")
    if isinstance(network, ipaddress.IPv6Network):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None and network.prefixlen >= 96:
            network = ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


def ttl_seconds(ttl: float | timedelta) -> float:
    """A ttl as seconds (a number or a ``timedelta``); ``ValueError`` when negative or not a number."""
    if isinstance(ttl, timedelta):
        ttl = ttl.total_seconds()
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl != ttl or ttl < 0 or ttl > 10**10:
        raise ValueError(f"ttl must be seconds >= 0 or a timedelta, not {ttl!r}")
    return float(ttl)

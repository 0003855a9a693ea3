"""The ``ALLOW_DNS_*`` settings of one app, validated at start-up (a ``ConfigError`` names the key)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from socket import AF_INET, AF_INET6, inet_pton
from typing import Any

from .. import config as keys
from ..errors import ConfigError

#: How long a hosts-file answer is kept before the file is looked at again (bounded by the TTL keys).
HOSTS_TTL = 60.0


@dataclass(frozen=True)
class DNSSettings:
    """What the host-name rules of one app resolve with; equal settings share one resolver and cache."""

    hosts_file: str | None
    min_ttl: float
    max_ttl: float
    negative_ttl: float
    cache_size: int
    timeout: float
    deny_on_error: bool
    nameservers: tuple[str, ...] | None
    port: int

    @classmethod
    def from_config(cls, config: Any, root_path: str | None = None) -> DNSSettings:
        """Validate every ``ALLOW_DNS_*`` key of ``config``; raise ``ConfigError`` naming a bad one."""
        min_ttl = _seconds(config, keys.ALLOW_DNS_MIN_TTL, zero_ok=True)
        max_ttl = _seconds(config, keys.ALLOW_DNS_MAX_TTL, zero_ok=False)
        if max_ttl < min_ttl:
            raise ConfigError(
                f"must not be below {keys.ALLOW_DNS_MIN_TTL} ({min_ttl:g})", keys.ALLOW_DNS_MAX_TTL, max_ttl
            )
        on_error = keys.get(config, keys.ALLOW_DNS_ON_ERROR)
        if not isinstance(on_error, str) or on_error.lower() not in ("ignore", "deny"):
            raise ConfigError("must be 'ignore' or 'deny'", keys.ALLOW_DNS_ON_ERROR, on_error)
        size = keys.get(config, keys.ALLOW_DNS_CACHE_SIZE)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigError("must be a whole number >= 1", keys.ALLOW_DNS_CACHE_SIZE, size)
        port = keys.get(config, keys.ALLOW_DNS_PORT)
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise ConfigError("must be a port number (1-65535)", keys.ALLOW_DNS_PORT, port)
        return cls(
            hosts_file=_hosts_file(config, root_path),
            min_ttl=min_ttl,
            max_ttl=max_ttl,
            negative_ttl=_seconds(config, keys.ALLOW_DNS_NEGATIVE_TTL, zero_ok=True),
            cache_size=size,
            timeout=_seconds(config, keys.ALLOW_DNS_TIMEOUT, zero_ok=False),
            deny_on_error=on_error.lower() == "deny",
            nameservers=_nameservers(config),
            port=port,
        )

    def clamp(self, ttl: float) -> float:
        """Bound a record's TTL by ``ALLOW_DNS_MIN_TTL`` and ``ALLOW_DNS_MAX_TTL``."""
        return min(max(float(ttl), self.min_ttl), self.max_ttl)

    @property
    def hosts_ttl(self) -> float:
        """How long a hosts-file answer is kept."""
        return self.clamp(HOSTS_TTL)


def _seconds(config: Any, key: str, zero_ok: bool) -> float:
    value = keys.get(config, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError("must be a number of seconds", key, value)
    if value < 0 or (value == 0 and not zero_ok) or value > 10**9:
        raise ConfigError(f"must be a number of seconds {'>= 0' if zero_ok else '> 0'}", key, value)
    return float(value)


def _hosts_file(config: Any, root_path: str | None) -> str | None:
    value = keys.get(config, keys.ALLOW_DNS_HOSTS_FILE)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError("must be the path of a hosts file, or None", keys.ALLOW_DNS_HOSTS_FILE, value)
    path = os.path.expanduser(value)
    if not os.path.isabs(path) and root_path is not None:
        path = os.path.join(root_path, path)
    if keys.ALLOW_DNS_HOSTS_FILE not in config and not os.path.exists(path):
        return None  # the default /etc/hosts may be missing (some containers): no hosts file then
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ConfigError(f"{path!r} is not a readable file", keys.ALLOW_DNS_HOSTS_FILE, value)
    return path


def _nameservers(config: Any) -> tuple[str, ...] | None:
    value = keys.get(config, keys.ALLOW_DNS_NAMESERVERS)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            "must be a non-empty list of name server addresses, or None for the system's",
            keys.ALLOW_DNS_NAMESERVERS,
            value,
        )
    for address in value:
        try:
            inet_pton(AF_INET6 if ":" in address else AF_INET, address)
        except (OSError, ValueError):  # ValueError: a NUL character
            raise ConfigError(
                f"{address!r} is not an IP address (give the port in {keys.ALLOW_DNS_PORT})",
                keys.ALLOW_DNS_NAMESERVERS,
                value,
            ) from None
    return tuple(value)

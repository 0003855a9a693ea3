"""Where bans and counters are kept, chosen by a URI (as ``limits.storage_from_string`` does).

``"memory"`` (this process only), ``"sqlite:///PATH"`` (every worker of one machine),
``"redis://HOST:PORT/DB"`` / ``"rediss://..."`` (every instance of a fleet). A store is only ever
used from background threads and the CLI, never from a request.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import ConfigError
from ..ban import Ban, Network
from ..settings import AutobanPolicy

#: URI scheme -> the module holding its store.
SCHEMES: dict[str, str] = {
    "memory": "memory",
    "sqlite": "sqlite",
    "redis": "redis",
    "rediss": "redis",
}
#: The SQLite file of the default store, in the app's instance folder.
DEFAULT_FILE = "flask_allow_bans.sqlite3"


#: Bans written together by ``put_many`` at most (one SQLite transaction, one Redis round trip).
BATCH = 500


class StoreError(Exception):
    """The store cannot be reached or answered wrongly (the caller keeps what it knows)."""


def scheme_of(uri: str) -> str:
    """The scheme of a store URI (``"memory"`` has none)."""
    return uri if uri == "memory" else uri.partition("://")[0] if "://" in uri else uri.partition(":")[0]


class BanStore(ABC):
    """The few operations bans need; every time is given by the caller (``now``, epoch seconds)."""

    uri: str

    @abstractmethod
    def ping(self) -> None:
        """Raise ``StoreError`` when the store cannot be reached."""

    @abstractmethod
    def version(self) -> str:
        """A token that changes whenever a ban is put or removed (read every sync, so cheap)."""

    @abstractmethod
    def put(self, ban: Ban) -> None:
        """Make or replace the ban of ``ban.network``."""

    def put_many(self, bans: Sequence[Ban]) -> None:
        """Make or replace each ban, in order (a store may do it in fewer round trips). The
        service gives at most ``BATCH`` at a time and writes them all again when this raises,
        so a store should write them all or none as far as it can (SQLite: one transaction;
        Redis: MULTI/EXEC)."""
        for ban in bans:
            self.put(ban)

    @abstractmethod
    def remove(self, network: Network, now: float) -> bool:
        """Lift the ban of exactly ``network``; whether there was one in force."""

    @abstractmethod
    def active(self, now: float) -> list[Ban]:
        """Every ban in force at ``now``."""

    @abstractmethod
    def count(self, counts: Mapping[str, int], policy: AutobanPolicy, now: float) -> dict[str, tuple[int, int]]:
        """Add each client's weight to its counter, atomically, and say who reached the limit.

        A counter lasts ``policy.window`` seconds from its first count. A client whose counter
        reaches ``policy.limit`` has it reset and its count of bans raised by one (kept until
        ``policy.forget`` of that ban's ttl): returns ``client -> (counted, bans so far)``.
        """

    def changes(self, since: str) -> list[tuple[Network, Ban | None]] | None:
        """The bans put (a ``Ban``) and lifted (None) since ``version()`` gave ``since``, oldest
        first (it may hold changes made after the version read last: applying one twice is
        harmless); None when the store cannot say (then every ban is read again)."""
        return None

    def offend(self, client: str, policy: AutobanPolicy, now: float) -> int:
        """Raise a client's count of bans by one, as reaching the limit in ``count`` does (for a ban
        made while this store could not be reached); returns the new count. A store that keeps
        no counts of bans (a third party's, written before this method) returns 0."""
        return 0

    def subscribe(self) -> Any:
        """A subscription to this store's announced changes: an object whose
        ``get_message(timeout=seconds)`` returns a ``{"type": "message", ...}`` dict for each, or
        None. Only stores that announce changes (Redis) override this; it raises ``StoreError``
        when the store cannot be reached."""
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - most stores hold nothing to release
        """Release connections."""


def store_from_string(uri: str | None, instance_path: str | None = None) -> BanStore:
    """The store a URI names; None is the SQLite file in ``instance_path``. Unknown: ``ConfigError``."""
    from ... import config as keys

    if uri is None:
        if instance_path is None:
            raise ConfigError("no instance folder for the default SQLite ban store: set it", keys.ALLOW_BAN_STORE)
        os.makedirs(instance_path, exist_ok=True)
        uri = "sqlite:///" + os.path.join(instance_path, DEFAULT_FILE)
    scheme = scheme_of(uri)
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite" and uri.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(uri)
    if scheme in ("redis", "rediss"):
        from .redis import RedisStore

        return RedisStore(uri)
    raise ConfigError(
        "must be 'memory', 'sqlite:///PATH', 'redis://HOST:PORT/DB' or 'rediss://...'", keys.ALLOW_BAN_STORE, uri
    )


__all__ = ["BanStore", "StoreError", "store_from_string", "SCHEMES"]

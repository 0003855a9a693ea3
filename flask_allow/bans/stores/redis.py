"""Bans in Redis (``redis://HOST:PORT/DB``, ``rediss://``): shared by every instance of a fleet.

redis-py is imported only when such a store is configured (the ``redis`` extra). The bans are
one hash (network -> the ban as JSON); each change is written by one Lua script that also logs it
in a stream (the last ``KEEP``), makes the version ``epoch:seq`` and publishes it on a channel, so
a process reads only what changed since its version (or every ban, when the log cannot say).
Counters are counted by one Lua script (INCRBY, PEXPIRE on the first count, reset and count the
ban at the limit), so the workers of every instance add up exactly.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ..ban import Ban, Network, network_of
from ..settings import AutobanPolicy
from . import BATCH, BanStore, StoreError

PREFIX = "flask_allow:"
#: Seconds a command may take before the store counts as unreachable.
TIMEOUT = 2.0

# KEYS: none (the client keys are made from ARGV[1]); ARGV: prefix, window ms, limit, ttl,
# factor, max_ttl, then client, weight pairs. Returns client, counted, offenses triples.
COUNT = """
local prefix, window, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl, factor, max_ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local reached = {}
for i = 7, #ARGV, 2 do
  local client, weight = ARGV[i], tonumber(ARGV[i + 1])
  local key = prefix .. 'count:' .. client
  local counted = redis.call('INCRBY', key, weight)
  if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, window) end
  if counted >= limit then
    redis.call('DEL', key)
    local okey = prefix .. 'offenses:' .. client
    local offenses = redis.call('INCR', okey)
    local bantime = math.min(ttl * factor ^ math.min(offenses - 1, 1000), max_ttl)
    redis.call('PEXPIRE', okey, math.floor((bantime + max_ttl) * 1000))
    table.insert(reached, client)
    table.insert(reached, counted)
    table.insert(reached, offenses)
  end
end
return reached
"""

# ARGV: prefix, client, ttl, factor, max_ttl. Raises the client's count of bans as COUNT does at the limit.
OFFEND = """
local okey = ARGV[1] .. 'offenses:' .. ARGV[2]
local ttl, factor, max_ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local offenses = redis.call('INCR', okey)
local bantime = math.min(ttl * factor ^ math.min(offenses - 1, 1000), max_ttl)
redis.call('PEXPIRE', okey, math.floor((bantime + max_ttl) * 1000))
return offenses
"""

# KEYS: bans hash, epoch, seq, version, log; ARGV: network, data ("" to lift), keep, a new epoch,
# channel. Puts or lifts the ban, logs it as change number seq (the log's entry "seq-1"), makes
# "epoch:seq" the version and announces it; returns the ban there was.
CHANGE = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[4]
  redis.call('SET', KEYS[2], epoch)
end
local old = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
local seq = redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], seq .. '-1', 'n', ARGV[1], 'd', ARGV[2])
redis.call('SET', KEYS[4], epoch .. ':' .. seq)
redis.call('PUBLISH', ARGV[5], 'changed')
return old
"""

# KEYS: epoch, seq, log; ARGV: the epoch and seq of a version. The changes since, as network,
# data pairs; false when the log cannot say (another epoch: a server emptied; trimmed).
CHANGES = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
local after = tonumber(ARGV[2])
if after > seq then return false end
if after == seq then return {} end
local entries = redis.call('XRANGE', KEYS[3], (after + 1) .. '-1', seq .. '-1')
if #entries ~= seq - after then return false end
local out = {}
for _, entry in ipairs(entries) do
  table.insert(out, entry[2][2])
  table.insert(out, entry[2][4])
end
return out
"""
#: Changes kept in the log for ``changes()`` (a process further behind reads every ban again).
KEEP = 10_000

# KEYS[1]: the bans hash; ARGV: network, data pairs of expired bans, deleted only if unchanged.
FORGET = """
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
"""


class RedisStore(BanStore):
    def __init__(self, uri: str) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - the extra is part of the test set-up
            from ...errors import ConfigError

            raise ConfigError(
                "a redis:// ban store needs redis-py: pip install 'Flask-Allow[redis]'", "ALLOW_BAN_STORE", uri
            ) from exc
        self.uri = uri
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.client = redis.Redis.from_url(
            uri, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, health_check_interval=30
        )
        self._count = self.client.register_script(COUNT)
        self._forget = self.client.register_script(FORGET)
        self._offend = self.client.register_script(OFFEND)
        self._change = self.client.register_script(CHANGE)
        self._changes = self.client.register_script(CHANGES)
        self.channel = PREFIX + "changes"

    def _run(self, work: Any) -> Any:
        try:
            return work(self.client)
        except self._errors as exc:
            raise StoreError(f"{self._where()}: {type(exc).__name__}: {exc}") from exc

    def _where(self) -> str:
        kwargs = self.client.connection_pool.connection_kwargs
        return f"redis {kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"

    def ping(self) -> None:
        self._run(lambda r: r.ping())

    def version(self) -> str:
        found = self._run(lambda r: r.get(PREFIX + "version"))
        return "0" if found is None else found.decode()

    def _write(self, network: Network, data: str) -> Any:
        keys = [PREFIX + name for name in ("bans", "epoch", "seq", "version", "log")]
        args: list[Any] = [str(network), data, KEEP, uuid.uuid4().hex, self.channel]
        return self._run(lambda r: self._change(keys=keys, args=args))

    def put(self, ban: Ban) -> None:
        self._write(ban.network, json.dumps(ban.to_dict()))

    def put_many(self, bans: Sequence[Ban]) -> None:
        """The same script for each ban, ``BATCH`` to a round trip, each batch one transaction
        (MULTI/EXEC: a connection lost before EXEC writes none of it; a batch that failed is
        written again whole, which is harmless for the bans it did write)."""
        keys = [PREFIX + name for name in ("bans", "epoch", "seq", "version", "log")]
        for at in range(0, len(bans), BATCH):

            def work(r: Any, chunk: Sequence[Ban] = bans[at : at + BATCH]) -> Any:
                pipe = r.pipeline(transaction=True)
                for ban in chunk:
                    data = json.dumps(ban.to_dict())
                    args: list[Any] = [str(ban.network), data, KEEP, uuid.uuid4().hex, self.channel]
                    self._change(keys=keys, args=args, client=pipe)
                return pipe.execute()

            self._run(work)

    def remove(self, network: Network, now: float) -> bool:
        found = self._write(network, "")
        return found is not None and Ban.from_dict(json.loads(found)).active(now)

    def changes(self, since: str) -> list[tuple[Network, Ban | None]] | None:
        epoch, _, seq = since.partition(":")
        if not seq.isdigit():  # "0" (nothing written yet) or another version's token
            return None
        keys = [PREFIX + name for name in ("epoch", "seq", "log")]
        found = self._run(lambda r: self._changes(keys=keys, args=[epoch, seq]))
        if found is None:
            return None
        pairs = [(found[i].decode(), found[i + 1].decode()) for i in range(0, len(found), 2)]
        return [(network_of(n), Ban.from_dict(json.loads(d)) if d else None) for n, d in pairs]

    def active(self, now: float) -> list[Ban]:
        rows = self._run(lambda r: r.hgetall(PREFIX + "bans"))
        bans, expired = [], []
        for network, data in rows.items():
            ban = Ban.from_dict(json.loads(data))
            if ban.active(now):
                bans.append(ban)
            else:
                expired += [network, data]
        if expired:  # keep the hash small; a ban put again meanwhile is left alone
            self._run(lambda r: self._forget(keys=[PREFIX + "bans"], args=expired))
        return bans

    def count(self, counts: Mapping[str, int], policy: AutobanPolicy, now: float) -> dict[str, tuple[int, int]]:
        if not counts:
            return {}
        args: list[Any] = [PREFIX, int(policy.window * 1000), policy.limit, policy.ttl, policy.factor, policy.max_ttl]
        for client, weight in counts.items():
            args += [client, weight]
        found = self._run(lambda r: self._count(args=args))
        return {found[i].decode(): (int(found[i + 1]), int(found[i + 2])) for i in range(0, len(found), 3)}

    def offend(self, client: str, policy: AutobanPolicy, now: float) -> int:
        args: list[Any] = [PREFIX, client, policy.ttl, policy.factor, policy.max_ttl]
        return int(self._run(lambda r: self._offend(args=args)))

    def subscribe(self) -> Any:
        """A pub/sub of the change channel (the sync task listens to it to wake at once)."""
        pubsub = self._run(lambda r: r.pubsub(ignore_subscribe_messages=True))
        self._run(lambda r: pubsub.subscribe(self.channel))
        return pubsub

    def close(self) -> None:
        with contextlib.suppress(*self._errors):
            self.client.close()

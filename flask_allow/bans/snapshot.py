"""One process's copy of the active bans, searched like the compiled static rules.

Built off the request path and swapped in by one assignment. The bans are one static index
(the exempt networks first, so they are never banned): a decision costs one search whatever the
number of bans, in C when ``flask_allow._lookup`` was built. Which ban it was (for the reason and
the log) is found only for a client that is banned, by its network at each prefix length in use.
An index is trusted until its earliest expiry; from then on every hit is checked against the
bans' ``until`` (and against bans lifted since it was built), so an expired ban is never served
even before the sync task builds the next index.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Sequence

from ..addresses import Span, parse_client
from ..clookup import c_lookup
from ..index import StaticIndex
from .ban import Ban, Network

EXEMPT, BANNED = 1, 2
_LABELS = (None, None, True)


def span_of(network: Network) -> Span:
    family = network.version
    return Span(family, int(network.network_address), int(network.broadcast_address))


class Compiled:
    """The index of a set of bans (immutable once built)."""

    def __init__(self, bans: Sequence[Ban], exempt: Sequence[Span]) -> None:
        self.bans = tuple(bans)
        self.index = StaticIndex([list(exempt), [span_of(b.network) for b in self.bans]])
        self.by_length: dict[tuple[int, int], dict[int, Ban]] = {}
        for ban in self.bans:
            net = ban.network
            self.by_length.setdefault((net.version, net.prefixlen), {})[int(net.network_address)] = ban
        self.lengths = sorted(self.by_length, key=lambda fl: -fl[1])
        #: The earliest expiry of these bans (epoch seconds), ``inf`` when none expires.
        self.earliest: float = min((b.until.timestamp() for b in self.bans if b.until is not None), default=math.inf)
        index = self.index

        def other(address: object) -> bool | None:
            key = parse_client(address) if isinstance(address, str) else None
            if key is None:
                raise ValueError(f"client address {address!r} is not an IP address")
            return _LABELS[index.lookup(*key)]

        fast = c_lookup(index, _LABELS, other) if self.bans else None
        self.find: Callable[[str], bool | None] = fast or other

    def ban_for(self, network: Network) -> Ban | None:
        """The ban of exactly ``network`` in this index, or None."""
        return self.by_length.get((network.version, network.prefixlen), {}).get(int(network.network_address))

    def covering(self, key: tuple[int, int]) -> Iterable[Ban]:
        """The bans whose network holds the address ``key``, longest prefix first."""
        family, value = key
        bits = 32 if family == 4 else 128
        for fam, length in self.lengths:
            if fam == family:
                found = self.by_length[(fam, length)].get(value >> (bits - length) << (bits - length))
                if found is not None:
                    yield found


class Layer:
    """Changes made after the index was compiled: the newest per network, a ``Ban`` or None
    (lifted), with the index of those bans (immutable once built)."""

    __slots__ = ("changes", "compiled")

    def __init__(self, changes: dict[Network, Ban | None], exempt: Sequence[Span]) -> None:
        self.changes = changes
        bans = [ban for ban in changes.values() if ban is not None]
        self.compiled = Compiled(bans, exempt) if bans else None

    def __len__(self) -> int:
        return len(self.changes)


class Snapshot:
    """The bans in force in this process: a compiled index, and layers of what changed here since.

    ``ban()``/``unban()`` take effect at once without compiling a large index in the request: each
    change is a small layer over the index, and a layer no larger than the one after it is merged
    into it (a binary counter), so a change costs O(log n) bans compiled, amortised, and a search
    at most one per layer (about log2 of the changes; the sync task then compiles a whole index).
    A newer layer's change of a network supersedes every older ban of exactly that network.
    """

    def __init__(
        self,
        compiled: Compiled,
        clock: Callable[[], float],
        layers: tuple[Layer, ...] = (),
        *,
        size: int | None = None,
        shadows: bool | None = None,
    ) -> None:
        self.compiled = compiled
        self.clock = clock
        #: Oldest first.
        self.layers = layers
        self.find = compiled.find
        #: The layers' searches, newest first (the layers holding only lifted bans have none).
        self.finds = tuple(layer.compiled.find for layer in reversed(layers) if layer.compiled is not None)
        if shadows is None:
            shadows = any(compiled.ban_for(network) is not None for layer in layers for network in layer.changes)
        #: Whether a layer changes a ban of the index (then no hit of the index is trusted as it is).
        self.shadows = shadows
        self.trusted_until: float = -math.inf if shadows else compiled.earliest
        #: The earliest expiry of the bans in the index and the layers.
        self.earliest: float = min(
            [compiled.earliest, *(layer.compiled.earliest for layer in layers if layer.compiled is not None)]
        )
        #: The active bans' count when built (what ``len(allow.bans())`` gives, without a store); a
        #: large index kept past a ban's end counts it until compiled again (``RECOMPILE_EVERY``).
        if size is None:
            effective: dict[Network, Ban | None] = {ban.network: ban for ban in compiled.bans}
            for layer in layers:
                effective.update(layer.changes)
            size = sum(1 for ban in effective.values() if ban is not None)
        self.size = size

    @classmethod
    def build(cls, bans: Sequence[Ban], exempt: Sequence[Span], clock: Callable[[], float]) -> Snapshot:
        return cls(Compiled(bans, exempt), clock)

    def changed(self, changes: dict[Network, Ban | None], exempt: Sequence[Span]) -> Snapshot:
        """This snapshot with ``changes`` laid over it (a ``Ban``, or None to lift one)."""
        size = self.size
        for network, ban in changes.items():
            size += (ban is not None) - (self.ban_for(network) is not None)
        shadows = self.shadows or any(self.compiled.ban_for(network) is not None for network in changes)
        layers = [*self.layers, Layer(changes, exempt)]
        while len(layers) > 1 and len(layers[-2]) <= len(layers[-1]):
            newer = layers.pop()
            layers[-1] = Layer({**layers[-1].changes, **newer.changes}, exempt)
        return Snapshot(self.compiled, self.clock, tuple(layers), size=size, shadows=shadows)

    def is_exempt(self, key: tuple[int, int]) -> bool:
        return self.compiled.index.lookup(*key) == EXEMPT

    def banned_text(self, address: str) -> bool:
        """Whether the client with this address text is banned now (the request path: one search)."""
        if self.find(address) is None:
            for find in self.finds:
                if find(address) is not None:
                    return self._precise(parse_client(address))
            return False
        if self.clock() < self.trusted_until:
            return True
        return self._precise(parse_client(address))

    def banned_key(self, key: tuple[int, int] | None) -> bool:
        if key is None:
            return False
        if self.compiled.index.lookup(*key) == BANNED and self.clock() < self.trusted_until:
            return True
        return self._precise(key)

    def _precise(self, key: tuple[int, int] | None) -> bool:
        return key is not None and self.ban_of(key) is not None

    def ban_for(self, network: Network) -> Ban | None:
        """The ban of exactly ``network`` here (in force or not), or None."""
        for layer in reversed(self.layers):
            if network in layer.changes:
                return layer.changes[network]
        return self.compiled.ban_for(network)

    def ban_of(self, key: tuple[int, int]) -> Ban | None:
        """The ban in force for the address ``key``, or None: the one lasting longest, of those
        the narrowest network (so every process names the same ban, however its layers lie)."""
        if self.compiled.index.lookup(*key) == EXEMPT:
            return None
        now = self.clock()
        best: Ban | None = None
        best_rank = (-math.inf, -1)
        layers = self.layers
        for depth in range(len(layers), -1, -1):  # the newest layer first, the index last
            compiled = layers[depth - 1].compiled if depth else self.compiled
            if compiled is None:
                continue
            newer = layers[depth:]
            for ban in compiled.covering(key):
                if not ban.active(now) or any(ban.network in layer.changes for layer in newer):
                    continue
                rank = (math.inf if ban.until is None else ban.until.timestamp(), ban.network.prefixlen)
                if rank > best_rank:
                    best, best_rank = ban, rank
        return best

    def active(self) -> list[Ban]:
        """Every ban in force now, one per network (a ban made here since replaces the old one)."""
        now = self.clock()
        found: dict[Network, Ban | None] = {ban.network: ban for ban in self.compiled.bans}
        for layer in self.layers:
            found.update(layer.changes)
        return [ban for ban in found.values() if ban is not None and ban.active(now)]


def exempt_spans(entries: Iterable[str]) -> list[Span]:
    """``ALLOW_BAN_EXEMPT`` as spans (``localhost`` is 127.0.0.0/8 and ::1)."""
    from ..addresses import parse_span

    spans: list[Span] = []
    for entry in entries:
        if entry.lower() == "localhost":
            spans += [parse_span("127.0.0.0/8")[0], parse_span("::1")[0]]
        else:
            spans.append(parse_span(entry)[0])
    return spans


def client_network(key: tuple[int, int], prefix_v6: int) -> Network:
    """The network a client is counted and banned by: its IPv4 address, its IPv6 /``prefix_v6``."""
    family, value = key
    if family == 4:
        return ipaddress.IPv4Network((value, 32))
    shift = 128 - prefix_v6
    return ipaddress.IPv6Network((value >> shift << shift, prefix_v6))

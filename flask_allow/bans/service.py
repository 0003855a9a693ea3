"""The bans of one app in one process: the snapshot the requests search, and the sync task.

Requests only read ``snapshot`` (one attribute) and append to ``_events`` (counting: one
``deque.append``, no lock). Everything that talks to the store runs in the background task of
each process (started again after a fork): it writes the changes made here, adds up the counts,
reads the bans when the store's version changed, and swaps a new snapshot in. A store that
cannot be reached keeps the last known bans in force (their expiries honoured), counts locally,
and is told all when it is back.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .. import config as keys
from ..addresses import Span, parse_client
from ..index import ELSEWHERE_MIN, built_elsewhere
from ..live import BackgroundTask
from ..live.locks import STATE, ForkSafeLock, ProcessLock
from .ban import Ban, Network, moment, network_of
from .listen import ChangeListener
from .settings import BanSettings
from .snapshot import Compiled, Layer, Snapshot, client_network, exempt_spans
from .stores import BATCH, BanStore, StoreError
from .stores.memory import MemoryStore

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from ..decision import Decision

Clock = Callable[[], float]
#: Changed networks laid over the compiled index at most (then it is compiled again whole), and
#: the size of an index below which it is compiled again at every change (that costs little).
OVERLAY_MAX = 1000
#: A whole index is compiled again at most once in this many times what compiling it took (at
#: most a tenth of a process's time goes to it however fast the bans change).
COMPILE_SPACING = 10.0
#: Seconds a large index is kept past an expiry before it is compiled again without the expired
#: bans (meanwhile every hit is checked against its ban's end).
RECOMPILE_EVERY = 30.0
#: Seconds after which a change is read as every ban again, not as the store's log of changes:
#: what a writer that keeps no log (an older flask_allow on the same store) changed is caught up.
REREAD_EVERY = 300.0
#: Counts that wait for the next sync at least (``ALLOW_BAN_MAX_TRACKED`` when larger); past it
#: the oldest are dropped. One process does not answer this many requests in a sync interval.
EVENTS_MIN = 100_000


class BanService:
    """Bans and counting for one app (and settings), shared by its rules across reloads."""

    def __init__(
        self,
        settings: BanSettings,
        store: BanStore,
        logger: logging.Logger,
        clock: Clock = time.time,
        report: Callable[[str, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.logger = logger
        self.clock = clock
        self.policy = settings.autoban
        policy = self.policy
        #: status -> the reason its responses are counted with (none without a policy).
        self._statuses: dict[int, str] = {} if policy is None else {code: f"HTTP {code}" for code in policy.status}
        self._shift_v6 = 128 - (policy.prefix_v6 if policy is not None else 128)
        self._max_tracked = settings.max_tracked
        self.report = report or (lambda kind, message: None)
        self._lock = ForkSafeLock(STATE)
        self._compiling = ProcessLock()  # one whole compile at a time (see _rebuild); not waited for by a fork
        self._known: dict[Network, Ban] = {}
        #: The networks whose ban changed since the index was last compiled whole: what the
        #: snapshot's layers (``Snapshot.layers``) hold.
        self._touched: set[Network] = set()
        self._compiled_at = -math.inf  # the clock when the index was last compiled whole
        self._compile_next = -math.inf  # ``time.monotonic()`` before which it is not compiled again
        self._read_at = -math.inf  # when every ban was last read
        #: Changes made in this process not yet written to the store, in order.
        self._ops: deque[tuple[str, Any]] = deque()
        #: (client key or an IPv4 client's text, weight, reason) counted since the last sync, oldest
        #: first: requests append (atomic, no lock), the sync takes them from the left.
        self._events: deque[tuple[tuple[int, int] | str, int, str]] = deque(
            maxlen=max(settings.max_tracked, EVENTS_MIN)
        )
        self._count = self._events.append
        #: Counts made while the store was down, added to it when it is back.
        self._unsent: OrderedDict[str, int] = OrderedDict()
        self._fallback = MemoryStore()
        self._version: str | None = None
        #: Whether the store could not be reached at the last sync.
        self.down = False
        self._exempt: list[Span] = exempt_spans(settings.exempt)
        self._proxies: list[Span] = []
        self.snapshot = Snapshot.build((), self._exempt, clock)
        self._listeners: list[Callable[[], None]] = []
        ref = weakref.ref(self)

        def run() -> float | None:
            service = ref()
            if service is None:
                task.stop()
                return None
            return service.sync()

        task = BackgroundTask("ban sync", settings.sync_interval, run, logger)
        self.task = task
        #: With a store that announces its changes: the thread that wakes the sync at once.
        self.listener = ChangeListener(store, task.wake, logger) if ChangeListener.wanted(store) else None
        _services.add(self)

    def _after_fork_in_child(self) -> None:
        """What the parent made and has not written yet (bans, counts) is the parent's to write:
        written by both, a count would be counted twice. The bans stay in force here meanwhile."""
        self._ops.clear()
        self._events.clear()
        self._unsent = OrderedDict()

    # -- the request path --------------------------------------------------

    def banned(self, address: str) -> bool:
        """Whether the client with this address text is banned now (raises ``ValueError`` for
        text that is not an IP address)."""
        return self.snapshot.banned_text(address)

    def count(self, key: tuple[int, int] | None, weight: int = 1, reason: str = "") -> bool:
        """Count against a client for the auto-ban policy, later (the sync adds it up); False
        when nothing is counted (no policy, an exempt client or a trusted proxy)."""
        if self.policy is None or key is None or self.snapshot.is_exempt(key):
            return False
        self._count((key, weight, reason))
        return True

    def count_response(self, decision: Decision, response: Response, app: object = None) -> None:
        """Count a response with an ``ALLOW_AUTOBAN`` status against its client, unless
        flask_allow denied the request itself (the ``flask_allow_response`` of every request).
        An IPv4 client is counted by its address text, parsed and checked for exemption by the
        sync, not here; an IPv6 one by its network, so parsed now. ``app`` is not used: it is
        called as the hook is."""
        reason = self._statuses.get(response.status_code)
        if reason is not None and (decision.allowed or not decision.enforced):
            client = decision.client
            address = client.address
            if ":" not in address:
                self._count((address, 1, reason))
                return
            key = client.key
            if key is not None and not self.snapshot.is_exempt(key):
                self._count((key, 1, reason))

    def _pending(self) -> OrderedDict[tuple[int, int] | str, list[Any]]:
        """Take the counts made since the last sync, added up per client (an IPv6 one by its
        network), the most recently counted last; past ``ALLOW_BAN_MAX_TRACKED`` clients the
        least recently counted are dropped."""
        events, shift, bound = self._events, self._shift_v6, self._max_tracked
        pending: OrderedDict[tuple[int, int] | str, list[Any]] = OrderedDict()
        for _ in range(len(events)):  # popleft is atomic: what requests append meanwhile waits
            client, weight, reason = events.popleft()
            if type(client) is tuple and client[0] == 6:
                client = (6, client[1] >> shift << shift)
            entry = pending.get(client)
            if entry is None:
                if len(pending) >= bound:
                    pending.popitem(last=False)
                pending[client] = [weight, reason]
            else:
                entry[0] += weight
                if reason:
                    entry[1] = reason
                pending.move_to_end(client)
        return pending

    # -- the API -----------------------------------------------------------

    def ban(self, target: Any, ttl: float | None, reason: str = "", source: str = "api", strikes: int = 0) -> Ban:
        """Ban at once here, in the store at the next sync (woken now)."""
        return self.ban_many([target], ttl, reason, source, strikes)[0]

    def ban_many(
        self, targets: Iterable[Any], ttl: float | None, reason: str = "", source: str = "api", strikes: int = 0
    ) -> list[Ban]:
        """Ban each of ``targets`` at once here, as one change (all or none: a bad or exempt one
        raises ``ValueError`` before any is banned); in the store at the next sync (woken now)."""
        networks = [network_of(target) for target in targets]
        spared = self._spared
        for network in networks:
            first, last = int(network.network_address), int(network.broadcast_address)
            if any(f == network.version and a <= first and last <= b for f, a, b in spared):
                raise ValueError(
                    f"{network} is exempt from bans ({keys.ALLOW_BAN_EXEMPT} or {keys.ALLOW_TRUSTED_PROXIES})"
                )
        now = self.clock()
        seconds = self.settings.ttl if ttl is None else ttl
        since, until = moment(now), None if seconds == 0 else moment(now + seconds)
        made = {network: Ban(network, since, until, reason, strikes, source) for network in networks}
        if made:
            with self._lock:
                self._known.update(made)
                self._touched.update(made)
                self._ops.extend(("put", ban) for ban in made.values())
                self._swap(self.snapshot.changed(dict(made), spared))
            self.task.wake()
        return [made[network] for network in networks]

    def unban(self, target: Any) -> bool:
        """Lift the ban of exactly this network here at once, and in the store at the next sync."""
        network = network_of(target)
        with self._lock:
            old = self.snapshot
            was = old.ban_for(network)
            self._known.pop(network, None)
            self._touched.add(network)
            self._ops.append(("remove", network))
            self._swap(old.changed({network: None}, self._spared))
        self.task.wake()
        return was is not None and was.active(self.clock())

    def unwritten(self) -> list[Ban]:
        """The bans made here that the store does not have yet (written at the next sync)."""
        with self._lock:
            return [what for op, what in self._ops if op == "put"]

    def bans(self) -> list[Ban]:
        """The bans in force in this process now (as last synced, with the changes made here)."""
        return sorted(self.snapshot.active(), key=lambda b: (b.network.version, b.network))

    def ban_of(self, key: tuple[int, int] | None) -> Ban | None:
        return None if key is None else self.snapshot.ban_of(key)

    # -- the background ----------------------------------------------------

    def start(self) -> None:
        """Read the store once (raises ``StoreError`` when it cannot be reached), then sync in the background."""
        self.sync(raise_errors=True)
        self.start_background()

    def start_background(self) -> None:
        """Start the sync thread, and the change listener when the store announces changes."""
        self.task.start()
        if self.listener is not None:
            self.listener.start()

    def sync(self, raise_errors: bool = False) -> float | None:
        """One round with the store; returns the seconds until the next (an expiry may be sooner)."""
        now = self.clock()
        rebuild = False  # compile whole: the bans were read whole
        arrived: list[Network] = []  # the networks another process changed (read as changes)
        try:
            if self.down:
                self.store.ping()
            self._push()
            self._flush(now)
            self._push()
            version = self.store.version()
            if version != self._version:
                whole = self._version is None or now - self._read_at >= REREAD_EVERY
                changes = None if whole else self.store.changes(self._version)  # type: ignore[arg-type]
                if changes is None:  # read whole: the store cannot say what changed since (or it is time)
                    full = {b.network: b for b in self.store.active(now)}
                    self._read_at = now
                with self._lock:
                    if changes is None:
                        known = full
                        rebuild = True
                    else:  # only what changed, on top of what is known (and then in the overlay)
                        known = self._known
                        for network, ban in changes:
                            if ban is None:
                                known.pop(network, None)
                            else:
                                known[network] = ban
                            self._touched.add(network)
                            arrived.append(network)
                    for op, what in self._ops:  # made here meanwhile: not in what was read
                        if op == "put":
                            known[what.network] = what
                        elif op == "remove":
                            known.pop(what, None)
                    self._known = known
                    self._version = version
            if self.down:
                self.down = False
                self.logger.warning("flask_allow: the ban store %s can be reached again", self._name())
        except StoreError as exc:
            if raise_errors:
                raise
            self._outage(exc)
            self._flush_locally(now)
        if arrived:
            self._lay(arrived, now)
        compiled = self.snapshot.compiled
        expired = now >= self.snapshot.earliest  # a ban of the index or of a layer has ended
        small = len(compiled.bans) < OVERLAY_MAX  # compiled again whole at every change: cheap
        if rebuild or (
            (
                len(self._touched) > OVERLAY_MAX
                or (small and (self._touched or expired))
                or (expired and now - self._compiled_at >= RECOMPILE_EVERY)
            )
            and time.monotonic() >= self._compile_next
        ):
            self._rebuild(now)
        snapshot = self.snapshot
        if snapshot.earliest <= self.clock():  # kept past an expiry: every hit is checked against its end
            return None
        earliest = snapshot.earliest - self.clock()
        return max(0.0, min(self.settings.sync_interval, earliest)) if math.isfinite(earliest) else None

    def _name(self) -> str:
        return self.store.uri.split("@")[-1]

    def _outage(self, exc: StoreError) -> None:
        if self.down:
            return
        self.down = True
        message = (
            f"the ban store {self._name()} cannot be reached ({exc}); the last known bans stay in force "
            "and counting goes on here until it is back"
        )
        self.logger.error("flask_allow: %s", message)
        self.report("ban_store", message)

    def _push(self) -> None:
        """Write the changes made here, oldest first (up to ``BATCH`` bans in a row in one write,
        each batch all or none); what fails stays for the next sync. Only what was queued when it
        started: banning that goes on meanwhile never keeps the sync from its other work."""
        now = self.clock()
        with self._lock:
            left = len(self._ops)
        while left > 0:
            with self._lock:
                if not self._ops:
                    return
                first = self._ops[0]
                done = [first]
                if first[0] == "put":
                    for later in itertools.islice(self._ops, 1, min(BATCH, left)):
                        if later[0] != "put":
                            break
                        done.append(later)
            op, what = first
            if op == "put":
                self.store.put_many([ban for _, ban in done])
            elif op == "offend":  # a ban made here while the store was down: its count of bans
                if self.policy is not None:
                    self.store.offend(what, self.policy, now)
            else:
                self.store.remove(what, now)
            left -= len(done)
            with self._lock:
                for written in done:
                    if self._ops and self._ops[0] == written:
                        self._ops.popleft()

    def _take(self) -> tuple[dict[str, int], dict[str, str]]:
        pending = self._pending()
        with self._lock:
            unsent, self._unsent = self._unsent, OrderedDict()
        counts = dict(unsent)
        reasons = {}
        prefix = self.policy.prefix_v6 if self.policy is not None else 128
        snapshot = self.snapshot
        for counted, (weight, reason) in pending.items():
            key = parse_client(counted) if isinstance(counted, str) else counted  # text: see count_response
            if key is None or (isinstance(counted, str) and snapshot.is_exempt(key)):
                continue
            client = str(client_network(key, prefix))
            counts[client] = counts.get(client, 0) + weight
            if reason:
                reasons[client] = reason
        return counts, reasons

    def _flush(self, now: float) -> None:
        policy = self.policy
        if policy is None:
            return
        counts, reasons = self._take()
        if not counts:
            return
        try:
            reached = self.store.count(counts, policy, now)
        except StoreError:
            self._keep(counts)
            raise
        self._autoban(reached, reasons, now)

    def _flush_locally(self, now: float) -> None:
        policy = self.policy
        if policy is None:
            return
        counts, reasons = self._take()
        reached = self._fallback.count(counts, policy, now)
        self._keep({c: w for c, w in counts.items() if c not in reached})
        with self._lock:  # the store counts these bans too once it is back, so the next grows
            self._ops.extend(("offend", client) for client in reached)
        self._autoban(reached, reasons, now)

    def _keep(self, counts: dict[str, int]) -> None:
        """Keep counts for the store until it is back (bounded: the oldest are dropped first)."""
        with self._lock:
            unsent = self._unsent
            for client, weight in counts.items():
                unsent[client] = unsent.get(client, 0) + weight
                unsent.move_to_end(client)
            while len(unsent) > self.settings.max_tracked:
                unsent.popitem(last=False)

    def _autoban(self, reached: dict[str, tuple[int, int]], reasons: dict[str, str], now: float) -> None:
        policy = self.policy
        assert policy is not None
        for client, (counted, offenses) in reached.items():
            ttl = policy.ban_ttl(offenses)
            why = f"{counted} counted within {policy.window:g}s, ban {offenses}"
            if client in reasons:
                why += f"; last: {reasons[client]}"
            self.ban(client, ttl, why, source="autoban", strikes=counted)
            self.logger.warning("flask_allow: banned %s for %gs (%s)", client, ttl, why)

    def _rebuild(self, now: float) -> None:
        """Swap in a new snapshot: the index compiled whole from the known bans, with what
        changed meanwhile laid over it. Not again before ``COMPILE_SPACING`` times what this one
        took, unless the bans were read whole: a stream of changes (a loop of ``ban()``) is laid
        over the index meanwhile, not compiled whole at every sync. One at a time (the sync
        thread and a reload's ``set_proxies``): each starts what changed meanwhile afresh."""
        with self._compiling:
            self._compile_whole(now)

    def _compile_whole(self, now: float) -> None:
        started = time.monotonic()
        with self._lock:
            bans = [b for b in self._known.values() if b.active(now)]
            self._touched = set()  # what changes while compiling is laid over the new index
        if len(bans) >= ELSEWHERE_MIN:
            with built_elsewhere():
                compiled = Compiled(bans, self._spared)
        else:
            compiled = Compiled(bans, self._spared)
        self._compiled_at = now
        with self._lock:
            changes = self._changes(self._touched, compiled.ban_for, now)
            layers = (Layer(changes, self._spared),) if changes else ()
            self._swap(Snapshot(compiled, self.clock, layers))
        ended = time.monotonic()
        self._compile_next = ended + COMPILE_SPACING * (ended - started)

    def _lay(self, networks: Iterable[Network], now: float) -> None:
        """Lay the known state of ``networks`` (changed by another process) over the snapshot."""
        with self._lock:
            snapshot = self.snapshot
            changes = self._changes(networks, snapshot.ban_for, now)
            if changes:
                self._swap(snapshot.changed(changes, self._spared))

    def _changes(
        self, networks: Iterable[Network], held: Callable[[Network], Ban | None], now: float
    ) -> dict[Network, Ban | None]:
        """The known ban in force now (or None) of each of ``networks`` whose ban differs from
        what ``held`` gives (the lock held)."""
        changes: dict[Network, Ban | None] = {}
        for network in networks:
            ban = self._known.get(network)
            if ban is not None and not ban.active(now):
                ban = None
            if ban != held(network):
                changes[network] = ban
        return changes

    @property
    def _spared(self) -> list[Span]:
        """The spans never banned: ``ALLOW_BAN_EXEMPT``, then the trusted proxies."""
        return self._exempt + self._proxies

    def _swap(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # a listener drops cached decisions; it must not stop a swap
                self.logger.exception("flask_allow: a ban listener failed")

    def listen(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every swap (a rule's ``context.changed``)."""
        self._listeners.append(listener)

    def set_proxies(self, spans: Sequence[Span]) -> None:
        """Never ban nor count the trusted proxies (the rules compiled them)."""
        if list(spans) != self._proxies:
            self._proxies = list(spans)
            self._rebuild(self.clock())

    def close(self) -> None:
        self.task.stop()
        if self.listener is not None:
            self.listener.stop()
        self.store.close()


_services: weakref.WeakSet[BanService] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for service in list(_services):
        service._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)

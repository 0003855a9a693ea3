"""The feeds of one app: refreshed in the background, fetched once per machine, kept on failure.

Each process runs a ``BackgroundTask`` that looks, every so often, at each feed's JSON in the
shared cache folder. A feed that is due is fetched by whichever process takes its file lock
first; the others find it fresh when they get there. A body is checked (size, parse, the shrink
limit) before it becomes the copy; every process then picks the copy up as a watched file. A
failed refresh keeps the copy and is retried with backoff; it is logged once per outage.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..live import BackgroundTask
from ..live.locks import ProcessLock
from ..live.shrink import shrink_message, too_small
from .cache import CachedFeed
from .settings import FeedSettings

#: The key of the app's ``FeedService`` in ``AppState.shared``.
SHARED_KEY = "flask_allow.feeds"
#: The first retry after a failure, in seconds; doubled at each failure, up to the interval.
BACKOFF = 10.0


@dataclass
class Outcome:
    """What one refresh did: ``"fetched"``, ``"not modified"``, ``"fresh"`` (another process
    did it), ``"busy"`` (another process is doing it), or ``"failed"`` (``error`` says why)."""

    url: str
    result: str
    error: str | None = None
    entries: int | None = None

    @property
    def ok(self) -> bool:
        return self.result != "failed"


class Feed:
    """One ``url:`` feed of the app and its cached files; ``refs`` counts the rules using it."""

    def __init__(self, url: str, folder: str) -> None:
        self.url = url
        self.cache = CachedFeed(folder, url)
        self.refs = 0
        self.lock = ProcessLock()

    def due_at(self, settings: FeedSettings, meta: dict[str, Any] | None = None) -> float:
        """When (wall clock) the feed is to be fetched next."""
        meta = self.cache.meta() if meta is None else meta
        if meta.get("failing_since") is not None or meta.get("held"):
            return float(meta.get("next_try") or 0)
        return float(meta.get("fetched_at") or 0) + settings.interval


class FeedService:
    """Every feed of one app and the thread that refreshes them (kept across rebuilds)."""

    def __init__(self, settings: FeedSettings, logger: logging.Logger, report: Callable[[str, str], None]) -> None:
        import urllib3  # noqa: F401  (the feeds extra: only once a url: rule is used)

        self.settings = settings
        self.logger = logger
        self.report = report
        self.feeds: dict[str, Feed] = {}
        self._task: BackgroundTask | None = None
        self._lock = ProcessLock()

    @classmethod
    def of(cls, shared: dict[str, Any], settings: FeedSettings, app: Any) -> FeedService:
        """The app's service (made at its first feed), with the settings of the rules being built."""
        service = shared.get(SHARED_KEY)
        if service is None:
            app_ref = weakref.ref(app)

            def report(kind: str, message: str) -> None:
                found = app_ref()
                state = found.extensions.get("flask_allow") if found is not None else None
                if state is not None:
                    state.report_error(kind, message, None)

            service = shared[SHARED_KEY] = cls(settings, app.logger, report)
        else:
            service.settings = settings
        return service

    def feed(self, url: str) -> Feed:
        """The feed of ``url``, used by one more rule (``release`` when that rule is replaced)."""
        with self._lock:
            found = self.feeds.get(url)
            if found is None or found.cache.folder != self.settings.cache_dir:
                found = self.feeds[url] = Feed(url, self.settings.cache_dir)
            found.refs += 1
            return found

    def release(self, feed: Feed) -> None:
        with self._lock:
            feed.refs -= 1
            if feed.refs <= 0 and self.feeds.get(feed.url) is feed:
                del self.feeds[feed.url]
            if not self.feeds and self._task is not None:
                self._task.stop()
                self._task = None

    def start(self) -> None:
        """Refresh in the background (again after a fork; at once, if a copy is already stale)."""
        with self._lock:
            if self._task is None:
                self._task = BackgroundTask("feed refresher", self.settings.interval, self.run, self.logger, delay=0)
            self._task.start()

    def stop(self) -> None:
        with self._lock:
            if self._task is not None:
                self._task.stop()
                self._task = None

    def run(self) -> float:
        """The task: refresh every feed that is due; return the seconds until the next is."""
        settings = self.settings
        with self._lock:
            feeds = list(self.feeds.values())
        wait = settings.interval
        for feed in feeds:
            if time.time() >= feed.due_at(settings):
                self.refresh(feed)
            wait = min(wait, max(feed.due_at(settings) - time.time(), 0.0))
        return max(wait, min(0.05, settings.interval)) if feeds else settings.interval

    def first_fetch(self, feed: Feed) -> Outcome:
        """Start-up without a copy: one process fetches (within the timeout), the others wait for it."""
        return self.refresh(feed, force=True, wait=self.settings.timeout * 2 + 5)

    def refresh(self, feed: Feed, force: bool = False, explicit: bool = False, wait: float = 0.0) -> Outcome:
        """Fetch ``feed`` if no other process is at it or just was; keep the copy on any failure.

        ``force`` fetches even when it is not due; ``explicit`` (an operator's command) applies a
        shrink; ``wait`` is how long to wait for another process's lock (0: skip the feed).
        """
        import filelock

        settings = self.settings
        with feed.lock:
            try:
                lock = filelock.FileLock(feed.cache.lock_path, timeout=wait)
                os.makedirs(feed.cache.folder, exist_ok=True)
                lock.acquire()
            except filelock.Timeout:
                return Outcome(feed.url, "busy")
            except OSError as exc:
                return self._failed(feed, {}, "cache", f"cannot use the cache folder: {exc}")
            try:
                meta = feed.cache.meta()
                if not force and time.time() < feed.due_at(settings, meta):
                    return Outcome(feed.url, "fresh", entries=meta.get("entries"))
                if wait and feed.cache.exists() and meta.get("fetched_at") and not explicit:
                    return Outcome(feed.url, "fresh", entries=meta.get("entries"))  # the one before us fetched it
                return self._fetch(feed, meta, explicit)
            finally:
                lock.release()

    def _fetch(self, feed: Feed, meta: dict[str, Any], explicit: bool) -> Outcome:
        from ..builtins.listfile import parse_list
        from .fetch import FeedError, fetch, pool

        settings = self.settings
        cache = feed.cache
        have_copy = cache.exists()
        temporary = cache.temporary()
        manager = pool(settings)  # a pool per fetch: no connection is shared with a forked worker
        try:
            try:
                got = fetch(
                    manager,
                    feed.url,
                    temporary,
                    settings,
                    etag=meta.get("etag") if have_copy else None,
                    last_modified=meta.get("last_modified") if have_copy else None,
                )
                if got.status == 304:
                    self._succeeded(feed, meta, "not modified", {})
                    return Outcome(feed.url, "not modified", entries=meta.get("entries"))
                if got.size == 0:
                    raise FeedError("empty", "an empty body (0 bytes): refused")
                try:
                    entries = len(parse_list(temporary)[0])
                except (ValueError, UnicodeDecodeError) as exc:
                    raise FeedError("unparsable", str(exc).replace(temporary, "the body")) from None
                digest = _digest(temporary)
                held = self._shrink(feed, meta, entries, digest, explicit)
                if held is not None:
                    return held
            except FeedError as exc:
                return self._failed(feed, meta, exc.kind, str(exc))
            cache.install(temporary)
            temporary = ""
            now = time.time()
            before = meta.get("entries")
            self._succeeded(
                feed,
                meta,
                "fetched",
                {
                    "etag": got.etag,
                    "last_modified": got.last_modified,
                    "changed_at": now,
                    "entries": entries,
                    "sha256": digest,
                    "bytes": got.size,
                },
            )
            self.logger.info(
                "flask_allow: feed %s fetched: %s -> %d entries",
                feed.url,
                "none" if before is None else before,
                entries,
            )
            return Outcome(feed.url, "fetched", entries=entries)
        finally:
            manager.clear()
            if temporary:
                cache.discard(temporary)

    def _shrink(self, feed: Feed, meta: dict[str, Any], entries: int, digest: str, explicit: bool) -> Outcome | None:
        """Hold back a body that shrinks the list too far (until it stays the same for the hold time)."""
        settings = self.settings
        last = meta.get("entries") if feed.cache.exists() else None
        if not too_small(entries, last, settings.shrink_limit):
            return None
        message = shrink_message(f"feed {feed.url}", last, entries, settings.shrink_limit)  # type: ignore[arg-type]
        held = meta.get("held") or {}
        now = time.time()
        if explicit or (held.get("sha256") == digest and now >= held.get("since", now) + settings.shrink_hold):
            why = "on an explicit refresh" if explicit else f"as it stayed the same for {settings.shrink_hold:g} s"
            self.logger.warning("flask_allow: %s; applied, %s", message, why)
            return None
        if held.get("sha256") != digest:
            held = {"sha256": digest, "since": now, "entries": entries}
        meta = {**meta, "held": held}
        outcome = self._failed(
            feed, meta, "shrink", f"{message}: held back", retry_at=held["since"] + settings.shrink_hold
        )
        return outcome

    def _succeeded(self, feed: Feed, meta: dict[str, Any], result: str, new: dict[str, Any]) -> None:
        if meta.get("failing_since") is not None:
            self.logger.info(
                "flask_allow: feed %s is back (%s) after %d failed tries", feed.url, result, meta.get("failures", 0)
            )
        meta = {**meta, **new, "fetched_at": time.time()}
        for key in ("failing_since", "failures", "last_error", "next_try", "held"):
            meta.pop(key, None)
        feed.cache.write_meta(meta)

    def _failed(
        self, feed: Feed, meta: dict[str, Any], kind: str, error: str, retry_at: float | None = None
    ) -> Outcome:
        """Record a failed refresh (the copy stays); log and report it once per outage."""
        now = time.time()
        failures = int(meta.get("failures", 0)) + 1
        backoff = min(self.settings.interval, BACKOFF * 2 ** (failures - 1)) * random.uniform(0.9, 1.0)
        first = meta.get("failing_since") is None
        meta = {
            **meta,
            "failing_since": meta.get("failing_since") or now,
            "failures": failures,
            "last_error": f"{kind}: {error}",
            "next_try": now + backoff if retry_at is None else min(retry_at, now + backoff),
        }
        with contextlib.suppress(OSError):  # the folder is the problem: said below
            feed.cache.write_meta(meta)
        if first:
            kept = "the last good copy stays in force" if feed.cache.exists() else "there is no copy yet"
            message = f"feed {feed.url} refused ({kind}): {error}; {kept}, retried with backoff"
            self.logger.error("flask_allow: %s (%s entries)", message, meta.get("entries", 0))
            self.report("feed_refused", message)
        return Outcome(feed.url, "failed", f"{kind}: {error}", entries=meta.get("entries"))


def _digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

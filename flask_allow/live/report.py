"""What ``flask allow rules`` and ``flask allow feeds`` say about each list file and feed."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..extension import AppState
    from ..feeds.service import Feed, FeedService


def when(seconds: float | None) -> str:
    """A wall-clock time as the local date and time, to the second ('-' for None)."""
    return "-" if not seconds else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def feed_service(state: AppState) -> FeedService | None:
    from ..feeds.service import SHARED_KEY

    return state.shared.get(SHARED_KEY)


def feed_lines(feed: Feed, service: FeedService, meta: dict[str, Any] | None = None) -> list[str]:
    """The state of one feed's cached copy: entries, fetch times, validators, next refresh, refusal."""
    meta = feed.cache.meta() if meta is None else meta
    copy = feed.cache.path if feed.cache.exists() else f"{feed.cache.path} (none yet)"
    lines = [
        f"copy {copy}",
        f"entries {meta.get('entries', 0)}, fetched {when(meta.get('fetched_at'))}, "
        f"changed {when(meta.get('changed_at'))}",
        f"validators: ETag {meta.get('etag') or '-'}, Last-Modified {meta.get('last_modified') or '-'}",
        f"next refresh due {when(feed.due_at(service.settings, meta))} (every {service.settings.interval:g} s)",
    ]
    if meta.get("last_error"):
        kept = "the last good copy is in force" if feed.cache.exists() else "no copy yet"
        lines.append(
            f"refused: {meta['last_error']} (failing since {when(meta.get('failing_since'))}, "
            f"{meta.get('failures', 1)} tries; {kept})"
        )
    return lines


def source_lines(state: AppState) -> list[str]:
    """One block per list a rule was built from (files and feeds), for ``flask allow rules``."""
    service = feed_service(state)
    watcher = state.watcher
    interval = state.settings.watch_interval
    watching = f"watched every {interval:g} s" if interval else "not watched (ALLOW_WATCH_INTERVAL 0)"
    lines = []
    for source in state.sources.values():
        if source.kind == "feed" and service is not None and source.url in service.feeds:
            lines.append(f"{source.location}: feed {source.url}")
            lines += [f"  {line}" for line in feed_lines(service.feeds[source.url], service)]
            lines.append(f"  in force: {source.entries} entries, read {when(source.loaded_at)}; {watching}")
            continue
        try:
            changed = when(os.stat(source.path).st_mtime)
        except OSError:
            changed = "(missing)"
        lines.append(f"{source.location}: file {source.path}")
        lines.append(f"  entries {source.entries}, changed {changed}, read {when(source.loaded_at)}; {watching}")
        why = watcher.why.get(source.path) if source.path in watcher.refused else None
        if why:
            lines.append(f"  refused: {why} (the last good rules are in force)")
    return lines

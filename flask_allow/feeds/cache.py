"""The cache folder: each feed's last good copy, a small JSON of its validators beside it, a lock.

Every process of a machine that serves the app shares the folder (``ALLOW_FEED_CACHE_DIR``):
the copy is what each process reads (and watches), the JSON is what the one process that
fetches next sends as conditional request headers. Both are written atomically (a temporary
file in the folder, then a rename), so a reader sees the old version or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from typing import Any
from urllib.parse import urlsplit


def atomic_write(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` at once (a reader never sees half of it)."""
    folder = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".flask_allow-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        raise


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class CachedFeed:
    """The files of one feed in the cache folder: ``path`` (the copy), ``meta_path``, ``lock_path``."""

    def __init__(self, folder: str, url: str) -> None:
        parts = urlsplit(url)
        readable = re.sub(r"[^A-Za-z0-9.]+", "-", f"{parts.hostname or ''}{parts.path}").strip("-")[:60]
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        base = os.path.join(folder, f"{readable}-{digest}")
        self.folder = folder
        self.url = url
        self.path = base + ".txt"
        self.meta_path = base + ".json"
        self.lock_path = base + ".lock"

    def exists(self) -> bool:
        return os.path.isfile(self.path)

    def meta(self) -> dict[str, Any]:
        """The validators and state of the last fetch; empty when there is none (or it is unreadable)."""
        try:
            with open(self.meta_path, encoding="utf-8") as handle:
                found = json.load(handle)
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) and found.get("url") == self.url else {}

    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write(self.meta_path, json.dumps({**meta, "url": self.url}, indent=1, sort_keys=True).encode())

    def temporary(self) -> str:
        """A new empty file in the folder, to receive a body before it is checked."""
        os.makedirs(self.folder, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self.folder, prefix=".flask_allow-fetch-", suffix=".tmp")
        os.close(handle)
        return name

    def install(self, temporary: str) -> None:
        """Make a checked body the copy (a rename: every process's watcher sees a new inode)."""
        os.replace(temporary, self.path)

    def discard(self, temporary: str) -> None:
        _remove(temporary)

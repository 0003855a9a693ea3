"""What tells that a file changed: its mtime, size, inode and device, read with one ``stat``."""

from __future__ import annotations

import os

#: ``(mtime_ns, size, inode, device)``, or None when the file is missing or unreadable.
Stamp = tuple[int, int, int, int] | None


def stamp(path: str) -> Stamp:
    """The stamp of ``path`` now; an atomic rename shows as a new inode."""
    try:
        return stamp_of(os.stat(path))
    except OSError:
        return None


def stamp_of(st: os.stat_result) -> tuple[int, int, int, int]:
    """The stamp of what ``os.stat`` or ``os.fstat`` found: ``(mtime_ns, size, inode, device)``."""
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)

"""Types of the optional C module built from ``_logline.c`` (see ``accesslog/fastline.py``)."""

from typing import Any

def line(
    environ: dict[str, Any], method: str, address: str, reason: str, head: str, msecs: int, middle: str, tail: str, /
) -> bytes | None:
    """The access log's line of a plain request (newline included), or None."""

class Count:
    """A log file's size as counted (-1: ask the file), and the lines since it was last asked."""

    size: int
    uncounted: int

def write(
    formatter: Any,
    now: float | int,
    level: int,
    environ: dict[str, Any],
    method: str,
    address: str,
    reason: str,
    tail: str,
    count: Count,
    max_bytes: int,
    fd: int,
    recount: int,
    /,
) -> bool | bytes | None:
    """Write a plain request's line: True when written, its bytes to roll over for, False when the
    request is not plain, None when the prefix is not the current second's."""

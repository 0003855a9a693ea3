"""Types of the optional C module built from ``_logline.c`` (see ``accesslog/fastline.py``)."""

from typing import Any

def line(
    environ: dict[str, Any], method: str, address: str, reason: str, head: str, msecs: int, middle: str, tail: str, /
) -> bytes | None:
    """The access log's line of a plain request (newline included), or None."""

"""The optional C maker and writer of a plain request's line (``flask_allow/_logline.c``), and
whether they are used.

Built at install time with the C search, skipped with it (``FLASK_ALLOW_PURE_PYTHON=1``, read when
an access log is opened). They make the line of a request that needs no escaping and whose URL
is its parts joined, exactly as ``line.format_line`` and the formatter would (the tests compare
the two); for every other request the Python code writes the line (the maker answers None, the
writer False). The writer also writes the line to the file, counting it as
``file._FileHandler.put_bytes`` does, in the file handler's ``Count``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..clookup import ENVIRON_KEY

try:
    from .. import _logline
except ImportError:  # installed without a C compiler
    _logline = None  # type: ignore[assignment]

#: ``line(environ, method, address, reason, head, msecs, middle, tail) -> bytes | None``.
Maker = Callable[[dict[str, Any], str, str, str, str, int, str, str], "bytes | None"]
#: ``write(formatter, now, level, environ, method, address, reason, tail, count, max_bytes, fd,
#: recount) -> True | bytes | False | None``: see ``_logline.write``.
Writer = Callable[..., "bool | bytes | None"]


class Count:
    """A log file's size as counted (-1: ask the file), and the lines since it was last asked."""

    __slots__ = ("size", "uncounted")

    def __init__(self) -> None:
        self.size = -1
        self.uncounted = 0


def _built() -> bool:
    return _logline is not None and os.environ.get(ENVIRON_KEY, "") in ("", "0")


def maker() -> Maker | None:
    """The C line maker, or None (not built, or ``FLASK_ALLOW_PURE_PYTHON`` set)."""
    return _logline.line if _built() else None


def writer() -> Writer | None:
    """The C line writer, or None (not built, or ``FLASK_ALLOW_PURE_PYTHON`` set)."""
    return _logline.write if _built() else None


def count() -> Count:
    """A new count for a log file: the C one, which ``writer()``'s writer updates, when it is used."""
    return _logline.Count() if _built() else Count()  # type: ignore[return-value]

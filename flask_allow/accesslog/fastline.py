"""The optional C maker of a plain request's line (``flask_allow/_logline.c``), and whether it is used.

Built at install time with the C search, skipped with it (``FLASK_ALLOW_PURE_PYTHON=1``, read when
an access log is opened). It makes the line of a request that needs no escaping and whose URL
is its parts joined, exactly as ``line.format_line`` and the formatter would (the tests compare
the two); for every other request it answers None and the Python code writes the line.
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


def maker() -> Maker | None:
    """The C line maker, or None (not built, or ``FLASK_ALLOW_PURE_PYTHON`` set)."""
    if _logline is None or os.environ.get(ENVIRON_KEY, "") not in ("", "0"):
        return None
    return _logline.line

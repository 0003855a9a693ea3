"""The optional C search of a compiled index (``flask_allow/_lookup.c``), and whether it is used.

The C module is built at install time when a compiler is there; without it, or with the
environment variable ``FLASK_ALLOW_PURE_PYTHON=1`` (read whenever rules are compiled), the engine
searches its index in Python. Both give the same answers (the property tests run both); the C
one is about three times faster, which is what lets a lookup keep up with a C trie.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from . import index as index_module

try:
    from . import _lookup
except ImportError:  # installed without a C compiler
    _lookup = None  # type: ignore[assignment]

ENVIRON_KEY = "FLASK_ALLOW_PURE_PYTHON"
_said: list[bool] = []  # whether the missing C module was reported (once per process)


def available() -> bool:
    """Whether the C module was built and may be used (``FLASK_ALLOW_PURE_PYTHON`` is not set)."""
    return _lookup is not None and os.environ.get(ENVIRON_KEY, "") in ("", "0")


def c_lookup(index: Any, rules: tuple[Any, ...], other: Callable[[str], Any]) -> Callable[[str], Any] | None:
    """``lookup(address) -> rules[label]`` over ``index`` (a ``StaticIndex``) in C, or None.

    ``other(address)`` answers for what the C code does not parse itself: text that is not a
    plain IPv4 or IPv6 address (an IPv6 zone, garbage) and anything that is not a ``str``.
    The index's arrays are held (exported buffers), so they cannot be resized under it; nothing
    changes them in place (a ``StaticIndex`` is never modified once built), which the C search
    relies on: it derives tables of its own when it is made (the low halves of the IPv4
    boundaries; for ``PLAIN_MIN`` boundaries and more, the blocks one label covers whole).
    """
    if not available():
        return None
    found = _lookup.Index(
        rules,
        other,
        index.v4_starts,
        index.v4_labels,
        index.v4_direct,
        index.v4_radix,
        index.v6_high,
        index.v6_low,
        index.v6_labels,
        index.v4_pair,
        len(index.v4_starts) >= index_module.PLAIN_MIN,
    )
    return found.lookup


def why_python() -> str | None:
    """Why indexes are searched in Python (for ``flask allow rules``), or None: they are not."""
    if _lookup is None:
        return "the C module flask_allow._lookup was not built"
    if not available():
        return f"{ENVIRON_KEY} is set"
    return None


def say_if_missing(logger: logging.Logger) -> None:
    """Say once per process, at INFO, that the C module was not built (an install without a compiler)."""
    if _lookup is None and not _said:
        _said.append(True)
        logger.info(
            "flask_allow: the C search (flask_allow._lookup) was not built, likely for want of a C "
            "compiler at install time: indexes are searched in Python (same answers, slower)"
        )

"""What lets the access log decide once, not once a line, whether a line may skip the record.

Every change to the ``flask.allow`` logger or to the access log's handlers (an attribute set or
deleted, a handler or filter added or removed, in place or not) takes a new ``generation``; the
decision is kept for as long as the generation is the one it was made in.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

_counter = itertools.count(1)  # next() is atomic: every change gets a number of its own
#: The number of the last change (read it before looking at what it covers).
generation = 0


def changed() -> None:
    global generation
    generation = next(_counter)


class WatchedList(list[Any]):
    """A list (of handlers, of filters) whose every change in place takes a new ``generation``."""


def _watching(name: str) -> Any:
    method = getattr(list, name)

    def change(self: WatchedList, *args: Any) -> Any:
        try:
            return method(self, *args)
        finally:
            changed()

    change.__name__ = name
    return change


for _name in (
    "append",
    "extend",
    "insert",
    "remove",
    "pop",
    "clear",
    "sort",
    "reverse",
    "__setitem__",
    "__delitem__",
    "__iadd__",
    "__imul__",
):
    setattr(WatchedList, _name, _watching(_name))


class Watched:
    """Mixed into a logger or handler class: an attribute set or deleted takes a new
    ``generation``, and its ``handlers`` and ``filters`` are kept as ``WatchedList``."""

    def __setattr__(self, name: str, value: Any) -> None:
        if (name == "handlers" or name == "filters") and type(value) is list:
            value = WatchedList(value)
        object.__setattr__(self, name, value)
        changed()

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        changed()


class WatchedLogger(Watched, logging.Logger):
    """The ``flask.allow`` logger's class (made so in ``watch_logger``): a ``Logger`` in every other way."""


def watch_logger(logger: logging.Logger) -> None:
    """Make ``logger`` a ``WatchedLogger``, its handlers and filters watched lists."""
    if type(logger) is logging.Logger:
        logger.__class__ = WatchedLogger
    logger.handlers = logger.handlers
    logger.filters = logger.filters

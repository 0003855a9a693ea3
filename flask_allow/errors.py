"""The one exception flask_allow raises for a bad configuration."""

from __future__ import annotations

from typing import Any

_UNSET: Any = object()
_SHOWN = 200  # characters of a value quoted in a message


class ConfigError(ValueError):
    """An invalid configuration, raised at start-up (``init_app``, ``reload``), never per request.

    ``location`` says where (``ADDRESS_RESTRICTION[2].DENY``), ``value`` what was found there; the
    message names both. Several errors found together are one ``ConfigError`` whose ``errors``
    lists each.
    """

    def __init__(self, message: str, location: str | None = None, value: object = _UNSET) -> None:
        self.location = location
        self.value = None if value is _UNSET else value
        if value is not _UNSET:
            shown = repr(value)
            if shown not in message:
                message = f"{message} (got {shown[:_SHOWN]}{'...' if len(shown) > _SHOWN else ''})"
        if location:
            message = f"{location}: {message}"
        super().__init__(message)
        self.errors: list[ConfigError] = [self]


class MatchError(Exception):
    """Raised by a matcher that cannot answer (a DNS outage with ``ALLOW_DNS_ON_ERROR="deny"``).

    The request is denied (fail closed) with this message as the reason. Unlike any other
    exception from a matcher, it is not logged with a traceback: the matcher logs it itself,
    once per cause rather than once per request.
    """

"""The one exception flask_allow raises for a bad configuration."""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid configuration, raised at start-up (``init_app``, ``reload``), never per request.

    ``location`` says where (``ADDRESS_RESTRICTION[2].DENY``), ``value`` what was found there.
    """

    def __init__(self, message: str, location: str | None = None, value: object = None) -> None:
        self.location = location
        self.value = value
        if location:
            message = f"{location}: {message}"
        super().__init__(message)


class MatchError(Exception):
    """Raised by a matcher that cannot answer (a DNS outage with ``ALLOW_DNS_ON_ERROR="deny"``).

    The request is denied (fail closed) with this message as the reason. Unlike any other
    exception from a matcher, it is not logged with a traceback: the matcher logs it itself,
    once per cause rather than once per request.
    """

"""The access log: one line per guarded request, on the ``flask.allow`` logger.

Each app's ``ACCESS_LOG`` handler only takes that app's records (a filter on the record), so
two apps in one process never write into each other's files, and a reload swaps the handler
instead of adding a second one.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import re
import weakref
from typing import Any

from flask import Flask

from . import config as keys
from .decision import Decision
from .errors import ConfigError

logger = logging.getLogger(keys.ACCESS_LOGGER_NAME)
logger.addHandler(logging.NullHandler())

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\\\"\u2028\u2029]")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in '\\"':
        return "\\" + char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: object) -> str:
    """Escape control characters, quotes and backslashes, so one request stays one line."""
    text = str(text)
    return _UNSAFE.sub(_escape_char, text) if _UNSAFE.search(text) else text


def format_line(decision: Decision) -> str:
    """The access log message for a decision."""
    client = decision.client
    request = client.request
    if not decision.enforced and not decision.exempt and not decision.allowed:
        reason = f"{decision.reason} [report-only: let through]"
    else:
        reason = decision.reason
    parts = [escape(client.address or "-"), escape(reason)]
    if request is not None:
        parts.append(escape(request.method))
        parts.append(escape(request.url))
        parts.append(f'"{escape(request.headers.get("User-Agent", ""))}"')
    if client.via:
        parts.append("via " + escape(", ".join(client.via)))
    return " ".join(parts)


class _OnlyApp(logging.Filter):
    """Pass only the records of one app's requests."""

    def __init__(self, owner: object) -> None:
        super().__init__()
        self.owner = owner

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "flask_allow_owner", None) is self.owner


class AccessLog:
    """One app's ``ACCESS_LOG``: a rotating file handler on ``flask.allow``, filtered to the app."""

    def __init__(self, value: Any, app: Flask) -> None:
        options = self.options(value)
        filename = options["filename"]  # a relative name is from the working directory, as in 2.0.x
        try:
            self.file_handler = logging.handlers.RotatingFileHandler(
                filename,
                maxBytes=options["maxBytes"],
                backupCount=options["backupCount"],
                encoding=options["encoding"],
            )
        except OSError as exc:
            raise ConfigError(f"cannot open {filename!r}: {exc.strerror or exc}", keys.ACCESS_LOG, value) from None
        self.file_handler.setFormatter(logging.Formatter(options["formatter"]))
        self.filename = filename
        self.owner = object()  # identity of this app's records
        self.listener: logging.handlers.QueueListener | None = None
        handler: logging.Handler = self.file_handler
        if options["queue"]:
            records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
            self.listener = logging.handlers.QueueListener(records, self.file_handler)
            handler = logging.handlers.QueueHandler(records)
        handler.addFilter(_OnlyApp(self.owner))
        self.handler = handler
        self._extra = {"flask_allow_owner": self.owner}
        #: The ``ACCESS_LOG`` value this was built from (a reload with the same keeps it).
        self.value: Any = value
        #: With no rules at all, lines are INFO (as 2.0.x), not "no rule matched" warnings.
        self.no_rules = False

    @staticmethod
    def options(value: Any) -> dict[str, Any]:
        """Validate ``ACCESS_LOG`` and fill in the defaults."""
        options = dict(keys.ACCESS_LOG_DEFAULTS)
        if isinstance(value, str):
            options["filename"] = value
        elif isinstance(value, dict):
            unknown = sorted(set(value) - set(options))
            if unknown:
                raise ConfigError(
                    f"unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(options)}",
                    keys.ACCESS_LOG,
                    value,
                )
            options.update(value)
        else:
            raise ConfigError(
                f"must be a file name or a dict with 'filename', not {type(value).__name__}",
                keys.ACCESS_LOG,
                value,
            )
        if not isinstance(options["filename"], str) or not options["filename"]:
            raise ConfigError("needs a 'filename' (a non-empty string)", keys.ACCESS_LOG, value)
        for name in ("maxBytes", "backupCount"):
            if not isinstance(options[name], int) or isinstance(options[name], bool) or options[name] < 0:
                raise ConfigError(f"{name!r} must be a whole number >= 0", keys.ACCESS_LOG, value)
        if not isinstance(options["formatter"], str):
            raise ConfigError("'formatter' must be a logging format string", keys.ACCESS_LOG, value)
        if not isinstance(options["queue"], bool):
            raise ConfigError("'queue' must be True or False", keys.ACCESS_LOG, value)
        try:
            "".encode(options["encoding"])  # LookupError for unknown and bytes-to-bytes codecs (base64)
        except (LookupError, TypeError):
            raise ConfigError(
                f"'encoding' {options['encoding']!r} is not a known text encoding", keys.ACCESS_LOG, value
            ) from None
        try:
            logging.Formatter(options["formatter"]).format(
                logging.LogRecord("flask.allow", logging.INFO, __file__, 0, "check", None, None)
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"'formatter' is not usable: {exc}", keys.ACCESS_LOG, value) from None
        return options

    def start(self) -> None:
        """Attach the handler (once) and make sure INFO lines get through."""
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
        if self.handler not in logger.handlers:
            logger.addHandler(self.handler)
        if self.listener is not None:
            self.listener.start()
            atexit.register(_stop_at_exit, weakref.ref(self))

    def stop(self) -> None:
        """Detach and close the handler, writing out what a queue still holds."""
        logger.removeHandler(self.handler)
        if self.listener is not None and self.listener._thread is not None:
            self.listener.stop()
        self.file_handler.close()

    def write(self, decision: Decision) -> None:
        if decision.error is None and decision.rule is None and not decision.exempt and not self.no_rules:
            level = logging.WARNING  # no rule matched: the default decided
        elif decision.allowed:
            level = logging.INFO
        else:
            level = logging.ERROR
        logger.log(level, "%s", format_line(decision), extra=self._extra)


def _stop_at_exit(ref: weakref.ref[AccessLog]) -> None:
    log = ref()
    if log is not None and log.listener is not None and log.listener._thread is not None:
        log.listener.stop()

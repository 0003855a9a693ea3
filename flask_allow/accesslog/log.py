"""The access log: one line per guarded request, on the ``flask.allow`` logger.

Each app's ``ACCESS_LOG`` handler only takes that app's records (a filter on the record), so
two apps in one process never write into each other's files, and a reload swaps the handler
instead of adding a second one. When no one but the app's own file handler would see a record
(the usual set-up), the line is written without making the record, byte for byte as the record
would be written (see ``AccessLog.write``). The message is made in ``line``, formatted in
``formatter``, written by ``file`` (or by ``queue``'s thread with ``"queue": true``); a plain
request's line is made and written in C where it is built (``fastline``).
"""

from __future__ import annotations

import atexit
import functools
import logging
import logging.handlers
import weakref
from typing import Any

from flask import Flask

from .. import config as keys
from ..decision import Decision
from ..errors import ConfigError
from . import fastline, watch
from .file import ERRORS, RECOUNT, _FileHandler
from .formatter import Moment, _Formatter, _Records, clock, logger
from .line import escape, format_line, reason_of, url_of
from .queue import LineQueue

logger.addHandler(logging.NullHandler())
# How a line at a level is written (see AccessLog._way).
_SKIP, _RECORD, _DIRECT, _MADE = 0, 1, 2, 3

__all__ = ["AccessLog", "escape", "format_line", "url_of"]


class _Queued(watch.Watched, logging.Handler):
    """The handler on ``flask.allow`` with ``"queue": true``: hands records to the writer thread."""

    def __init__(self, queue: LineQueue) -> None:
        super().__init__()
        self.queue = queue

    def emit(self, record: logging.LogRecord) -> None:
        self.queue.put(record)


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
            self.file_handler: logging.handlers.RotatingFileHandler = _FileHandler(
                filename,
                maxBytes=options["maxBytes"],
                backupCount=options["backupCount"],
                encoding=options["encoding"],
            )
        except OSError as exc:
            raise ConfigError(f"cannot open {filename!r}: {exc.strerror or exc}", keys.ACCESS_LOG, value) from None
        self._formatter = _Formatter(options["formatter"])
        self._moment = self._formatter.moment
        #: The C maker of a plain request's line, when built and the format is a prefix, the
        #: message and ``_tail`` (see ``fastline``).
        self._make = fastline.maker() if self._formatter.tail is not None and self._formatter.direct else None
        #: The C writer of such a line, when the prefix is also made once a second (the default format).
        self._write = fastline.writer() if self._make is not None and self._formatter.per_second else None
        self._tail = self._formatter.tail or ""
        self.file_handler.setFormatter(self._formatter)
        self.filename = filename
        self.owner = object()  # identity of this app's records
        #: With ``"queue": true``, the thread that writes the lines (see ``flask_allow.accesslog.queue``).
        self.queue: LineQueue | None = None
        handler: logging.Handler = self.file_handler
        if options["queue"]:
            self.queue = LineQueue(self.file_handler)
            handler = _Queued(self.queue)
        self._only = _OnlyApp(self.owner)
        handler.addFilter(self._only)
        self.handler = handler
        self._records = _Records({"flask_allow_owner": self.owner})
        #: The ``ACCESS_LOG`` value this was built from (a reload with the same keeps it).
        self.value: Any = value
        #: With no rules at all, lines are INFO (as 2.0.x), not "no rule matched" warnings.
        self.no_rules = False
        #: What ``_way()`` last worked out: in which ``watch.generation``, with which record
        #: factory, ``Logger`` methods and ``logging.disable()`` level, the way for each level,
        #: and the loggers above ``flask.allow``.
        self._known: tuple[Any, ...] = (-1, None, None, None, None, {}, ())
        #: Set by ``stop()``: a line still handed over is written by ``_late``.
        self._stopped = False

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
        if not _writes_any_text(options["encoding"]):
            raise ConfigError(
                f"'encoding' {options['encoding']!r} is not a text encoding that can write every line"
                f" ({ERRORS!r} escaping what it cannot hold)",
                keys.ACCESS_LOG,
                value,
            )
        try:
            logging.Formatter(options["formatter"]).format(
                logging.LogRecord("flask.allow", logging.INFO, __file__, 0, "check", None, None)
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"'formatter' is not usable: {exc}", keys.ACCESS_LOG, value) from None
        return options

    def start(self) -> None:
        """Attach the handler (once) and make sure INFO lines get through."""
        self._stopped = False
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
        if self.handler not in logger.handlers:
            logger.addHandler(self.handler)
        if self.queue is not None:
            self.queue.start()
            atexit.register(_stop_at_exit, weakref.ref(self))

    def stop(self) -> None:
        """Detach and close the handler, writing out what a queue still holds."""
        self._stopped = True
        logger.removeHandler(self.handler)
        if self.queue is not None:
            self.queue.stop()
        self.file_handler.close()

    def write(self, decision: Decision, app: object = None) -> None:
        """Log the decision's line: written directly when only this app's file would see the
        record, else as a LogRecord through the ``flask.allow`` logger. (``app`` is not used: the
        line is written as the ``flask_allow_decision`` hook is called.)"""
        if decision.error is None and decision.rule is None and not decision.exempt and not self.no_rules:
            level = logging.WARNING  # no rule matched: the default decided
        elif decision.allowed:
            level = logging.INFO
        else:
            level = logging.ERROR
        if self._stopped:
            self._late(level, decision)
            return
        way = self._way(level)
        parts = None
        if way == _MADE:  # a plain request's line, made in C
            parts = self._made(level, decision)
            if parts is True:
                return
        elif way == _SKIP:
            return
        elif way == _RECORD:
            logger.handle(self._records.make(level, format_line(decision)))
            return
        queued, rule = self.queue, decision.rule
        if queued is not None and (rule is None or rule.static):
            # formatted by the writer thread, a batch at a time (warm, not in the request);
            # what it needs is read now: the request, the clock, the thread
            queued.put(functools.partial(self._later, level, decision, decision.client.request, self._moment()))
            return
        # as the file handler would write the record, without making the record
        message = format_line(decision)
        handler = self.file_handler
        try:
            text = self._formatter.line(level, message, self._records, parts=parts)
            if queued is not None:
                queued.put(text)
                return
            with handler.lock:  # type: ignore[union-attr]  # checked by _way()
                handler.put(text)  # type: ignore[attr-defined]
        except RecursionError:
            raise
        except Exception:
            handler.handleError(self._records.make(level, message))

    def _made(self, level: int, decision: Decision) -> Any:
        """Make a plain request's line in C and write it: True when it is written (or its failure
        reported), else the formatter's parts of the line's time for the Python route (or None).

        The C writer makes and writes it in one call; it answers None when the level's prefix is
        not this second's (then made here, and the line by the C maker), False when the request
        is not plain. Whatever fails before the write leaves the line to Python: never lost, never
        written twice.
        """
        client = decision.client
        request = client.request
        if request is None or client.via or request.trusted_hosts is not None or "url" in request.__dict__:
            return None
        try:
            address, reason = client.address or "-", reason_of(decision)
        except Exception:  # never the line's loss: Python makes it
            return None
        handler, now = self.file_handler, clock()  # the clock read once a line
        write, done = self._write, None
        if write is not None:
            try:
                with handler.lock:  # type: ignore[union-attr]  # checked by _way()
                    done = write(
                        self._formatter,
                        now,
                        level,
                        request.environ,
                        request.method,
                        address,
                        reason,
                        self._tail,
                        handler._count,  # type: ignore[attr-defined]
                        handler.maxBytes,
                        handler._fd,  # type: ignore[attr-defined]
                        RECOUNT,
                    )
                    if done.__class__ is bytes:  # a rollover first, maybe
                        handler.put_bytes(done, len(done))  # type: ignore[attr-defined]
            except RecursionError:
                raise
            except Exception:  # not written, or not all of it: as the stdlib's emit()
                handler.handleError(self._records.make(level, format_line(decision)))
                return True
            if done is True or done.__class__ is bytes:
                return True
        try:  # the prefix of a new second (or a format the writer does not take), then the line
            parts = self._formatter.parts(level, self._records, (now, None, None))  # this line's time
            if done is False:  # not plain: Python makes it
                return parts
            data = self._make(  # type: ignore[misc]
                request.environ,
                request.method,
                address,
                reason,
                parts[0],  # type: ignore[index]
                parts[1],  # type: ignore[index]
                parts[2],  # type: ignore[index]
                self._tail,
            )
        except Exception:  # never the line's loss: Python makes it
            return None
        if data is None:
            return parts
        try:
            with handler.lock:  # type: ignore[union-attr]  # checked by _way()
                handler.put_bytes(data, len(data))  # type: ignore[attr-defined]
        except RecursionError:
            raise
        except Exception:
            handler.handleError(self._records.make(level, data.decode("ascii").rstrip("\n")))
        return True

    def _late(self, level: int, decision: Decision) -> None:
        """The line of a request that began before this log was replaced (a reload) or closed:
        its record handed to this log's own handler (the logger has dropped it), so the line is
        written to this log's file all the same, as the record would be (any format); with a
        queue, the stopped queue writes it at once. The file is closed again."""
        record = self._records.make(level, format_line(decision))
        handler = self.file_handler
        with handler.lock:  # type: ignore[union-attr]
            self.handler.handle(record)
            if self.queue is None:
                handler.close()

    def _later(self, level: int, decision: Decision, request: Any, moment: Moment) -> str:
        """A queued line, formatted in the writer thread as it would have been in the request
        (the reason of a static rule or the default does not change; a DNS rule's is not queued)."""
        return self._formatter.line(level, format_line(decision, request), self._records, moment)

    def _direct(self, level: int) -> bool:
        """Whether a line at ``level`` may skip the record: it would reach this app's handler alone."""
        return self._way(level) >= _DIRECT

    def _way(self, level: int) -> int:
        """How a line at ``level`` is written: not at all (``_SKIP``: the level is not enabled),
        as a record (``_RECORD``), or straight to this app's file (``_DIRECT``; ``_MADE``: a
        plain request's line made in C).

        Making the record, the logger's and the handler's calls and the formatter cost more than
        the rest of a line together. Whoever else could see the record (a handler on
        ``flask.allow`` or on a logger it propagates to, a filter, a record factory, a patched
        ``Logger.callHandlers``) gets it as before. What is ours to watch (the ``flask.allow``
        logger, this app's handlers: see ``watch``) is looked at again only when it changed; the
        record factory, ``Logger``'s methods, ``logging.disable()`` and the loggers above on
        every line.
        """
        known = self._known
        if (
            known[0] != watch.generation
            or known[1] is not logging._logRecordFactory  # type: ignore[attr-defined]  # getLogRecordFactory()
            or known[2] is not logging.Logger.callHandlers
            or known[3] is not logging.Logger.handle
            or known[4] != logging.root.manager.disable
        ):
            known = self._relearn()
        way = known[5].get(level)
        if way is None:
            way = _SKIP if not logger.isEnabledFor(level) else _RECORD if not self._direct_now(level) else self._fast
            if logger.level != logging.NOTSET:  # else the loggers above decide the level: asked every line
                known[5][level] = way
        if way > _RECORD and logger.propagate:  # the loggers above are not ours to watch (as callHandlers walks up)
            for parent in known[6]:
                if parent.handlers:
                    return _RECORD
                if not parent.propagate:
                    break
        return way

    def _relearn(self) -> tuple[Any, ...]:
        """Start ``_way()``'s answers afresh, for what is in place now."""
        generation = watch.generation  # read first: a change while the answer is worked out is seen next time
        parents: list[logging.Logger] = []
        found = logger.parent
        while found is not None:
            parents.append(found)
            found = found.parent
        known: tuple[Any, ...] = (
            generation,
            logging._logRecordFactory,  # type: ignore[attr-defined]
            logging.Logger.callHandlers,
            logging.Logger.handle,
            logging.root.manager.disable,
            {},
            tuple(parents),
        )
        self._known = known
        return known

    @property
    def _fast(self) -> int:
        """``_MADE`` when a plain request's line can be made in C and written as it is, else ``_DIRECT``."""
        raw = self._make is not None and self.queue is None and self.file_handler.writes_raw()  # type: ignore[attr-defined]
        return _MADE if raw else _DIRECT

    def _direct_now(self, level: int) -> bool:
        """``_direct()``, worked out."""
        handler = self.file_handler
        return not (
            self._formatter.direct is None
            or (handler is not self.handler and self.queue is None)
            or handler.lock is None
            or level < self.handler.level
            or level < handler.level
            or logging.getLogRecordFactory() is not logging.LogRecord  # someone else's sees every record
            or not self._alone(self.handler)
        )

    def _alone(self, handler: logging.Handler) -> bool:
        """Whether the ``flask.allow`` logger would hand this app's record to ``handler`` alone,
        with the filter and formatter it was given at start."""
        filters = handler.filters
        if (
            logger.disabled
            or logger.filters
            or len(filters) != 1
            or filters[0] is not self._only
            or self.file_handler.formatter is not self._formatter
            or (handler is not self.file_handler and (self.file_handler.filters or self.queue is None))
            or not _PLAIN_LOGGER
            or logging.Logger.callHandlers is not _CALL_HANDLERS  # Sentry, for one, patches it to see every record
            or logging.Logger.handle is not _HANDLE
            or "callHandlers" in logger.__dict__
            or "handle" in logger.__dict__
        ):
            return False
        ours = False
        for other in logger.handlers:
            if other is handler:
                ours = True
            elif type(other) is not logging.NullHandler:
                first = other.filters[0] if other.filters else None
                if not isinstance(first, _OnlyApp) or first.owner is self.owner:  # another app's drops ours
                    return False
        return ours  # the loggers above: see _direct()


_PROBE = 'A line - \\ " \xe9\u20ac\U0001f4a9\n'


def _writes_any_text(encoding: Any) -> bool:
    """Whether ``encoding`` is a text encoding that writes any line, escaping what it cannot hold
    (not an unknown name, a bytes-to-bytes codec such as base64, or one like idna that cannot escape)."""
    try:
        data = _PROBE.encode(encoding, ERRORS)
        return data.decode(encoding).encode("ascii", ERRORS) == _PROBE.encode("ascii", ERRORS)
    except (LookupError, TypeError, ValueError):  # UnicodeError is a ValueError
        return False


def _standard(name: str) -> Any:
    """``logging.Logger.<name>`` when it is the standard library's own, else None."""
    function = getattr(logging.Logger, name)
    standard = getattr(function, "__module__", None) == "logging" and function.__qualname__ == f"Logger.{name}"
    return function if standard else None


_HANDLE, _CALL_HANDLERS = _standard("handle"), _standard("callHandlers")
watch.watch_logger(logger)
_PLAIN_LOGGER = type(logger) is watch.WatchedLogger  # not someone else's subclass (``logging.setLoggerClass``)


def _stop_at_exit(ref: weakref.ref[AccessLog]) -> None:
    log = ref()
    if log is not None and log.queue is not None:
        log.queue.stop()

"""The access log: one line per guarded request, on the ``flask.allow`` logger.

Each app's ``ACCESS_LOG`` handler only takes that app's records (a filter on the record), so
two apps in one process never write into each other's files, and a reload swaps the handler
instead of adding a second one.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import os
import queue
import re
import stat
import sys
import threading
import time
import weakref
from typing import Any

from flask import Flask

from . import config as keys
from .decision import Decision
from .errors import ConfigError

logger = logging.getLogger(keys.ACCESS_LOGGER_NAME)
logger.addHandler(logging.NullHandler())

_RECOUNT = 100  # lines after which the log file's size is read again (see _FileHandler)
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
    # escaping works character by character, so escaping the parts joined is escaping each part
    address = client.address or "-"
    if request is None:
        line = escape(f"{address} {reason}")
    else:
        agent = request.environ.get("HTTP_USER_AGENT", "")  # what request.headers["User-Agent"] reads
        head = escape(f"{address} {reason} {request.method} {url_of(request)}")
        line = f'{head} "{escape(agent)}"'
    if client.via:
        line = f"{line} via {escape(', '.join(client.via))}"
    return line


# The requests whose ``request.url`` is exactly its parts joined (nothing to quote, no IRI
# decoding, no IDNA, no default port, no trusted-hosts check): nearly all. For them the URL is
# put together from the WSGI environ directly, saving werkzeug's round trip through urlsplit.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._~!$&'()*+,;=:@-]*")
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9/._~!$&'()*+,;=:@?-]*")
_PLAIN_HOST = re.compile(r"(?!.*xn--)[a-z0-9.-]+(?::(?!80$|443$)[1-9][0-9]{0,3})?")


def url_of(request: Any) -> str:
    """``request.url``: put together directly for plain requests, else werkzeug's."""
    url = request.__dict__.get("url")  # already worked out (werkzeug caches it)
    if url is not None:
        return str(url)
    environ = request.environ
    scheme, host = request.scheme, environ.get("HTTP_HOST")
    root, path, query = request.root_path, request.path, environ.get("QUERY_STRING", "")
    if (
        host is not None
        and scheme in ("http", "https")
        and request.trusted_hosts is None
        and _PLAIN_HOST.fullmatch(host)
        and _PLAIN_PATH.fullmatch(root)
        and _PLAIN_PATH.fullmatch(path)
        and _PLAIN_QUERY.fullmatch(query)
    ):
        url = f"{scheme}://{host}{root.rstrip('/')}/{path.lstrip('/')}"
        return f"{url}?{query}" if query else url
    return str(request.url)


_PER_RECORD = frozenset(
    {"msg", "args", "levelno", "levelname", "created", "msecs", "relativeCreated", "thread", "threadName", "taskName"}
)
_NS_CLOCK = isinstance(getattr(logging, "_startTime", 0.0), int)  # LogRecord times from time_ns() (3.13+)
_forks = 0  # forks into a child process so far: the process id in a record changes


def _forked() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class _Records:
    """Makes the access log's LogRecords as ``LogRecord()`` would, but works out once per process
    what cannot change within one (the source path split into file and module, the process id
    and name, the app's mark): ``LogRecord()`` was a third of the cost of writing a line.
    Someone else's record factory (``logging.setLogRecordFactory``) is used as it is."""

    def __init__(self, extra: dict[str, Any]) -> None:
        self.extra = extra
        self._template: dict[str, Any] = {}
        self._key: tuple[Any, ...] = ()

    def make(self, level: int, message: str) -> logging.LogRecord:
        key = (_forks, logging.logProcesses, logging.logMultiprocessing)
        if key != self._key or logging.getLogRecordFactory() is not logging.LogRecord:
            record = logger.makeRecord(logger.name, level, __file__, 0, message, (), None, "write", self.extra)
            if logging.getLogRecordFactory() is logging.LogRecord:
                self._template = {k: v for k, v in record.__dict__.items() if k not in _PER_RECORD}
                self._key = key
            return record
        record = logging.LogRecord.__new__(logging.LogRecord)
        fields = record.__dict__
        fields.update(self._template)
        fields["msg"], fields["args"] = message, ()
        fields["levelno"], fields["levelname"] = level, logging.getLevelName(level)
        if _NS_CLOCK:  # as LogRecord.__init__ works out its times, in each version
            now = time.time_ns()
            fields["created"] = created = now / 1e9
            msecs = (now % 1_000_000_000) // 1_000_000 + 0.0
            fields["msecs"] = 0.0 if msecs == 999.0 and int(created) != now // 1_000_000_000 else msecs
            fields["relativeCreated"] = (now - logging._startTime) / 1e6  # type: ignore[attr-defined]
        else:
            fields["created"] = now_s = time.time()
            fields["msecs"] = int((now_s - int(now_s)) * 1000) + 0.0
            fields["relativeCreated"] = (now_s - logging._startTime) * 1000  # type: ignore[attr-defined]
        if logging.logThreads:
            fields["thread"], fields["threadName"] = threading.get_ident(), threading.current_thread().name
        else:
            fields["thread"] = fields["threadName"] = None
        if "taskName" in self._template or sys.version_info >= (3, 12):
            fields["taskName"] = _task_name()
        return record


def _task_name() -> str | None:
    """The running asyncio task's name, as ``LogRecord`` records it (3.12+)."""
    asyncio = sys.modules.get("asyncio") if getattr(logging, "logAsyncioTasks", True) else None
    if asyncio is not None:
        try:
            return str(asyncio.current_task().get_name())
        except Exception:
            pass
    return None


class _Formatter(logging.Formatter):
    """The configured format, with the time stamp worked out once a second instead of once a line."""

    _stamp: tuple[int, Any, str] = (-1, None, "")

    def format(self, record: logging.LogRecord) -> str:
        plain = type(self._style) is logging.PercentStyle
        if not plain or record.args or record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        # the access log's own records: the message as it is, the time, then the format string
        fields = record.__dict__
        fields["message"] = str(record.msg)
        if self.usesTime():
            fields["asctime"] = self.formatTime(record, self.datefmt)
        return self.formatMessage(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt:
            return super().formatTime(record, datefmt)
        second, converter, text = self._stamp
        if second != int(record.created) or converter is not self.converter:
            converter = self.converter
            text = time.strftime(self.default_time_format, converter(record.created))
            self._stamp = (int(record.created), converter, text)
        return self.default_msec_format % (text, record.msecs) if self.default_msec_format else text


class _FileHandler(logging.handlers.RotatingFileHandler):
    """The rotating file handler, minus most of its per-line cost: a record is formatted once (not
    once to size the file and again to write it), and the file's size is kept count of instead
    of asking the system twice a line (two ``stat``, a seek and a tell). The count is checked
    against the file (one ``fstat``) whenever it nears ``maxBytes``, and every ``_RECOUNT`` lines
    for what other processes append, so a rollover happens at the real size."""

    _last: tuple[logging.LogRecord | None, str] = (None, "")
    _size = -1  # the file's size as counted, or -1: ask the file
    _uncounted = 0

    def format(self, record: logging.LogRecord) -> str:
        last, text = self._last
        if last is record:
            return text
        text = super().format(record)
        self._last = (record, text)
        return text

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.stream is None:  # opened lazily
            self.stream = self._open()
            self._size = -1
        if self.maxBytes <= 0:
            return False
        length = len(self.format(record)) + 1  # in characters, as the stdlib counts
        self._uncounted += 1
        if self._size < 0 or self._size + length >= self.maxBytes or self._uncounted >= _RECOUNT:
            found = os.fstat(self.stream.fileno())
            if not stat.S_ISREG(found.st_mode):  # never roll over anything but a regular file (bpo-45401)
                return False
            self._size, self._uncounted = found.st_size, 0
        if self._size + length >= self.maxBytes:
            return True
        self._size += length
        return False

    def doRollover(self) -> None:
        super().doRollover()
        self._size = -1

    def emit(self, record: logging.LogRecord) -> None:
        # RotatingFileHandler.emit, FileHandler.emit and StreamHandler.emit in one, the lock held
        try:
            if self.shouldRollover(record):
                self.doRollover()
            if self.stream is None and (self.mode != "w" or not self._closed):  # type: ignore[attr-defined]
                self.stream = self._open()
            stream = self.stream
            if stream:
                stream.write(self.format(record) + self.terminator)
                stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self._last = (None, "")
        self._size = -1
        super().close()


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
        self.file_handler.setFormatter(_Formatter(options["formatter"]))
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
        self._records = _Records({"flask_allow_owner": self.owner})
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
        if logger.isEnabledFor(level):  # as logger.log does, minus looking up the caller's frame
            logger.handle(self._records.make(level, format_line(decision)))


def _stop_at_exit(ref: weakref.ref[AccessLog]) -> None:
    log = ref()
    if log is not None and log.listener is not None and log.listener._thread is not None:
        log.listener.stop()

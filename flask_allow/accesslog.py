"""The access log: one line per guarded request, on the ``flask.allow`` logger.

Each app's ``ACCESS_LOG`` handler only takes that app's records (a filter on the record), so
two apps in one process never write into each other's files, and a reload swaps the handler
instead of adding a second one. When no one but the app's own file handler would see a record
(the usual set-up), the line is written without making the record, byte for byte as the record
would be written (see ``AccessLog.write``).
"""

from __future__ import annotations

import atexit
import codecs
import functools
import logging
import logging.handlers
import operator
import os
import re
import stat
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from flask import Flask

from . import config as keys
from .decision import Decision
from .errors import ConfigError
from .logqueue import LineQueue

logger = logging.getLogger(keys.ACCESS_LOGGER_NAME)
logger.addHandler(logging.NullHandler())

_RECOUNT = 100  # lines after which the log file's size is read again (see _FileHandler)
# Encodings without a byte-order mark or other state: a line is written as ``str.encode``
# encodes it, straight to the file descriptor (see _FileHandler.put).
_STATELESS = frozenset({"utf-8", "ascii", "iso8859-1"})

# -- the line ------------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\\\"\u2028\u2029]")
# What _UNSAFE takes of ASCII text, deleted by ``bytes.translate`` to find out, in C, that a line
# has nothing to escape (a third of the cost of _UNSAFE's search or of ``str.isprintable``).
_UNSAFE_ASCII = bytes(range(0x20)) + b'\x7f\\"'


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in '\\"':
        return "\\" + char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: object) -> str:
    """Escape control characters, quotes and backslashes, so one request stays one line."""
    text = text if type(text) is str else str(text)
    if text.isascii() and len(text.encode("ascii").translate(None, _UNSAFE_ASCII)) == len(text):
        return text
    return _UNSAFE.sub(_escape_char, text)


def format_line(decision: Decision, request: Any = None) -> str:
    """The access log message for a decision (``request``: the client's, when not given)."""
    client = decision.client
    reason = decision.reason
    if not decision.enforced and not decision.exempt and not decision.allowed:
        reason = f"{reason} [report-only: let through]"
    # escaping works character by character, so escaping the parts joined is escaping each part
    address = client.address or "-"
    if request is None:
        request = client.request
    if request is None:
        line = escape(f"{address} {reason}")
    else:
        agent = request.environ.get("HTTP_USER_AGENT", "")  # what request.headers["User-Agent"] reads
        method, url = request.method, url_of(request)
        line = f'{address} {reason} {method} {url} "{agent}"'
        # nothing to escape when the only characters to escape are the two quotes put around the agent
        if not line.isascii() or len(line.encode("ascii").translate(None, _UNSAFE_ASCII)) != len(line) - 2:
            line = f'{escape(f"{address} {reason} {method} {url}")} "{escape(agent)}"'
    if client.via:
        line = f"{line} via {escape(', '.join(client.via))}"
    return line


# The requests whose ``request.url`` is exactly its parts joined (nothing to quote, no IRI
# decoding, no IDNA, no default port, no trusted-hosts check): nearly all. For them the URL is
# put together from the WSGI environ directly, saving werkzeug's round trip through urlsplit.
# One match checks "host root path query" at once: a space is in none of the plain parts.
_PLAIN_PARTS = re.compile(
    r"(?![^ ]*xn--)[a-z0-9.-]+(?::(?!(?:80|443) )[1-9][0-9]{0,3})?"  # host, no IDNA, no default port
    r" [A-Za-z0-9/._~!$&'()*+,;=:@-]*"  # SCRIPT_NAME
    r" [A-Za-z0-9/._~!$&'()*+,;=:@-]*"  # PATH_INFO
    r" [A-Za-z0-9/._~!$&'()*+,;=:@?-]*"  # QUERY_STRING
)


def url_of(request: Any) -> str:
    """``request.url``: put together from the WSGI environ for plain requests, else werkzeug's."""
    url = request.__dict__.get("url")  # already worked out (werkzeug caches it)
    if url is not None:
        return str(url)
    environ = request.environ
    host, scheme = environ.get("HTTP_HOST"), environ.get("wsgi.url_scheme", "http")
    # werkzeug decodes these from latin-1 to UTF-8: plain text is ASCII, the same either way
    root, path, query = environ.get("SCRIPT_NAME") or "", environ.get("PATH_INFO") or "", environ.get("QUERY_STRING")
    if (
        host is not None
        and (scheme == "http" or scheme == "https")
        and request.trusted_hosts is None
        and _PLAIN_PARTS.fullmatch(f"{host} {root} {path} {query or ''}")
    ):
        if root:
            root = root.rstrip("/")
        url = f"{scheme}://{host}{root}/{path.lstrip('/')}"
        return f"{url}?{query}" if query else url
    return str(request.url)


# -- records, and lines as records would be formatted ----------------------------------------------

_PER_RECORD = frozenset(
    {"msg", "args", "levelno", "levelname", "created", "msecs", "relativeCreated", "thread", "threadName", "taskName"}
)
_NS_CLOCK = isinstance(getattr(logging, "_startTime", 0.0), int)  # LogRecord times from time_ns() (3.13+)
_TASK_NAME = sys.version_info >= (3, 12)  # LogRecord has a taskName
_forks = 0  # forks into a child process so far: the process id in a record changes


def _forked() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def _times() -> tuple[float, int, float, float]:
    """``created``, its whole second, ``msecs`` and ``relativeCreated``, as ``LogRecord.__init__``
    works them out in each version."""
    if _NS_CLOCK:
        now = time.time_ns()
        created = now / 1e9
        msecs = (now % 1_000_000_000) // 1_000_000 + 0.0
        if msecs == 999.0 and int(created) != now // 1_000_000_000:
            msecs = 0.0
        return created, int(created), msecs, (now - logging._startTime) / 1e6  # type: ignore[attr-defined]
    created = time.time()
    second = int(created)
    return created, second, int((created - second) * 1000) + 0.0, (created - logging._startTime) * 1000  # type: ignore[attr-defined]


#: A line's time and thread, read when it was logged: see ``_Formatter.moment()``.
Moment = tuple[tuple[float, int, float, float] | None, tuple[int | None, str | None] | None, str | None]


def _thread() -> tuple[int | None, str | None]:
    """``thread`` and ``threadName``, as ``LogRecord`` records them."""
    if logging.logThreads:
        return threading.get_ident(), threading.current_thread().name
    return None, None


def _task_name() -> str | None:
    """The running asyncio task's name, as ``LogRecord`` records it (3.12+)."""
    asyncio = sys.modules.get("asyncio") if getattr(logging, "logAsyncioTasks", True) else None
    if asyncio is not None:
        try:
            return str(asyncio.current_task().get_name())
        except Exception:
            pass
    return None


class _Records:
    """Makes the access log's LogRecords as ``LogRecord()`` would, but works out once per process
    what cannot change within one (the source path split into file and module, the process id
    and name, the app's mark): ``LogRecord()`` was a third of the cost of writing a line.
    Someone else's record factory (``logging.setLogRecordFactory``) is used as it is."""

    def __init__(self, extra: dict[str, Any]) -> None:
        self.extra = extra
        self._template: dict[str, Any] = {}
        self._key: tuple[Any, ...] = ()

    def template(self) -> dict[str, Any] | None:
        """A record's fields that stay the same within a process, or None when someone else's
        record factory makes the records."""
        if logging.getLogRecordFactory() is not logging.LogRecord:
            return None
        key = (_forks, logging.logProcesses, logging.logMultiprocessing)
        if key != self._key:
            record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, "", (), None, "write", self.extra)
            self._template = {k: v for k, v in record.__dict__.items() if k not in _PER_RECORD}
            self._key = key
        return self._template

    def make(self, level: int, message: str) -> logging.LogRecord:
        template = self.template()
        if template is None:
            return logger.makeRecord(logger.name, level, __file__, 0, message, (), None, "write", self.extra)
        record = logging.LogRecord.__new__(logging.LogRecord)
        fields = record.__dict__
        fields.update(template)
        fields["msg"], fields["args"] = message, ()
        fields["levelno"], fields["levelname"] = level, logging.getLevelName(level)
        fields["created"], _, fields["msecs"], fields["relativeCreated"] = _times()
        fields["thread"], fields["threadName"] = _thread()
        if _TASK_NAME:
            fields["taskName"] = _task_name()
        return record


# The fields of a format that the access log fills in without a LogRecord: those a record takes
# from the process (the template) and those worked out per line.
_TEMPLATE_FIELDS = frozenset({"name", "pathname", "filename", "module", "lineno", "funcName", "process", "processName"})
_LINE_FIELDS = frozenset(
    {"message", "msg", "asctime", "levelname", "levelno", "created", "msecs", "relativeCreated", "thread", "threadName"}
    | ({"taskName"} if _TASK_NAME else set())
)
_CONVERSION = re.compile(r"%%|%\((\w+)\)([#0+ -]*[0-9]*(?:\.[0-9]+)?[diouxXeEfFgGcrsa])")


def _positional(style: logging.PercentStyle) -> tuple[str, tuple[str, ...]] | None:
    """A plain %-style format as a format for a tuple and the names of the tuple's fields, when
    the access log can fill in each of them; else None."""
    fmt = style._fmt
    if type(style) is not logging.PercentStyle or getattr(style, "_defaults", None) or "%" in _CONVERSION.sub("", fmt):
        return None
    names = tuple(match[0] for match in _CONVERSION.findall(fmt) if match[0])
    if not set(names) <= _TEMPLATE_FIELDS | _LINE_FIELDS:
        return None
    return _CONVERSION.sub(lambda match: "%" + match[2] if match[1] else "%%", fmt), names


def _picker(names: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """What takes the values of ``names`` from a dict, as a tuple (``itemgetter`` of one name
    gives the bare value)."""
    if len(names) > 1:
        return operator.itemgetter(*names)
    if names:
        only = names[0]
        return lambda values: (values[only],)
    return lambda values: ()


class _Formatter(logging.Formatter):
    """The configured format, with the time stamp worked out once a second instead of once a line.

    ``line()`` formats the access log's line as ``format()`` would format its record, without
    the record, for the plain %-style formats whose fields are all known (``direct``)."""

    _stamp: tuple[int, Any, str] = (-1, None, "")

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, style: Any = "%") -> None:
        super().__init__(fmt, datefmt, style)
        found = None if datefmt else _positional(self._style)
        fmt, names = found or ("", ())
        #: The fields the format uses, when ``line()`` can fill them in, else None.
        self.direct = None if found is None else frozenset(names)
        self._positional = fmt
        self._pick = _picker(names)
        fields = frozenset(names)
        self._from_template = tuple(sorted(fields & _TEMPLATE_FIELDS))
        self._time = bool(fields & {"asctime", "created", "msecs", "relativeCreated"})
        self._relative = "relativeCreated" in fields
        self._times = bool(fields & {"created", "msecs", "relativeCreated"})
        self._last: tuple[Any, str] = ((), "")  # (second, msecs, converter, msec format), asctime
        self._asctime, self._thread, self._task = (
            "asctime" in fields,
            bool(fields & {"thread", "threadName"}),
            "taskName" in fields,
        )
        self._template: dict[str, Any] | None = None
        self._static: dict[str, Any] = {}

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

    def moment(self) -> Moment:
        """What ``line()`` reads from the clock and the running thread, read now: for a line
        formatted later, in another thread (``"queue": true``)."""
        return (
            _times() if self._time else None,
            _thread() if self._thread else None,
            _task_name() if self._task else None,
        )

    def line(self, level: int, message: str, records: _Records, moment: Moment | None = None) -> str:
        """What ``format()`` makes of the access log's record (at ``level``, for ``message``, as
        ``records`` would make it), the fields worked out as the record's; as at ``moment`` when
        given (see ``moment()``), else now."""
        levelname = logging._levelToName.get(level) or logging.getLevelName(level)
        values = {"message": message, "msg": message, "levelno": level, "levelname": levelname}
        if self._from_template:
            template = records.template()
            if template is not self._template:  # the first line, or in a new process
                self._static = {name: template[name] for name in self._from_template}  # type: ignore[index]
                self._template = template
            values.update(self._static)
        if self._time:
            created: float
            second: float
            if moment is not None:
                created, second, msecs, relative = moment[0]  # type: ignore[misc]
            elif _NS_CLOCK or (created := time.time()) < 0:
                created, second, msecs, relative = _times()
            else:  # _times(), inline (it was a third of the line's cost); for times >= 0 floor is int()
                second = created // 1
                msecs = (created - second) * 1000 // 1
                relative = (created - logging._startTime) * 1000 if self._relative else 0.0  # type: ignore[attr-defined]
            if self._times:
                values["created"], values["msecs"], values["relativeCreated"] = created, msecs, relative
            if self._asctime:  # stamp(), inline, and the text kept for the rest of the millisecond
                converter, msec_format = self.converter, self.default_msec_format
                key, last = (second, msecs, converter, msec_format), self._last  # read once: threads
                if key == last[0]:
                    values["asctime"] = last[1]
                else:
                    stamped, stamp_converter, text = self._stamp
                    if stamped != second or stamp_converter is not converter:
                        text = self._restamp(created)
                    values["asctime"] = asctime = msec_format % (text, msecs) if msec_format else text
                    self._last = (key, asctime)
        if self._thread:
            values["thread"], values["threadName"] = _thread() if moment is None else moment[1]  # type: ignore[misc]
        if self._task:
            values["taskName"] = _task_name() if moment is None else moment[2]
        return self._positional % self._pick(values)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt:
            return super().formatTime(record, datefmt)
        return self.stamp(record.created, record.msecs)

    def stamp(self, created: float, msecs: float) -> str:
        """``formatTime()`` without a date format, the text up to the second worked out once a second."""
        second, converter, text = self._stamp
        if second != int(created) or converter is not self.converter:
            text = self._restamp(created)
        return self.default_msec_format % (text, msecs) if self.default_msec_format else text

    def _restamp(self, created: float) -> str:
        converter = self.converter
        text = time.strftime(self.default_time_format, converter(created))
        self._stamp = (int(created), converter, text)
        return text


# -- the file ---------------------------------------------------------------------------------------


class _FileHandler(logging.handlers.RotatingFileHandler):
    """The rotating file handler, minus most of its per-line cost: a line is formatted once (not
    once to size the file and again to write it) and, in a stateless encoding, written to the
    file descriptor in one system call (not through the text and the buffered stream, each
    flushed); and the file's size is kept count of instead of asking the system twice a line
    (two ``stat``, a seek and a tell). The count is checked against the file (one ``fstat``)
    whenever it nears ``maxBytes``, and every ``_RECOUNT`` lines for what other processes
    append, so a rollover happens at the real size."""

    _size = -1  # the file's size as counted, or -1: ask the file
    _uncounted = 0
    _raw: Any = None  # the stream whose file descriptor ``put`` writes to (see _open)
    _fd = -1

    def _open(self) -> Any:
        stream = super()._open()
        raw = os.linesep == "\n" and "a" in self.mode and _stateless(self.encoding)
        self._raw, self._fd = (stream, stream.fileno()) if raw else (None, -1)
        self._encoding, self._errors = self.encoding or "utf-8", self.errors or "strict"
        return stream

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        return self._rolls(len(self.format(record)) + 1)

    def _rolls(self, length: int) -> bool:
        """Whether a line of ``length`` characters (as the stdlib counts) takes a rollover first."""
        if self.stream is None:  # opened lazily
            self.stream = self._open()
            self._size = -1
        if self.maxBytes <= 0:
            return False
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

    def put(self, text: str) -> None:
        """Write one formatted line, rolling over first when it would not fit (the lock held):
        ``RotatingFileHandler.emit``, ``FileHandler.emit`` and ``StreamHandler.emit`` in one."""
        length, size = len(text) + 1, self._size
        if size >= 0 and size + length < self.maxBytes and self._uncounted < _RECOUNT - 1 and self.stream is not None:
            self._size, self._uncounted = size + length, self._uncounted + 1  # what _rolls() would do
        elif self._rolls(length):
            self.doRollover()
        self._send(text + self.terminator)

    def put_many(self, texts: list[str]) -> None:
        """``put`` each line (the lock held), writing consecutive ones in one call.

        Before the file's size is read again (every ``_RECOUNT`` lines, near ``maxBytes``), the
        lines gathered are written, so that the size read is the real one.
        """
        chunk: list[str] = []
        terminator = self.terminator
        for text in texts:
            length, size = len(text) + 1, self._size
            counted = size >= 0 and size + length < self.maxBytes and self._uncounted < _RECOUNT - 1
            if counted and self.stream is not None:
                self._size, self._uncounted = size + length, self._uncounted + 1
            else:
                if chunk:
                    self._send(terminator.join(chunk) + terminator)
                    chunk = []
                if self._rolls(length):
                    self.doRollover()
            chunk.append(text)
        if chunk:
            self._send(terminator.join(chunk) + terminator)

    def _send(self, text: str) -> None:
        """Write formatted lines, terminators included, and flush them."""
        stream = self.stream
        if stream is None and (self.mode != "w" or not self._closed):  # type: ignore[attr-defined]
            self.stream = stream = self._open()
        if stream is not None and stream is self._raw:  # the bytes the stream would write, in one call
            data = text.encode(self._encoding, self._errors)
            done = os.write(self._fd, data)
            while done < len(data):  # a short write (a full disk, a signal): the rest, or the error
                more = os.write(self._fd, data[done:])
                if not more:
                    raise OSError(f"could not write to {self.baseFilename!r}")
                done += more
        elif stream:
            stream.write(text)
            stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.put(self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self._size = -1
        self._raw = None
        super().close()


def _stateless(encoding: str | None) -> bool:
    try:
        return codecs.lookup(encoding or "").name in _STATELESS
    except LookupError:  # "locale", or unknown
        return False


class _Queued(logging.Handler):
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
        self.file_handler.setFormatter(self._formatter)
        self.filename = filename
        self.owner = object()  # identity of this app's records
        #: With ``"queue": true``, the thread that writes the lines (see ``flask_allow.logqueue``).
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
        if self.queue is not None:
            self.queue.start()
            atexit.register(_stop_at_exit, weakref.ref(self))

    def stop(self) -> None:
        """Detach and close the handler, writing out what a queue still holds."""
        logger.removeHandler(self.handler)
        if self.queue is not None:
            self.queue.stop()
        self.file_handler.close()

    def write(self, decision: Decision) -> None:
        """Log the decision's line: written directly when only this app's file would see the
        record, else as a LogRecord through the ``flask.allow`` logger."""
        if decision.error is None and decision.rule is None and not decision.exempt and not self.no_rules:
            level = logging.WARNING  # no rule matched: the default decided
        elif decision.allowed:
            level = logging.INFO
        else:
            level = logging.ERROR
        if logger.isEnabledFor(level):  # as logger.log does, minus looking up the caller's frame
            queued, rule = self.queue, decision.rule
            if queued is not None and (rule is None or rule.static) and self._direct(level):
                # formatted by the writer thread, a batch at a time (warm, not in the request);
                # what it needs is read now: the request, the clock, the thread
                queued.put(functools.partial(self._later, level, decision, decision.client.request, self._moment()))
                return
            message = format_line(decision)
            if not self._write_directly(level, message):
                logger.handle(self._records.make(level, message))

    def _later(self, level: int, decision: Decision, request: Any, moment: Moment) -> str:
        """A queued line, formatted in the writer thread as it would have been in the request
        (the reason of a static rule or the default does not change; a DNS rule's is not queued)."""
        return self._formatter.line(level, format_line(decision, request), self._records, moment)

    def _write_directly(self, level: int, message: str) -> bool:
        """Write the line as the file handler would write the record, without making the record,
        when the record would reach that handler and no one else; else return False.

        Making the record, the logger's and the handler's calls and the formatter cost more than
        the rest of a line together. Whoever else could see the record (a handler on
        ``flask.allow`` or on a logger it propagates to, a filter, a record factory, a patched
        ``Logger.callHandlers``) gets it as before: that is checked on every line.
        """
        handler, formatter, queued = self.file_handler, self._formatter, self.queue
        if not self._direct(level):
            return False
        lock = handler.lock
        assert lock is not None  # checked by _direct()
        try:
            text = formatter.line(level, message, self._records)
            if queued is not None:
                queued.put(text)
                return True
            with lock:
                handler.put(text)  # type: ignore[attr-defined]
        except RecursionError:
            raise
        except Exception:
            handler.handleError(self._records.make(level, message))
        return True

    def _direct(self, level: int) -> bool:
        """Whether a line at ``level`` may skip the record: it would reach this app's handler alone."""
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
        if not ours:
            return False
        found = logger
        while found.propagate and found.parent is not None:  # as Logger.callHandlers walks up
            found = found.parent
            if found.handlers:
                return False
        return True


def _standard(name: str) -> Any:
    """``logging.Logger.<name>`` when it is the standard library's own, else None."""
    function = getattr(logging.Logger, name)
    standard = getattr(function, "__module__", None) == "logging" and function.__qualname__ == f"Logger.{name}"
    return function if standard else None


_HANDLE, _CALL_HANDLERS = _standard("handle"), _standard("callHandlers")
_PLAIN_LOGGER = type(logger) is logging.Logger  # not a subclass (``logging.setLoggerClass``)


def _stop_at_exit(ref: weakref.ref[AccessLog]) -> None:
    log = ref()
    if log is not None and log.queue is not None:
        log.queue.stop()

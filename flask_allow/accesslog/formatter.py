"""The access log's records, and its lines formatted as its records would be, without them."""

from __future__ import annotations

import logging
import operator
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import config as keys

logger = logging.getLogger(keys.ACCESS_LOGGER_NAME)
#: Where the access log's records say they come from (``%(pathname)s``, ``%(module)s``): the
#: module that writes them (``log.py``), the same for every line whichever module made it.
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "log.py")

_PER_RECORD = frozenset(
    {"msg", "args", "levelno", "levelname", "created", "msecs", "relativeCreated", "thread", "threadName", "taskName"}
)
_NS_CLOCK = isinstance(getattr(logging, "_startTime", 0.0), int)  # LogRecord times from time_ns() (3.13+)
_TASK_NAME = sys.version_info >= (3, 12)  # LogRecord has a taskName
_forks = 0  # forks into a child process so far: the process id in a record changes


def clock() -> float | int:
    """The clock as ``_Formatter.parts()`` reads it: ``time.time()``, or ``time.time_ns()`` where
    records use it; looked up at each call, so a patched clock (tests, freezegun) is the one read."""
    return time.time_ns() if _NS_CLOCK else time.time()


def _forked() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def _times(now: float | None = None) -> tuple[float, int, float, float]:
    """``created``, its whole second, ``msecs`` and ``relativeCreated``, as ``LogRecord.__init__``
    works them out in each version, for the clock as read by ``moment()`` (default: read now)."""
    if _NS_CLOCK:
        ns = time.time_ns() if now is None else int(now)
        created = ns / 1e9
        msecs = (ns % 1_000_000_000) // 1_000_000 + 0.0
        if msecs == 999.0 and int(created) != ns // 1_000_000_000:
            msecs = 0.0
        return created, int(created), msecs, (ns - logging._startTime) / 1e6  # type: ignore[attr-defined]
    created = time.time() if now is None else now
    second = int(created)
    return created, second, int((created - second) * 1000) + 0.0, (created - logging._startTime) * 1000  # type: ignore[attr-defined]


#: A line's time and thread, read when it was logged: see ``_Formatter.moment()``.
Moment = tuple[float | None, tuple[int | None, str | None] | None, str | None]


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
            record = logger.makeRecord(logger.name, logging.INFO, SOURCE, 0, "", (), None, "write", self.extra)
            self._template = {k: v for k, v in record.__dict__.items() if k not in _PER_RECORD}
            self._key = key
        return self._template

    def make(self, level: int, message: str) -> logging.LogRecord:
        template = self.template()
        if template is None:
            return logger.makeRecord(logger.name, level, SOURCE, 0, message, (), None, "write", self.extra)
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


_PREFIX_FIELDS = frozenset({"asctime", "levelname", "levelno", "msecs"}) | _TEMPLATE_FIELDS


def _tail(style: logging.PercentStyle) -> str | None:
    """The text after the message, when the format's only message field is a plain ``%(message)s``
    (or ``msg``) after every field that changes within a millisecond and level (none may follow
    it); else None."""
    matches = [match for match in _CONVERSION.finditer(style._fmt) if match[1]]
    messages = [match for match in matches if match[1] in ("message", "msg")]
    if len(messages) != 1 or messages[0][2] != "s" or matches[-1] is not messages[0]:
        return None
    if not {match[1] for match in matches[:-1]} <= _PREFIX_FIELDS:
        return None
    return style._fmt[messages[0].end() :] % ()


def _msecs_at(style: logging.PercentStyle) -> int | None:
    """Where ``asctime`` starts in a line, when it is the format's first field, a plain ``%(asctime)s``,
    and no other field (``msecs``) holds the milliseconds; else None."""
    matches = [match for match in _CONVERSION.finditer(style._fmt) if match[1]]
    if not matches or matches[0][1] != "asctime" or matches[0][2] != "s":
        return None
    if any(match[1] in ("asctime", "msecs") for match in matches[1:]):
        return None
    return len(style._fmt[: matches[0].start()] % ())


_NO_PREFIX: tuple[Any, str, str] = ((), "", "")  # a level whose text is not made yet


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
        #: The text after the message (fields-free), when a line is a prefix, the message and this:
        #: the prefix is then made once per millisecond and level (see ``line()``).
        self._tail: str | None = _tail(self._style) if found is not None else None
        #: Per level, its text before the message: ``(key, head, middle)`` (see ``parts()``), one
        #: entry a level so that lines of several levels in turn (allowed, denied) each keep theirs.
        self._prefixes: dict[int, tuple[Any, str, str]] = {}
        #: Where the milliseconds are in that text, when they are in ``asctime`` alone and it comes
        #: first: the text is then made once a second and level, the milliseconds put in per line.
        self._msecs_at = _msecs_at(self._style) if self._tail is not None else None

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
            clock() if self._time else None,  # the rest: later
            _thread() if self._thread else None,
            _task_name() if self._task else None,
        )

    def line(
        self,
        level: int,
        message: str,
        records: _Records,
        moment: Moment | None = None,
        parts: tuple[str, int, str] | None = None,
    ) -> str:
        """What ``format()`` makes of the access log's record (at ``level``, for ``message``, as
        ``records`` would make it), the fields worked out as the record's; as at ``moment`` when
        given (see ``moment()``), else now; with the ``parts()`` already read, when given."""
        if parts is None:
            parts = self.parts(level, records, moment)
        if parts is None:
            return self._line(level, message, records, moment)
        head, msecs, middle = parts
        if msecs < 0:
            return f"{head}{message}{self._tail}"
        return f"{head}{msecs:03d}{middle}{message}{self._tail}"

    def parts(self, level: int, records: _Records, moment: Moment | None = None) -> tuple[str, int, str] | None:
        """The text before the message of a line at ``level``, now (or at ``moment``): ``(head,
        msecs, middle)``, the line being ``head``, ``msecs`` as three digits (none when -1),
        ``middle``, the message and ``tail``. None when the format is not one such.

        For a format whose fields before the message change only with the millisecond and the
        level (the default's), the text is made once per both; when the milliseconds are
        ``asctime``'s alone, once a second and level."""
        tail = self._tail
        if tail is None:
            return None
        now: Any
        second: float
        if moment is not None:
            now = moment[0]
            _, second, msecs, _ = _times(now)
        elif _NS_CLOCK or (now := time.time()) < 0:
            now = time.time_ns() if _NS_CLOCK else now
            _, second, msecs, _ = _times(now)
        else:  # _times(), inline: for times >= 0 floor is int()
            second = now // 1
            msecs = (now - second) * 1000 // 1
        template = records.template() if self._from_template else None
        at, msec_format = self._msecs_at, self.default_msec_format
        if at is not None and msec_format == "%s,%03d":
            key: tuple[Any, ...] = (second, level, self.converter, msec_format, template)
            found = self._prefixes.get(level, _NO_PREFIX)  # read once: threads
            if found[0] == key:
                return found[1], int(msecs), found[2]
            text = self._line(level, "", records, (now, None, None))
            stamp = time.strftime(self.default_time_format, self.converter(second))
            end = at + len(stamp) + 1  # the text up to the second, then ","
            if text[at:end] == f"{stamp},":  # else a line of its own (a converter that changed meanwhile)
                found = (key, text[:end], text[end + 3 : len(text) - len(tail)])
                self._prefixes[level] = found
                return found[1], int(msecs), found[2]
            return text[: len(text) - len(tail)], -1, ""
        key = (second, msecs, level, self.converter, msec_format, template)
        found = self._prefixes.get(level, _NO_PREFIX)
        if found[0] != key:
            text = self._line(level, "", records, (now, None, None))
            found = (key, text[: len(text) - len(tail)], "")
            self._prefixes[level] = found
        return found[1], -1, ""

    @property
    def per_second(self) -> bool:
        """Whether ``parts()`` keeps a level's text in ``_prefixes`` once a second, its key
        ``(second, level, converter, msec format, None)``: what the C writer reads (see ``fastline``)."""
        return self._msecs_at is not None and not self._from_template

    @property
    def tail(self) -> str | None:
        """The text after the message, when ``parts()`` gives the text before it, else None."""
        return self._tail

    def _line(self, level: int, message: str, records: _Records, moment: Moment | None = None) -> str:
        """``line()``, every field worked out."""
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
                created, second, msecs, relative = _times(moment[0])
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

"""The access log's rotating file handler, minus most of the standard one's cost per line, safe
when several processes (gunicorn's workers) write and rotate one file.

Every line is written with ``backslashreplace``: what the encoding cannot hold is written as
``\\xe9``, ``\\u20ac``, so no line is ever lost to its encoding.
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import logging
import logging.handlers
import os
import stat
from collections.abc import Iterator
from typing import Any

from . import fastline
from .watch import Watched

RECOUNT = 100  # lines after which the log file's size is read again (see _FileHandler)
# Encodings without a byte-order mark or other state: a line is written as ``str.encode``
# encodes it, straight to the file descriptor (see _FileHandler.put).
_STATELESS = frozenset({"utf-8", "ascii", "iso8859-1"})
#: How the access log encodes what its encoding cannot hold: ``\\xe9``, ``\\u20ac``, ``\\U0001f4a9``,
#: as ``escape`` writes control characters.
ERRORS = "backslashreplace"


class _FileHandler(Watched, logging.handlers.RotatingFileHandler):
    """The rotating file handler, minus most of its per-line cost: a line is formatted once (not
    once to size the file and again to write it) and, in a stateless encoding, written to the
    file descriptor in one system call (not through the text and the buffered stream, each
    flushed); and the file's size is kept count of instead of asking the system twice a line
    (two ``stat``, a seek and a tell). The count is checked against the file (one ``fstat``)
    whenever it nears ``maxBytes``, and every ``RECOUNT`` lines for what other processes
    append, so a rollover happens at the real size."""

    _raw: Any = None  # the stream whose file descriptor ``put`` writes to (see _open)
    _fd = -1
    _lock_fd = -1  # the lock file's (see _rotation_lock)

    def __init__(self, filename: str, maxBytes: int = 0, backupCount: int = 0, encoding: str | None = None) -> None:
        # in an object of its own: the handler's attributes change only with its set-up (and C updates it)
        self._count = fastline.count()
        super().__init__(filename, maxBytes=maxBytes, backupCount=backupCount, encoding=encoding, errors=ERRORS)

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
            self._count.size = -1
        if self.maxBytes <= 0:
            return False
        self._count.uncounted += 1
        if self._count.size < 0 or self._count.size + length >= self.maxBytes or self._count.uncounted >= RECOUNT:
            found = os.fstat(self.stream.fileno())
            if not stat.S_ISREG(found.st_mode):  # never roll over anything but a regular file (bpo-45401)
                return False
            if not self._names(found):  # another process rolled the file over: write to the new one
                self._reopen()
                found = os.fstat(self.stream.fileno())
            self._count.size, self._count.uncounted = found.st_size, 0
        if self._count.size + length >= self.maxBytes:
            return True
        self._count.size += length
        return False

    def _names(self, found: os.stat_result) -> bool:
        """Whether the file name still names the file written to (``found``: its ``fstat``)."""
        try:
            named = os.stat(self.baseFilename)
        except FileNotFoundError:
            return False
        return (named.st_ino, named.st_dev) == (found.st_ino, found.st_dev)

    def _reopen(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream = self._open()
        self._count.size = -1

    def doRollover(self) -> None:
        """Roll over, unless another process did since this one looked: then write to its new file.

        Processes that share the file take the lock of ``lock_file()`` around the
        renames, and the one that finds the file already renamed under it only opens the new one:
        no line is renamed away, written to a deleted file, or rolled over twice.
        """
        with self._rotation_lock():
            stream = self.stream
            if stream is not None and not self._names(os.fstat(stream.fileno())):
                self._reopen()
            else:
                super().doRollover()
        self._count.size = -1

    @contextlib.contextmanager
    def _rotation_lock(self) -> Iterator[None]:
        """Hold the lock file's lock (a POSIX record lock: one holder across processes; threads of
        one process are kept apart by the handler's own lock, which is held)."""
        if self._lock_fd < 0:
            self._lock_fd = os.open(lock_file(self.baseFilename), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.lockf(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._lock_fd, fcntl.LOCK_UN)

    def put(self, text: str) -> None:
        """Write one formatted line, rolling over first when it would not fit (the lock held):
        ``RotatingFileHandler.emit``, ``FileHandler.emit`` and ``StreamHandler.emit`` in one."""
        if self.writes_raw():
            self.put_bytes(f"{text}\n".encode(self._encoding, self._errors), len(text) + 1)
            return
        if self._rolls(len(text) + 1):
            self.doRollover()
        self._send(text + self.terminator)

    def writes_raw(self) -> bool:
        """Whether a line is written as its encoded bytes, newline included, in one system call."""
        stream = self.stream
        return stream is not None and stream is self._raw and self.terminator == "\n"

    def put_bytes(self, data: bytes, length: int) -> None:
        """Write one line's bytes, newline included (``length``: its characters, as the size is
        counted), when ``writes_raw()``; rolling over first when it would not fit (the lock held)."""
        count = self._count
        size = count.size
        if size >= 0 and size + length < self.maxBytes and count.uncounted < RECOUNT - 1:
            count.size, count.uncounted = size + length, count.uncounted + 1  # what _rolls() would do
        elif self._rolls(length):
            self.doRollover()  # the new file is written raw too: the same encoding
        done = os.write(self._fd, data)
        if done != len(data):
            self._finish(data, done)

    def put_many(self, texts: list[str]) -> None:
        """``put`` each line (the lock held), writing consecutive ones in one call.

        Before the file's size is read again (every ``RECOUNT`` lines, near ``maxBytes``), the
        lines gathered are written, so that the size read is the real one.
        """
        chunk: list[str] = []
        terminator = self.terminator
        for text in texts:
            length, size = len(text) + 1, self._count.size
            counted = size >= 0 and size + length < self.maxBytes and self._count.uncounted < RECOUNT - 1
            if counted and self.stream is not None:
                self._count.size, self._count.uncounted = size + length, self._count.uncounted + 1
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
            if done != len(data):
                self._finish(data, done)
        elif stream:
            stream.write(text)
            stream.flush()

    def _finish(self, data: bytes, done: int) -> None:
        """After a short write (a full disk, a signal): write the rest, or raise the error."""
        while done < len(data):
            more = os.write(self._fd, data[done:])
            if not more:
                raise OSError(f"could not write to {self.baseFilename!r}")
            done += more

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.put(self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self._count.size = -1
        self._raw = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        super().close()


def lock_file(filename: str) -> str:
    """The file whose lock the processes writing ``filename`` hold to roll it over: hidden, next
    to it (``logs/.access.log.lock``), so that ``access.log*`` names the log files only."""
    directory, name = os.path.split(filename)
    return os.path.join(directory, f".{name}.lock")


def _stateless(encoding: str | None) -> bool:
    try:
        return codecs.lookup(encoding or "").name in _STATELESS
    except LookupError:  # "locale", or unknown
        return False

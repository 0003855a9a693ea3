"""The access log's rotating file handler, minus most of the standard one's cost per line."""

from __future__ import annotations

import codecs
import logging
import logging.handlers
import os
import stat
from typing import Any

_RECOUNT = 100  # lines after which the log file's size is read again (see _FileHandler)
# Encodings without a byte-order mark or other state: a line is written as ``str.encode``
# encodes it, straight to the file descriptor (see _FileHandler.put).
_STATELESS = frozenset({"utf-8", "ascii", "iso8859-1"})


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

"""Compiled indexes kept on disk and memory-mapped, so every process of a machine shares one copy.

A large list compiles in seconds and its index takes megabytes: with 16 gunicorn workers each
compiling its own, a start-up or a watched change costs 16 compiles and 16 copies. Here the
first process to need an index builds it (holding a lock file, so the others wait rather than
build too), writes it beside the others in a cache folder under a name made of a digest of
everything it was built from, and every process, the builder included, maps that file
read-only: the pages are the page cache's, shared by all, and none is copied into a process.

The file: one line of JSON (the header: the arrays' type codes, counts and offsets, the
digest), then the arrays, each at an offset a multiple of 8. It is written to a temporary name
and renamed, so a reader sees a whole file or none; a file that does not match its header or
its name is ignored and built again.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import sys
import tempfile
from array import array
from collections.abc import Callable, Iterable
from contextlib import contextmanager, suppress
from typing import Any

from . import index as index_module
from .index import StaticIndex

#: Bump when the layout of a StaticIndex or of this file changes: old files are then not read.
FORMAT = 1
_MAGIC = b"flask_allow index\n"
_ALIGN = 8
_ARRAYS = ("v4_starts", "v4_labels", "v4_direct", "v4_radix", "v6_high", "v6_low", "v6_labels")
_KEYS = (("v4_keys", 4), ("v6_keys", 16))
#: Seconds after which an index file nobody rewrote is removed when another is built.
PRUNE_AGE = 3600.0


def digest(parts: Iterable[bytes | str]) -> str:
    """The name of an index built from ``parts`` (with this module's format and the index tunables)."""
    made = hashlib.sha256()
    tunables = (FORMAT, sys.byteorder, index_module.RADIX_MIN, index_module.V6_KEYS_MAX, index_module.RADIX_SHIFT)
    made.update(repr(tunables).encode())
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        made.update(len(data).to_bytes(8, "big"))
        made.update(data)
    return made.hexdigest()[:40]


def save(index: StaticIndex, path: str, key: str, facts: Any = None) -> None:
    """Write ``index`` to ``path`` atomically (a temporary file in the same folder, then a rename)."""
    arrays = [(name, getattr(index, name)) for name in _ARRAYS if getattr(index, name) is not None]
    keys = {name: getattr(index, name) for name, _ in _KEYS}
    layout = []
    offset = 0
    for name, made in arrays:
        layout.append((name, made.typecode, len(made), offset))
        offset += _aligned(len(made) * made.itemsize)
    key_layout = {}
    for name, width in _KEYS:
        found = keys[name]
        if found is not None:
            key_layout[name] = (len(found), offset)
            offset += _aligned(len(found) * width)
    header = {
        "key": key,
        "arrays": layout,
        "keys": key_layout,
        "pair": index.v4_pair,
        "reachable": sorted(index.reachable),
        "size": index.size,
        "data": offset,
        "facts": facts,
    }
    head = _MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n"
    head += bytes(_aligned(len(head)) - len(head))
    folder = os.path.dirname(path) or "."
    handle, temporary = tempfile.mkstemp(prefix=".index-", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(head)
            for _, made in arrays:
                data = made.tobytes()
                out.write(data + bytes(_aligned(len(data)) - len(data)))
            for name, _ in _KEYS:
                found = keys[name]
                if found is not None:
                    data = b"".join(found)
                    out.write(data + bytes(_aligned(len(data)) - len(data)))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise


class Mapped(StaticIndex):
    """A ``StaticIndex`` whose arrays are views of a read-only memory-mapped file.

    The views keep the mapping alive; the C search takes them as it takes arrays (buffers of
    the same type codes), the Python search indexes them as it indexes arrays.
    """

    __slots__ = ("facts", "mapping", "path")

    def __init__(self, path: str, key: str) -> None:
        self.path = path
        with open(path, "rb") as handle:
            self.mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            self._map(key)
        except Exception:
            for name in (*_ARRAYS, *(name for name, _ in _KEYS)):
                setattr(self, name, None)  # release the views, so that the mapping can close
            self.mapping.close()
            raise

    def _map(self, key: str) -> None:
        mapping = self.mapping
        if mapping[: len(_MAGIC)] != _MAGIC:
            raise ValueError("not an index file")
        end = mapping.find(b"\n", len(_MAGIC))
        header = json.loads(mapping[len(_MAGIC) : end])
        if header["key"] != key:
            raise ValueError("the index file is not the one named")
        start = _aligned(end + 1)
        if start + header["data"] != len(mapping):
            raise ValueError("the index file is cut short or too long")
        whole = memoryview(mapping)
        self.v4_direct = self.v4_radix = None
        for name, code, count, offset in header["arrays"]:
            width = array(code).itemsize
            at = start + offset
            setattr(self, name, whole[at : at + count * width].cast(code))
        for name, width in _KEYS:
            found = header["keys"].get(name)
            if found is None:
                setattr(self, name, None)
            else:
                count, offset = found
                data = bytes(whole[start + offset : start + offset + count * width])
                setattr(self, name, [data[at : at + width] for at in range(0, len(data), width)])
        pair = header["pair"]
        self.v4_pair = (pair[0], pair[1]) if pair else None
        self.reachable = set(header["reachable"])
        self.size = header["size"]
        self.facts = header["facts"]
        if len(self.v4_labels) != len(self.v4_starts) or len(self.v6_labels) != len(self.v6_high):
            raise ValueError("the index file's arrays do not match")


def _aligned(size: int) -> int:
    return (size + _ALIGN - 1) // _ALIGN * _ALIGN


@contextmanager
def _locked(path: str) -> Any:
    """Hold an exclusive lock on ``path`` (created when missing); POSIX ``flock``, else no lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: processes may build the same index twice
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shared_index(folder: str, key: str, build: Callable[[], tuple[StaticIndex, Any]]) -> Mapped:
    """The index named ``key`` in ``folder``, mapped; built with ``build()`` (and saved) when missing.

    ``build`` returns the index and facts kept with it (JSON), read back as ``Mapped.facts``.
    One process builds while the others wait on the lock; a file that cannot be read is built
    again. Raises ``OSError`` when the folder cannot be written: the caller builds in memory.
    """
    path = os.path.join(folder, f"{key}.index")
    try:
        return Mapped(path, key)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    os.makedirs(folder, exist_ok=True)
    with _locked(os.path.join(folder, "build.lock")):  # one lock file, never removed
        try:
            return Mapped(path, key)  # built by another process while this one waited
        except (OSError, ValueError, KeyError, TypeError):
            pass
        index, facts = build()
        save(index, path, key, facts)
        _prune(folder, keep=path)
    return Mapped(path, key)


def _prune(folder: str, keep: str, age: float = PRUNE_AGE) -> None:
    """Remove index files not written for ``age`` seconds (lists that changed since); a process
    that still maps one keeps its pages (POSIX), and one that needs it again builds it again."""
    import time

    now = time.time()
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if path == keep or not (name.endswith(".index") or name.startswith(".index-")):
            continue
        with suppress(OSError):
            if now - os.stat(path).st_mtime > age:
                os.unlink(path)

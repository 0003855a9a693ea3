"""A real HTTP(S) server on 127.0.0.1 for feed tests: lists, 304s, slow, failing, oversize and
truncated answers, every request counted with its conditional headers. TLS from a ``trustme`` CA."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Answer:
    """What one path answers: a list (``body``), or a failure of some kind."""

    body: bytes = b""
    status: int = 200
    delay: float = 0.0  # seconds before the headers
    truncate: int = 0  # bytes promised in Content-Length but never sent
    conditional: bool = True  # ETag and Last-Modified, and 304 when they match
    last_modified: str = "Mon, 07 Dec 2026 00:00:00 GMT"

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@dataclass
class Seen:
    path: str
    if_none_match: str | None
    if_modified_since: str | None
    status: int
    at: float = field(default_factory=time.monotonic)


class _Server(http.server.ThreadingHTTPServer):
    """Quiet about clients that go away (the fault tests' timeouts and refused certificates);
    every other error of a request is printed as the standard server prints it."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FeedServer:
    """``with FeedServer(tls=...) as server: server.answer("/list", Answer(b"...")); server.url("/list")``."""

    def __init__(self, tls: Any = None) -> None:
        self.answers: dict[str, Answer] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                answer = owner.answers.get(self.path.partition("?")[0])
                if answer is None:
                    answer = Answer(b"not found\n", status=404, conditional=False)
                if answer.delay:
                    time.sleep(answer.delay)
                status = answer.status
                not_modified = (
                    answer.conditional
                    and status == 200
                    and (
                        self.headers.get("If-None-Match") == answer.etag
                        or (
                            self.headers.get("If-None-Match") is None
                            and self.headers.get("If-Modified-Since") == answer.last_modified
                        )
                    )
                )
                if not_modified:
                    status = 304
                with owner._lock:
                    owner.seen.append(
                        Seen(
                            self.path, self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since"), status
                        )
                    )
                self.send_response(status)
                if answer.conditional:
                    self.send_header("ETag", answer.etag)
                    self.send_header("Last-Modified", answer.last_modified)
                if status == 304:
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer.body) + answer.truncate))
                if answer.truncate:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up (a timeout test)
                    self.wfile.write(answer.body)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.configure_cert(context)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FeedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, answer: Answer | bytes | str | Path) -> str:
        """Serve ``answer`` at ``path``; return its URL."""
        if isinstance(answer, Path):
            answer = answer.read_bytes()
        if isinstance(answer, str):
            answer = answer.encode()
        if isinstance(answer, bytes):
            answer = Answer(answer)
        self.answers[path] = answer
        return self.url(path)

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def requests(self, path: str) -> list[Seen]:
        with self._lock:
            return [seen for seen in self.seen if seen.path == path]

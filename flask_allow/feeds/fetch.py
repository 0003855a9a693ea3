"""One HTTP(S) fetch of a feed with urllib3: TLS verified, a total deadline, a size cap, conditional.

Imported only when a ``url:`` rule is used (urllib3 is the optional ``feeds`` extra).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import urllib3
from urllib3.exceptions import (
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from .settings import FeedSettings

_CHUNK = 1 << 16


class FeedError(Exception):
    """A fetch or a body that is refused; ``kind`` is a short fixed word (timeout, http, tls...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Fetched:
    """A 200 (``body`` written to the file given) or a 304 (nothing written)."""

    status: int
    size: int = 0
    etag: str | None = None
    last_modified: str | None = None


def pool(settings: FeedSettings) -> urllib3.PoolManager:
    """A connection pool that verifies certificates (the system store, or ``ALLOW_FEED_CA_BUNDLE``)."""
    retries = urllib3.Retry(total=5, connect=0, read=0, status=0, other=0, redirect=5, raise_on_redirect=True)
    return urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=settings.ca_bundle, retries=retries)


def fetch(
    manager: urllib3.PoolManager,
    url: str,
    into: str,
    settings: FeedSettings,
    etag: str | None = None,
    last_modified: str | None = None,
) -> Fetched:
    """GET ``url`` into the file ``into``, within ``settings.timeout`` seconds in all; raise ``FeedError``."""
    headers = {"User-Agent": "flask_allow feed", "Accept-Encoding": "gzip"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    deadline = time.monotonic() + settings.timeout
    try:
        response = manager.request(
            "GET",
            url,
            headers=headers,
            timeout=urllib3.Timeout(total=settings.timeout),
            preload_content=False,
        )
        try:
            history = response.retries.history if response.retries is not None else ()
            for hop in history:
                if url.startswith("https:") and str(hop.redirect_location or "").startswith("http:"):
                    raise FeedError("http", f"redirected from https to {hop.redirect_location}: refused")
            if response.status == 304:
                return Fetched(304, etag=etag, last_modified=last_modified)
            if response.status != 200:
                raise FeedError("http", f"HTTP {response.status} {response.reason or ''}".strip())
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > settings.max_bytes:
                raise FeedError("too large", f"{length} bytes, more than ALLOW_FEED_MAX_BYTES {settings.max_bytes}")
            size = 0
            with open(into, "wb") as out:
                for chunk in response.stream(_CHUNK, decode_content=True):
                    size += len(chunk)
                    if size > settings.max_bytes:
                        raise FeedError("too large", f"more than ALLOW_FEED_MAX_BYTES {settings.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise FeedError("timeout", f"the body took more than {settings.timeout:g} s")
                    out.write(chunk)
            return Fetched(200, size, response.headers.get("ETag"), response.headers.get("Last-Modified"))
        finally:
            response.release_conn()
    except FeedError:
        raise
    except MaxRetryError as exc:
        raise _error(exc.reason or exc) from None
    except HTTPError as exc:
        raise _error(exc) from None
    except OSError as exc:
        raise FeedError("network", f"{type(exc).__name__}: {exc}") from None


def _error(exc: BaseException) -> FeedError:
    """A urllib3 error as a ``FeedError`` of the kind an operator looks for."""
    if isinstance(exc, SSLError):
        return FeedError("tls", f"TLS: {exc}")
    if isinstance(exc, Urllib3Timeout):
        return FeedError("timeout", f"timed out: {exc}")
    if isinstance(exc, ProtocolError) and "IncompleteRead" in repr(exc):
        return FeedError("truncated", f"the body ended early (shorter than its Content-Length): {exc}")
    if isinstance(exc, NewConnectionError):
        return FeedError("network", f"cannot connect: {exc}")
    return FeedError("network", f"{type(exc).__name__}: {exc}")

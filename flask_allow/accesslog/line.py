"""The access log's message for a decision: address, reason, request, all escaped to one line."""

from __future__ import annotations

import re
from typing import Any

from ..decision import Decision

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

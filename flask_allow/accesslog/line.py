"""The access log's message for a decision: address, reason, request, all escaped to one line.

Whatever the request holds (a Host werkzeug cannot decode, bytes that are not UTF-8, a method
of control characters), ``format_line`` gives a line: the parts werkzeug refuses are written
as they came, percent-escaped, and any other failure still gives a line naming it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from ..decision import Decision

# What ``escape`` changes in ASCII text, deleted by ``bytes.translate`` to find out, in C, that a
# text has nothing to escape (a third of the cost of a regular expression's search).
_UNSAFE_ASCII = bytes(range(0x20)) + b'\x7f\\"'
_CACHED = 4096  # code points whose escaped text is kept (an attacker sends any number)


def escaped_char(char: str) -> str:
    """How ``escape`` writes one character: quotes and backslashes backslashed, and a character
    Python would not print (``str.isprintable``: control and format characters such as the
    bidirectional overrides U+202A-U+202E and U+2066-U+2069, line and paragraph separators,
    spaces other than the space, surrogates, private and unassigned code points) as ``\\xNN``,
    ``\\uNNNN`` or ``\\UNNNNNNNN``, as ``backslashreplace`` writes what an encoding cannot hold."""
    if char == "\\" or char == '"':
        return "\\" + char
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class _Escapes(dict[int, str]):
    """``str.translate``'s table for ``escape``: each code point's text, worked out when first seen."""

    def __missing__(self, code: int) -> str:
        text = escaped_char(chr(code))
        if len(self) < _CACHED:
            self[code] = text
        return text


_ESCAPES = _Escapes()


def escape(text: object) -> str:
    """Escape control and format characters, quotes and backslashes, so one request stays one
    line that shows what it held (see ``escaped_char``)."""
    text = text if type(text) is str else str(text)
    if text.isascii():
        if len(text.encode("ascii").translate(None, _UNSAFE_ASCII)) == len(text):
            return text
    elif text.isprintable() and "\\" not in text and '"' not in text:
        return text
    return text.translate(_ESCAPES)


def format_line(decision: Decision, request: Any = None) -> str:
    """The access log message for a decision (``request``: the client's, when not given).

    Never raises: a part that cannot be had is written as ``?``, and the line says what failed.
    """
    try:
        client = decision.client
        reason = reason_of(decision)
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
            line = f"{line} via {escape(', '.join(map(str, client.via)))}"
        return line
    except Exception as exc:  # a plugin's reason, a request object of another kind: still one line
        return _fallback_line(decision, request, exc)


def reason_of(decision: Decision) -> str:
    """The decision's reason as the line writes it: a denial let through says so."""
    if not decision.enforced and not decision.exempt and not decision.allowed:
        return f"{decision.reason} [report-only: let through]"
    return decision.reason


def _fallback_line(decision: Decision, request: Any, exc: Exception) -> str:
    """The line when making it failed: each part that can still be had, the failure named."""

    def part(make: Any) -> str:
        try:
            return escape(make())
        except Exception:
            return "?"

    client = getattr(decision, "client", None)
    if request is None:
        request = getattr(client, "request", None)
    verdict = "allowed" if getattr(decision, "allowed", False) else "denied"
    address = part(lambda: client.address or "-")  # type: ignore[union-attr]
    reason = part(lambda: decision.reason)
    head = f"{address} {reason if reason != '?' else verdict}"
    if request is not None:
        environ = getattr(request, "environ", None)
        environ = environ if isinstance(environ, dict) else {}
        method = part(lambda: environ.get("REQUEST_METHOD") or "-")
        url = part(lambda: raw_url(environ))
        agent = part(lambda: environ.get("HTTP_USER_AGENT", ""))
        head = f'{head} {method} {url} "{agent}"'
    return f"{head} [log line failed: {escape(type(exc).__name__)}]"


# The requests whose ``request.url`` is exactly its parts joined (nothing to quote, no IRI
# decoding, no IDNA, no default port, no trusted-hosts check): nearly all. For them the URL is
# put together from the WSGI environ directly, saving werkzeug's round trip through urlsplit.
# One match checks "host root path query" at once: a space is in none of the plain parts.
_PLAIN_PARTS = re.compile(
    r"(?![^ ]*xn--)[a-z0-9.-]+"  # host, no IDNA
    r"(?::(?!(?:80|443) )(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
    r" [A-Za-z0-9/._~!$&'()*+,;=:@-]*"  # SCRIPT_NAME
    r" [A-Za-z0-9/._~!$&'()*+,;=:@-]*"  # PATH_INFO
    r" [A-Za-z0-9/._~!$&'()*+,;=:@?-]*"  # QUERY_STRING
)  # the port: 1-65535, not a default one


def url_of(request: Any) -> str:
    """``request.url``: put together from the WSGI environ for plain requests, else werkzeug's;
    when werkzeug cannot make it (a Host it cannot decode, an untrusted host), ``raw_url``."""
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
    try:
        return str(request.url)
    except Exception:  # the request is served all the same: its line must say what it asked for
        return raw_url(environ)


def _quoted(text: object, safe: str) -> str:
    """A WSGI string (bytes as latin-1 characters) percent-escaped but for ``safe``."""
    return quote(str(text).encode("latin-1", "backslashreplace"), safe=safe)


def raw_url(environ: Any) -> str:
    """The URL as the client sent it, every byte outside the plain characters percent-escaped
    (host included): for the requests werkzeug cannot make a URL of."""
    scheme = _quoted(environ.get("wsgi.url_scheme") or "http", "+.-")
    host = _quoted(environ.get("HTTP_HOST") or environ.get("SERVER_NAME") or "", "[]:.-_~!$&'()*+,;=")
    root = _quoted((environ.get("SCRIPT_NAME") or "").rstrip("/"), "/!$&'()*+,;=:@%._~-")
    path = _quoted((environ.get("PATH_INFO") or "").lstrip("/"), "/!$&'()*+,;=:@%._~-")
    query = environ.get("QUERY_STRING")
    url = f"{scheme}://{host}{root}/{path}"
    return f"{url}?{_quoted(query, _QUERY_SAFE)}" if query else url


_QUERY_SAFE = "/!$&'()*+,;=:@%?._~-"

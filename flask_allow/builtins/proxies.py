"""Who the client is behind reverse proxies: ``ALLOW_TRUSTED_PROXIES`` and ``ALLOW_PROXY_HEADER``.

The built-in ``flask_allow_client_address``. With no trusted proxies the socket peer is the client
(as in 2.0.x). When the peer is a trusted proxy, its header is read: list headers
(``X-Forwarded-For``, ``Forwarded``) are walked from the right, trusted hops skipped, and the first
untrusted hop is the client (nginx ``real_ip_recursive on``), so an address the client wrote itself
is never chosen while an untrusted hop stands to its right. Anything that cannot be read where the
walk must read it (garbage, ``unknown``, ``_hidden``) makes the client unknown, and it is denied.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from flask import Flask, Request

from flask_allow import Client, ConfigError, hookimpl
from flask_allow import config as keys
from flask_allow.addresses import V4_MAX, V6_MAX, Span, parse_client
from flask_allow.engine import build_rule, combine
from flask_allow.index import StaticIndex
from flask_allow.throttle import Throttle

if TYPE_CHECKING:
    from flask_allow.decision import Rule
    from flask_allow.extension import AppState

#: The address a request gets when its proxy header cannot be read: never an IP address, so denied.
UNKNOWN = "unknown"
#: The ALLOW_TRUSTED_PROXIES entry that trusts peers without an IP address (a unix socket).
UNIX = "unix:"
#: Where werkzeug's ProxyFix keeps the environ values it rewrote.
PROXY_FIX_ORIG = "werkzeug.proxy_fix.orig"

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Unquoted Forwarded values: a token, leniently also with ':', '[' and ']' (RFC 7239 wants those
# quoted; the address inside is parsed strictly either way).
_VALUE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z:\[\]]+")
_QUOTED = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*)"')
_BRACKETED = re.compile(r"\[([^\]]*)\](?::([^:]*))?")
_PORT = re.compile(r"[0-9]{1,5}")
_OBFUSCATED_PORT = re.compile(r"_[A-Za-z0-9._-]+")


class Unreadable(ValueError):
    """A proxy header that cannot be read where the walk must read it."""


def header_kind(name: str) -> str:
    """``"forwarded"`` (RFC 7239), ``"list"`` (``X-Forwarded-For`` and ``*-Forwarded-For``) or ``"single"``."""
    lowered = name.lower()
    if lowered == "forwarded":
        return "forwarded"
    if lowered == "x-forwarded-for" or lowered.endswith("-forwarded-for"):
        return "list"
    return "single"


def parse_node(text: str, *, forwarded: bool = False) -> tuple[str, tuple[int, int]]:
    """Read one hop (``203.0.113.7``, ``203.0.113.7:4711``, ``[2001:db8::1]:443``) without its port.

    Returns the address text and its ``(family, int)`` key. Raises ``Unreadable`` for an empty
    hop, ``unknown``, an obfuscated identifier (``_hidden``) or anything that is not an address.
    In a ``Forwarded`` header IPv6 must be in brackets, and a port may be obfuscated (``_p1``).
    """
    node = text.strip()
    if not node:
        raise Unreadable("an empty hop")
    if node.lower() == "unknown":
        raise Unreadable("'unknown' (the proxy did not know the client)")
    if node.startswith("_"):
        raise Unreadable(f"an obfuscated identifier {node!r}")
    if node.startswith("["):
        match = _BRACKETED.fullmatch(node)
        if match is None or ":" not in match.group(1):
            raise Unreadable(f"{node!r} is not an address")
        address, port = match.group(1), match.group(2)
    elif node.count(":") == 1:
        address, _, port = node.partition(":")
        if "." not in address:
            raise Unreadable(f"{node!r} is not an address")
    elif ":" in node and forwarded:
        raise Unreadable(f"{node!r}: an IPv6 address must be in brackets in Forwarded")
    else:
        address, port = node, None
    if port is not None and not (
        (_PORT.fullmatch(port) and int(port) <= 65535) or (forwarded and _OBFUSCATED_PORT.fullmatch(port))
    ):
        raise Unreadable(f"{node!r} has an invalid port")
    key = parse_client(address)
    if key is None:
        raise Unreadable(f"{node!r} is not an address")
    return address, key


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """Parse a ``Forwarded`` header (RFC 7239) into its elements, each a dict of lower-case names.

    The whole header must parse: a syntax error anywhere could move the element boundaries
    the walk relies on (an unterminated quote swallowing the hop a proxy appended), so it
    raises ``Unreadable``. Empty elements are kept (as empty dicts), empty pairs skipped.
    """
    elements: list[dict[str, str]] = [{}]
    pos, end = 0, len(value)
    while True:
        pos = _skip(value, pos)
        if pos >= end:
            break
        char = value[pos]
        if char == ",":
            elements.append({})
            pos += 1
            continue
        if char == ";":
            pos += 1
            continue
        name_match = _TOKEN.match(value, pos)
        if name_match is None:
            raise Unreadable(f"unexpected {char!r} at position {pos}")
        name = name_match.group().lower()
        pos = _skip(value, name_match.end())
        if pos >= end or value[pos] != "=":
            raise Unreadable(f"{name_match.group()!r} without '=' at position {pos}")
        pos = _skip(value, pos + 1)
        if pos < end and value[pos] == '"':
            quoted = _QUOTED.match(value, pos)
            if quoted is None:
                raise Unreadable(f"an unterminated or invalid quoted string at position {pos}")
            text = re.sub(r"\\(.)", r"\1", quoted.group(1))
            pos = quoted.end()
        else:
            token = _VALUE.match(value, pos)
            if token is None:
                raise Unreadable(f"{name!r} without a value at position {pos}")
            text = token.group()
            pos = token.end()
        element = elements[-1]
        if name in element:
            raise Unreadable(f"{name!r} twice in one element")
        element[name] = text
        pos = _skip(value, pos)
        if pos < end and value[pos] not in ",;":
            raise Unreadable(f"unexpected {value[pos]!r} at position {pos}")
    return elements


def _skip(value: str, pos: int) -> int:
    """Skip optional whitespace (spaces and tabs)."""
    end = len(value)
    while pos < end and value[pos] in " \t":
        pos += 1
    return pos


class TrustedProxies:
    """``ALLOW_TRUSTED_PROXIES`` and ``ALLOW_PROXY_HEADER`` of one app, compiled once.

    Built by the app's state at ``init_app`` and ``reload()`` (a bad value is a ``ConfigError``
    naming ``ALLOW_TRUSTED_PROXIES[i]``); entries take the rule syntax (addresses, networks, ranges,
    ``localhost``, ``file:`` lists: any static rule type), plus ``unix:`` for a unix-socket peer.
    """

    def __init__(self, state: AppState) -> None:
        app = state.app
        config = app.config
        self.logger = app.logger
        self.header = _header(keys.get(config, keys.ALLOW_PROXY_HEADER))
        self.kind = header_kind(self.header)
        self.environ_key = "HTTP_" + self.header.upper().replace("-", "_")
        #: The compiled entries, in order (``flask allow rules`` shows them).
        self.rules: list[Rule] = []
        self.trust_unix = False
        #: Start-up warnings, logged once when built.
        self.lints: list[str] = []
        spans = self._compile(state, keys.get(config, keys.ALLOW_TRUSTED_PROXIES))
        self.active = bool(self.rules) or self.trust_unix
        self._index = StaticIndex(spans)
        self._throttle = Throttle()
        self._proxy_fix_warned = False
        if not self.active and self.header != keys.DEFAULTS[keys.ALLOW_PROXY_HEADER]:
            self.lints.append(
                f"{keys.ALLOW_PROXY_HEADER} is {self.header!r} but {keys.ALLOW_TRUSTED_PROXIES} is empty: "
                "the header is ignored and the socket peer is the client"
            )
        for lint in self.lints:
            self.logger.warning("flask_allow: %s", lint)

    def _compile(self, state: AppState, entries: Any) -> list[list[Span]]:
        """Build ``self.rules`` from the entries; return each rule's spans (read once: a file is not re-read)."""
        where = keys.ALLOW_TRUSTED_PROXIES
        compiled: list[list[Span]] = []
        if entries is None:
            return compiled
        if isinstance(entries, str):
            entries = [entries]
        if not isinstance(entries, (list, tuple, set, frozenset)):
            raise ConfigError("must be a list of addresses, networks or ranges", where, entries)
        errors: list[ConfigError] = []

        for i, value in enumerate(entries):
            location = f"{where}[{i}]"
            if not isinstance(value, str):
                errors.append(ConfigError(f"must be a string, not {type(value).__name__}", location, value))
                continue
            if value.strip().lower() == UNIX:
                self.trust_unix = True
                continue
            try:
                rule = build_rule("ALLOW", value, location, state.registry, state.context, len(self.rules))
            except ConfigError as exc:
                errors.append(exc)
                continue
            spans = rule.matcher.spans()
            if spans is None:
                rule.matcher.close()
                errors.append(
                    ConfigError(
                        f"{value!r} is a {rule.type} rule, whose addresses are not known at start-up; "
                        "trusted proxies must be addresses, networks, ranges, 'localhost' or a 'file:' list",
                        location,
                        value,
                    )
                )
                continue
            rule.static = True
            if any(first == 0 and last == (V4_MAX if family == 4 else V6_MAX) for family, first, last in spans):
                self.lints.append(
                    f"{location} {value!r} trusts every address: any client can choose its own address "
                    f"by sending {self.header}"
                )
            self.rules.append(rule)
            compiled.append(spans)
        if errors:
            self.close()
            raise combine(errors)
        return compiled

    def close(self) -> None:
        """Release the entries' matchers."""
        for rule in self.rules:
            rule.matcher.close()

    def trusts(self, address: str | None) -> bool:
        """Say whether a socket peer or hop is a trusted proxy."""
        if not address or address.startswith("unix:"):
            return self.trust_unix
        key = parse_client(address)
        return key is not None and bool(self._index.lookup(*key))

    def _trusted_key(self, key: tuple[int, int]) -> bool:
        return bool(self._index.lookup(*key))

    def client(self, request: Request) -> str | Client:
        """Say who the client of ``request`` is (the hook's answer)."""
        environ = request.environ
        peer = environ.get("REMOTE_ADDR")
        if not self.active:
            return peer or ""
        original = environ.get(PROXY_FIX_ORIG)
        if isinstance(original, dict) and "REMOTE_ADDR" in original:
            if not self._proxy_fix_warned:
                self._proxy_fix_warned = True
                self.logger.warning(
                    "flask_allow: werkzeug ProxyFix rewrote REMOTE_ADDR; with %s set, flask_allow starts "
                    "from the socket peer ProxyFix kept (%s), so hops are not counted twice. "
                    "Use one of the two (see docs/proxies.md).",
                    keys.ALLOW_TRUSTED_PROXIES,
                    PROXY_FIX_ORIG,
                )
            peer = original["REMOTE_ADDR"]
        raw = environ.get(self.environ_key)
        return self.resolve(peer, raw)

    def resolve(self, peer: str | None, raw: str | None) -> str | Client:
        """Choose the client from the socket peer and the raw header value (None when absent)."""
        peer = peer or ""
        shown = peer or "(no address)"
        if not self.trusts(peer):
            if raw is None:
                return peer
            return Client(peer, via=(f"peer {shown} is not a trusted proxy: {self.header} ignored",))
        via = [f"peer {shown} (trusted proxy)"]
        if raw is None:
            if parse_client(peer) is None:  # a unix-socket proxy's own request: no IP, as without proxies
                return peer
            via.append(f"no {self.header}: the proxy itself is the client")
            return Client(peer, via=tuple(via))
        try:
            if self.kind == "single":
                if "," in raw:
                    raise Unreadable(f"more than one address in {raw!r}")
                address, _ = parse_node(raw)
                via.append(f"{self.header} {address}")
                return Client(address, via=tuple(via))
            return self._walk(raw, via)
        except Unreadable as exc:
            via.append(f"{self.header} unreadable: {exc}")
            self._throttle.warn(
                self.logger,
                "%s from trusted proxy %s cannot be read (%s): the client is unknown, request denied",
                self.header,
                shown,
                exc,
            )
            return Client(UNKNOWN, via=tuple(via))

    def _walk(self, raw: str, via: list[str]) -> Client:
        forwarded = self.kind == "forwarded"
        if forwarded:
            hops: list[str | None] = [element.get("for") for element in parse_forwarded(raw)]
        else:
            hops = list(raw.split(","))
        name = self.header
        for position in range(len(hops) - 1, -1, -1):
            hop = hops[position]
            if hop is None:
                raise Unreadable("an element without 'for='")
            address, key = parse_node(hop, forwarded=forwarded)
            if position and self._trusted_key(key):
                via.append(f"{name} {address} (trusted proxy)")
                continue
            if position == 0 and self._trusted_key(key):
                via.append(f"{name} {address} (every hop trusted: the leftmost)")
            else:
                via.append(f"{name} {address}")
            return Client(address, via=tuple(via))
        raise Unreadable("no hop")  # pragma: no cover - split() and parse_forwarded() give at least one


def _header(value: Any) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ConfigError(
            "must be an HTTP header name, e.g. 'X-Forwarded-For', 'Forwarded' or 'X-Real-IP'",
            keys.ALLOW_PROXY_HEADER,
            value,
        )
    return value


@hookimpl(trylast=True)
def flask_allow_client_address(request: Request, app: Flask) -> str | Client:
    state = app.extensions.get("flask_allow")
    proxies: TrustedProxies | None = getattr(state, "proxies", None)
    if proxies is None:
        return request.remote_addr or ""
    return proxies.client(request)

"""Strict parsing of addresses, networks and ranges into integer spans.

An address is ``(family, int)``; a span is ``(family, first, last)``, inclusive. IPv4-mapped IPv6
(``::ffff:a.b.c.d``) is always folded into IPv4, for rules and clients alike, so that
``::ffff:10.0.0.1`` can never slip past ``DENY 10.0.0.0/8``. Parsing goes through
``socket.inet_pton``, which rejects every non-canonical IPv4 form (``010.0.0.1``, ``0x7f.0.0.1``,
``2130706433``, ``127.1``) instead of guessing what the C resolver would make of it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from socket import AF_INET, AF_INET6, inet_pton
from typing import NamedTuple

V4_MAX = (1 << 32) - 1
V6_MAX = (1 << 128) - 1
_MAPPED_FIRST = 0xFFFF << 32
_MAPPED_LAST = _MAPPED_FIRST | V4_MAX
_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"
_from_bytes = int.from_bytes

# Text that is meant as a number, never as a host name: starts with a digit and holds only
# digits, hex letters, x, dots, slashes and dashes ("127.1", "0x7f.0.0.1", "10.0.0.300").
_NUMERIC = re.compile(r"[0-9][0-9a-fA-FxX./-]*")
# Text that is meant as IPv6: has a colon, and what stands before the first one is empty or
# one hex group ("::1", "2001:db8::/32", "fe80::1%eth0"), or it is in brackets.
_IPV6ISH = re.compile(r"\[.*|[0-9a-fA-F]{0,4}:.*")


class Span(NamedTuple):
    """An inclusive run of addresses of one family: ``family`` 4 or 6, ``first`` and ``last`` as integers.

    The form static rules are compiled from; a matcher's ``networks()`` may give spans directly.
    """

    family: int
    first: int
    last: int


def looks_like_address(text: str) -> bool:
    """Say whether ``text`` is meant as an address, network or range (valid or not)."""
    return bool(_NUMERIC.fullmatch(text) or _IPV6ISH.fullmatch(text))


def is_hex_group(name: str) -> bool:
    """Say whether ``name:`` would read as the start of an IPv6 address."""
    return bool(re.fullmatch(r"[0-9a-fA-F]{0,4}", name))


def _ascii(text: str) -> None:
    """Refuse text with a character beyond ASCII: ``int()`` would read a full-width eight (U+FF18) as 8."""
    if not text.isascii():
        char = next(c for c in text if not c.isascii())
        raise ValueError(f"{text!r} holds {char!r} (U+{ord(char):04X}): addresses are written in ASCII digits")


def parse_address(text: str) -> tuple[int, int]:
    """Parse one canonical address into ``(family, int)``, IPv4-mapped folded to IPv4."""
    _ascii(text)
    if ":" in text:
        if "%" in text:
            raise ValueError(f"{text!r}: a scoped IPv6 address cannot be a rule")
        try:
            packed = inet_pton(AF_INET6, text)
        except (OSError, ValueError):  # ValueError: a NUL character
            raise ValueError(f"{text!r} is not a valid IPv6 address") from None
        if packed[:12] == _MAPPED_PREFIX:
            return 4, _from_bytes(packed[12:], "big")
        return 6, _from_bytes(packed, "big")
    try:
        return 4, _from_bytes(inet_pton(AF_INET, text), "big")
    except (OSError, ValueError):
        raise ValueError(
            f"{text!r} is not a valid IPv4 address (four decimal numbers 0-255, no leading zeros)"
        ) from None


def _prefix_length(text: str, family: int) -> int:
    bits = 32 if family == 4 else 128
    if text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0")) and int(text) <= bits:
        return int(text)
    if family == 4 and "." in text:  # a netmask, as ipaddress (and so 2.0.x) accepted
        mask = _from_bytes(inet_pton(AF_INET, text), "big") if _valid_v4(text) else -1
        inverted = mask ^ V4_MAX
        if mask >= 0 and inverted & (inverted + 1) == 0:
            return 32 - inverted.bit_length()
    raise ValueError(f"{text!r} is not a valid prefix length for IPv{family} (0-{bits})")


def _valid_v4(text: str) -> bool:
    try:
        inet_pton(AF_INET, text)
    except (OSError, ValueError):
        return False
    return True


def parse_span(text: str) -> tuple[Span, str | None]:
    """Parse an address, CIDR network or inclusive range; return the span and a warning or None.

    Host bits set in a network are accepted and cleared, with a warning to say so. Only ASCII
    is read: a digit of another script is an error, never a number.
    """
    text = text.strip()
    _ascii(text)
    if "/" in text:
        addr, _, plen = text.partition("/")
        raw_family = 6 if ":" in addr else 4
        family, value = parse_address(addr)
        length = _prefix_length(plen, raw_family)
        if raw_family == 6 and family == 4:  # ::ffff:a.b.c.d/len, folded to IPv4
            if length < 96:
                return _mapped_wide(value, length), None
            length -= 96
        bits = 32 if family == 4 else 128
        host = (1 << (bits - length)) - 1
        warning = None
        if value & host:
            first = value & ~host
            warning = f"{text!r} has host bits set; it is read as {format_address(family, first)}/{length}"
            value = first
        return Span(family, value, value | host), warning
    if "-" in text:
        left, _, right = text.partition("-")
        fam1, first = parse_address(left.strip())
        fam2, last = parse_address(right.strip())
        if fam1 != fam2:
            raise ValueError(
                f"{text!r}: both ends of a range must be of one address family (an IPv4-mapped address counts as IPv4)"
            )
        if first > last:
            raise ValueError(f"{text!r}: the range's first address is after its last")
        return Span(fam1, first, last), None
    family, value = parse_address(text)
    return Span(family, value, value), None


def _mapped_wide(value: int, length: int) -> Span:
    """A network over the IPv4-mapped block, shorter than /96: an IPv6 network, as written."""
    host = (1 << (128 - length)) - 1
    first = (_MAPPED_FIRST | value) & ~host
    return Span(6, first, first | host)


def fold_mapped(span: Span) -> Span:
    """Make an IPv6 span that lies wholly inside ``::ffff:0:0/96`` the IPv4 span it stands for.

    A wider IPv6 span (``::/0``) stays IPv6: it matches IPv6 clients only, as in ``ipaddress``,
    since a mapped client is always matched as its IPv4 address.
    """
    if span.family == 6 and span.first >= _MAPPED_FIRST and span.last <= _MAPPED_LAST:
        return Span(4, span.first - _MAPPED_FIRST, span.last - _MAPPED_FIRST)
    return span


def parse_client(address: str) -> tuple[int, int] | None:
    """Parse a client address as a server reports it; None when it is not an IP address.

    Unlike rules, clients may carry an IPv6 zone (``fe80::1%eth0``), which is dropped.
    """
    try:
        return 4, _from_bytes(inet_pton(AF_INET, address), "big")
    except (OSError, TypeError, ValueError):
        pass
    try:
        packed = inet_pton(AF_INET6, address.partition("%")[0])
    except (OSError, TypeError, ValueError, AttributeError):
        return None
    if packed[:12] == _MAPPED_PREFIX:
        return 4, _from_bytes(packed[12:], "big")
    return 6, _from_bytes(packed, "big")


def format_address(family: int, value: int) -> str:
    """Format an integer address the way ``ipaddress`` does."""
    if family == 4:
        return str(ipaddress.IPv4Address(value))
    return str(ipaddress.IPv6Address(value))


def format_span(span: Span) -> str:
    """Format a span as an address, a CIDR network when it is one, or a range."""
    family, first, last = span
    size = last - first + 1
    if size & (size - 1) == 0 and first & (size - 1) == 0:
        bits = 32 if family == 4 else 128
        length = bits - (size.bit_length() - 1)
        base = format_address(family, first)
        return base if length == bits else f"{base}/{length}"
    return f"{format_address(family, first)}-{format_address(family, last)}"


def to_ip(family: int, value: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Make the ``ipaddress`` object for an integer address."""
    return ipaddress.IPv4Address(value) if family == 4 else ipaddress.IPv6Address(value)


def spans_of_networks(
    networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network | str | Span],
) -> Iterator[Span]:
    """Turn what a matcher's ``networks()`` yields into folded spans."""
    for net in networks:
        if isinstance(net, Span):
            yield fold_mapped(net)
        elif isinstance(net, str):
            yield parse_span(net)[0]
        else:
            family = net.version
            span = Span(family, int(net.network_address), int(net.broadcast_address))
            yield fold_mapped(span)

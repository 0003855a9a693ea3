"""Host names as rules write them: strict syntax (RFC 1123), compared as DNS names, never as text.

Comparing ``dns.name.Name`` objects label by label (case-insensitively, final dot or not) is what
keeps ``evil-example.com`` and ``evil\\.example.com`` (one label holding a dot) out of
``*.example.com``.
"""

from __future__ import annotations

import re
from socket import AF_INET, AF_INET6, inet_pton

import dns.name

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
#: The characters of a value that host-name rules claim (anything else is left to other rule types).
HOSTNAME_CHARS = re.compile(r"[A-Za-z0-9_.-]+")


def parse_host_name(text: str, what: str = "host name", allow_relative: bool = True) -> dns.name.Name:
    """Check a host name and make it a DNS name; raise ``ValueError`` saying what is wrong.

    A name with a dot (or a final dot) is absolute. A single label (``db-1``) stays relative
    when ``allow_relative``, so DNS tries it with the system's search domains, as 2.0.x did.
    """
    raw = text.strip()
    if not raw:
        raise ValueError(f"empty {what}")
    if not raw.isascii():
        raise ValueError(f"{text!r}: write an internationalised {what} in its ASCII form (xn--...)")
    if _is_address(raw):
        raise ValueError(f"{text!r} is an IP address, not a {what}; write it without a prefix")
    absolute = raw.endswith(".")
    name = raw[:-1] if absolute else raw
    if not name:
        raise ValueError(f"{text!r} is not a {what}")
    if len(name) > 253:
        raise ValueError(f"{text!r}: a {what} has at most 253 characters")
    labels = name.lower().split(".")
    for label in labels:
        if not label:
            raise ValueError(f"{text!r}: empty label in {what} (two dots in a row, or a dot at the start)")
        if len(label) > 63:
            raise ValueError(f"{text!r}: label {label[:20]!r}... is longer than 63 characters")
        if not _LABEL.fullmatch(label):
            bad = sorted({c for c in label if not (c.isalnum() or c == "-")})
            if bad:
                raise ValueError(
                    f"{text!r}: {', '.join(map(repr, bad))} cannot be part of a {what} (letters, digits and '-' only)"
                )
            raise ValueError(f"{text!r}: label {label!r} starts or ends with '-'")
    if labels[-1].isdigit():
        raise ValueError(f"{text!r}: the last label of a {what} cannot be all digits")
    origin = None if allow_relative and not absolute and len(labels) == 1 else dns.name.root
    return dns.name.from_text(".".join(labels), origin=origin)


def _is_address(text: str) -> bool:
    for family in (AF_INET, AF_INET6):
        try:
            inet_pton(family, text)
        except OSError:
            continue
        return True
    return False

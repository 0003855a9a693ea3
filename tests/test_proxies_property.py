"""Property tests of the proxy header walk: never an address from an untrusted hop.

For ``X-Forwarded-For`` and ``Forwarded``, with headers built from hops (trusted, untrusted,
mapped, bracketed, with ports, garbage) and with any header bytes, the client chosen is:
the socket peer when the peer is not trusted; otherwise ``unknown`` (denied), or a hop every hop
to whose right is a trusted proxy, as an independent walk with ``ipaddress`` finds it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import close_app, new_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_allow import Client, FlaskAllow
from flask_allow.builtins.proxies import UNKNOWN, TrustedProxies

TRUSTED = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "2001:db8::/32", "192.0.2.1/32")]
IP = ipaddress.IPv4Address | ipaddress.IPv6Address

TRUSTED_HOPS = ["10.1.2.3", "10.0.0.1", "2001:db8::7", "192.0.2.1", "::ffff:10.9.9.9", "2001:DB8:0::8"]
UNTRUSTED_HOPS = [
    "203.0.113.5",
    "198.51.100.7",
    "2001:db9::1",
    "::ffff:203.0.113.9",
    "192.0.2.2",
    "fe80::1%eth0",
    "::1",
    "0.0.0.0",
]
GARBAGE = [
    "",
    "unknown",
    "UNKNOWN",
    "_hidden",
    "10.0.0.0/8",
    "010.0.0.1",
    "10.1",
    "0x0a.0.0.1",
    "167772161",
    "\uff11\uff10.0.0.1",
    "10.0.0.1\u0660",
    "1.2.3.4:99999",
    "1.2.3.4:",
    "[10.0.0.1]",
    "[2001:db8::1",
    "2001:db8::1]",
    "10.0.0.1 203.0.113.5",
    '"10.0.0.1"',
    "10.0.0.1;",
    "\x00",
]


def normalised(ip: IP) -> IP:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        return ipaddress.IPv6Address(ip.packed)  # without its zone
    return ip


def reference_node(text: str, forwarded: bool) -> IP | None:
    """One hop, read independently: an address, with an optional port (``a.b.c.d:p``, ``[v6]:p``)."""
    node = text.strip(" \t")
    port = None
    match = re.fullmatch(r"\[([^\]]*)\](?::(.*))?", node)
    if match:
        address, port = match.group(1), match.group(2)
        if ":" not in address:
            return None
    elif node.count(":") == 1:
        address, _, port = node.partition(":")
    elif ":" in node and forwarded:
        return None
    else:
        address = node
    if port is not None and not (
        (re.fullmatch(r"[0-9]{1,5}", port) and int(port) <= 65535)
        or (forwarded and re.fullmatch(r"_[A-Za-z0-9._-]+", port))
    ):
        return None
    if not address.isascii():
        return None
    try:
        return normalised(ipaddress.ip_address(address))
    except ValueError:
        return None


def trusted(ip: IP) -> bool:
    return any(ip.version == net.version and ip in net for net in TRUSTED)


def reference_walk(hops: list[str | None], forwarded: bool) -> IP | None:
    """The first untrusted hop from the right (or the leftmost), None when one on the way is unreadable."""
    for position in range(len(hops) - 1, -1, -1):
        hop = hops[position]
        ip = None if hop is None else reference_node(hop, forwarded)
        if ip is None:
            return None
        if position and trusted(ip):
            continue
        return ip
    return None


@pytest.fixture(scope="module")
def proxies() -> Iterator[dict[str, TrustedProxies]]:
    made = {}
    apps = []
    for header in ("X-Forwarded-For", "Forwarded"):
        app = new_app(
            {
                "ALLOW_TRUSTED_PROXIES": [str(n) for n in TRUSTED],
                "ALLOW_PROXY_HEADER": header,
                "ALLOW_LOAD_ENTRY_POINTS": False,
            }
        )
        FlaskAllow(app)
        apps.append(app)
        made[header] = app.extensions["flask_allow"].proxies
    yield made
    for app in apps:
        close_app(app)


def chosen(result: str | Client) -> str:
    return result.address if isinstance(result, Client) else result


def chosen_hop(result: str | Client, peer: str) -> IP | None:
    """The hop the walk chose, or None: the peer itself (when untrusted, as it must be) or ``unknown``."""
    address = chosen(result)
    peer_ip = reference_node(peer, False)
    if peer_ip is None or not trusted(peer_ip):
        assert address == peer
        return None
    if address == UNKNOWN:
        return None
    ip = reference_node(address, False)
    assert ip is not None, address
    return ip


def assert_never_untrusted(result: str | Client, peer: str, expected: IP | None) -> None:
    """The walk's answer is the peer (untrusted peer), ``unknown``, or the reference's hop."""
    ip = chosen_hop(result, peer)
    assert ip is None or ip == expected, (chosen(result), expected)


peers = st.sampled_from(["10.0.0.1", "192.0.2.1", "2001:db8::1", "203.0.113.99", "::ffff:10.0.0.2", "", "unix:/x"])
hops = st.sampled_from(TRUSTED_HOPS) | st.sampled_from(UNTRUSTED_HOPS) | st.sampled_from(GARBAGE) | st.text(max_size=8)
ports = st.sampled_from(["", ":80", ":443", ":65535", ":0", ":_p1", ":65536", ":x"])
spaces = st.sampled_from(["", " ", "  ", "\t"])
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(peer=peers, parts=st.lists(st.tuples(spaces, hops, ports, spaces), min_size=1, max_size=6))
def test_x_forwarded_for_never_yields_an_untrusted_hop(
    proxies: dict[str, TrustedProxies], peer: str, parts: list[tuple[str, str, str, str]]
) -> None:
    texts = []
    for before, hop, port, after in parts:
        if port and ":" in hop and not hop.startswith("["):
            hop = f"[{hop}]"  # an IPv6 hop with a port must be bracketed
        texts.append(f"{before}{hop}{port if hop else ''}{after}")
    raw = ",".join(texts)
    result = proxies["X-Forwarded-For"].resolve(peer, raw)
    assert_never_untrusted(result, peer, reference_walk(raw.split(","), False))


def forwarded_value(hop: str, port: str, quote: bool) -> str:
    if ":" in hop and not hop.startswith("["):
        hop = f"[{hop}]"
    value = f"{hop}{port if hop else ''}"
    if quote or not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


@SETTINGS
@given(
    peer=peers,
    elements=st.lists(
        st.tuples(hops, ports, st.booleans(), st.sampled_from(["", ";proto=https", "by=10.0.0.1;", ";host=x"])),
        min_size=1,
        max_size=5,
    ),
    separator=st.sampled_from([",", ", ", " ,\t"]),
)
def test_forwarded_never_yields_an_untrusted_hop(
    proxies: dict[str, TrustedProxies], peer: str, elements: list[tuple[str, str, bool, str]], separator: str
) -> None:
    texts, fors = [], []
    for hop, port, quote, extra in elements:
        value = forwarded_value(hop, port, quote)
        unquoted = value[1:-1].replace('\\"', '"').replace("\\\\", "\\") if value.startswith('"') else value
        fors.append(unquoted)
        texts.append(f"{extra}for={value}" if extra.endswith(";") else f"for={value}{extra}")
    raw = separator.join(texts)
    result = proxies["Forwarded"].resolve(peer, raw)
    assert_never_untrusted(result, peer, reference_walk(list(fors), True))


@SETTINGS
@given(peer=peers, raw=st.binary(max_size=80), header=st.sampled_from(["X-Forwarded-For", "Forwarded"]))
def test_any_header_bytes_yield_the_peer_unknown_or_a_hop_written_there(
    proxies: dict[str, TrustedProxies], peer: str, raw: bytes, header: str
) -> None:
    text = raw.decode("latin-1")  # as WSGI hands a header over
    result = proxies[header].resolve(peer, text)
    ip = chosen_hop(result, peer)
    if ip is None:
        return
    address = chosen(result)
    assert address in text, (address, text)
    if header == "X-Forwarded-For":
        assert ip == reference_walk(text.split(","), False), (address, text)
    else:  # every hop to its right was a trusted proxy: its text stands before theirs
        tail = text[text.rindex(address) + len(address) :]
        for candidate in re.findall(r"[0-9A-Fa-f:.]{2,}", tail):
            other = reference_node(candidate, False)
            if other is not None and other != ip:
                assert trusted(other), (address, text)


def test_the_reference_walk_agrees_on_plain_cases(proxies: dict[str, Any]) -> None:
    walk = proxies["X-Forwarded-For"]
    assert chosen(walk.resolve("10.0.0.1", "203.0.113.5, 10.1.2.3")) == "203.0.113.5"
    assert chosen(walk.resolve("10.0.0.1", "10.9.9.9, 203.0.113.5, 10.1.2.3")) == "203.0.113.5"
    assert chosen(walk.resolve("203.0.113.1", "10.1.2.3")) == "203.0.113.1"
    assert chosen(walk.resolve("10.0.0.1", "203.0.113.5, garbage, 10.1.2.3")) == UNKNOWN
    assert reference_walk(["203.0.113.5", " 10.1.2.3"], False) == ipaddress.ip_address("203.0.113.5")

"""Property tests of the list-file parser, against ``ipaddress``.

Any bytes make a list or a ``ValueError`` naming the line (or saying the file is empty), never
another exception. A list holds exactly what ``ipaddress`` reads from the lines it accepted:
never a wider network than the text says (a cut ``10.53.105.0/2``, a full-width digit).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_allow.builtins.listfile import parse_list

MAPPED = 0xFFFF << 32
Spans = list[tuple[int, int, int]]


def fold(family: int, first: int, last: int) -> tuple[int, int, int]:
    """An IPv6 span inside ``::ffff:0:0/96`` is the IPv4 span it stands for."""
    if family == 6 and first >= MAPPED and last <= MAPPED | 0xFFFFFFFF:
        return 4, first - MAPPED, last - MAPPED
    return family, first, last


def reference_span(entry: str) -> tuple[int, int, int]:
    """What ``ipaddress`` reads from one entry (a network with host bits allowed, or a range)."""
    if "-" in entry and "/" not in entry:
        left, right = (ipaddress.ip_address(part.strip()) for part in entry.split("-", 1))
        a, b = fold(left.version, int(left), int(left)), fold(right.version, int(right), int(right))
        if a[0] != b[0] or a[1] > b[2]:
            raise ValueError("not a range")
        return a[0], a[1], b[2]
    network = ipaddress.ip_network(entry, strict=False)
    return fold(network.version, int(network.network_address), int(network.broadcast_address))


def merged(spans: Spans) -> Spans:
    out: Spans = []
    for family, first, last in sorted(spans):
        if out and out[-1][0] == family and first <= out[-1][2] + 1:
            out[-1] = (family, out[-1][1], max(out[-1][2], last))
        else:
            out.append((family, first, last))
    return out


def entry_of(line: str) -> str:
    return line.split("#", 1)[0].split(";", 1)[0].strip()


def network_text(draw: st.DrawFn) -> str:
    version = draw(st.sampled_from([4, 6]))
    address = draw(st.ip_addresses(v=version))
    if draw(st.booleans()):
        address = ipaddress.IPv6Address(MAPPED | int(ipaddress.IPv4Address(draw(st.ip_addresses(v=4)))))
        version = 6
    text = str(address) if draw(st.booleans()) else address.exploded
    if draw(st.booleans()):
        length = draw(st.integers(0, 32 if version == 4 else 128))
        if draw(st.booleans()):  # without host bits, as published lists are
            text = str(ipaddress.ip_network(f"{address}/{length}", strict=False).network_address)
        text = f"{text}/{length}"
    return text


@st.composite
def lines(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["network", "cut", "range", "comment", "noise", "digits"]))
    if kind == "network":
        line = network_text(draw)
    elif kind == "cut":  # a line cut short by a write under way
        whole = network_text(draw)
        line = whole[: draw(st.integers(0, len(whole)))]
    elif kind == "range":
        first, last = draw(st.ip_addresses(v=4)), draw(st.ip_addresses(v=4))
        line = f"{min(first, last)}{draw(st.sampled_from(['-', ' - ']))}{max(first, last)}"
    elif kind == "comment":
        line = draw(st.sampled_from(["", "# list", "; EOF", "   ", "\t# x"]))
    elif kind == "digits":  # a digit written in another script, of the same value: int() reads it
        whole = network_text(draw)
        if "/" not in whole:
            whole += "/" + str(draw(st.integers(0, 32)))
        digits = [i for i, char in enumerate(whole) if char.isdigit()]
        tail = [i for i in digits if i > whole.rindex("/")]
        at = draw(st.sampled_from(tail if draw(st.booleans()) else digits))
        zero = draw(st.sampled_from([0xFF10, 0x0660, 0x1D7CE, 0x09E6, 0x0966]))  # full-width, Arabic-Indic, ...
        line = whole[:at] + chr(zero + int(whole[at])) + whole[at + 1 :]
    else:
        line = draw(st.text(max_size=20))
    return line + draw(st.sampled_from(["", " # note", " ; x", "  "]))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("list-property")


SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        found, _ = parse_list(str(path))
    except ValueError as exc:
        assert type(exc) is ValueError  # not a UnicodeDecodeError or another subclass
        message = str(exc)
        assert re.search(r", line [0-9]+: ", message) or "is empty" in message, message
        return
    text = data.decode("utf-8")  # it was accepted, so it is UTF-8
    expected = []
    for entry in map(entry_of, text.splitlines()):
        if entry:
            try:
                expected.append(reference_span(entry))
            except ValueError as exc:
                raise AssertionError(f"{entry!r} was accepted, but ipaddress refuses it: {exc}") from None
    assert merged(list(found)) == merged(expected)


@SETTINGS
@given(chosen=st.lists(lines(), min_size=1, max_size=12), newline=st.sampled_from(["\n", "\r\n"]), end=st.booleans())
def test_a_list_holds_exactly_what_ipaddress_reads(scratch: Path, chosen: list[str], newline: str, end: bool) -> None:
    text = newline.join(chosen) + (newline if end else "")
    check(scratch / "list.txt", text.encode("utf-8"))


@SETTINGS
@given(data=st.binary(max_size=200))
def test_any_bytes_are_a_list_or_an_error_naming_a_line(scratch: Path, data: bytes) -> None:
    check(scratch / "list.txt", data)

"""The test DNS server itself: what the other DNS tests rely on it for, checked with plain dnspython."""

from __future__ import annotations

from collections.abc import Iterator

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import dns.reversename
import pytest
from dns_server import DNSServer


@pytest.fixture
def server() -> Iterator[DNSServer]:
    with DNSServer() as running:
        yield running


def resolver(server: DNSServer, lifetime: float = 1.0) -> dns.resolver.Resolver:
    found = dns.resolver.Resolver(configure=False)
    found.nameservers = ["127.0.0.1"]
    found.port = server.port
    found.lifetime = found.timeout = lifetime
    found.cache = None
    return found


def test_answers_changes_and_nxdomain(server: DNSServer) -> None:
    server.set("a.example.com", "A", ["192.0.2.1", "192.0.2.2"], ttl=42)
    answer = resolver(server).resolve("A.Example.COM", "A")
    assert sorted(r.address for r in answer) == ["192.0.2.1", "192.0.2.2"]
    assert answer.rrset is not None and answer.rrset.ttl == 42
    server.set("a.example.com", "A", ["192.0.2.3"])
    assert [r.address for r in resolver(server).resolve("a.example.com", "A")] == ["192.0.2.3"]
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver(server).resolve("missing.example.com", "A")
    no_data = resolver(server).resolve("a.example.com", "AAAA", raise_on_no_answer=False)
    assert no_data.rrset is None
    assert server.count("a.example.com", "A") == 2
    assert server.count("missing.example.com") == 1


def test_big_answers_are_truncated_over_udp_and_sent_over_tcp(server: DNSServer) -> None:
    server.set("big.example.com", "A", [f"10.0.0.{i}" for i in range(1, 101)])
    query = dns.message.make_query("big.example.com", "A")
    udp = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=1.0)
    assert udp.flags & dns.flags.TC and not udp.answer
    assert len(resolver(server).resolve("big.example.com", "A")) == 100  # the resolver retries over TCP
    assert server.count("big.example.com", transport="tcp") == 1


def test_ptr_records_and_servfail(server: DNSServer) -> None:
    server.set_ptr("2001:db8::1", ["host.example.com"])
    answer = resolver(server).resolve(dns.reversename.from_address("2001:db8::1"), "PTR")
    assert [r.target.to_text() for r in answer] == ["host.example.com."]
    server.servfail = True
    with pytest.raises(dns.resolver.NoNameservers):
        resolver(server).resolve("host.example.com", "A")


def test_drop_never_answers_but_counts(server: DNSServer) -> None:
    server.set("a.example.com", "A", ["192.0.2.1"])
    server.drop = True
    with pytest.raises(dns.exception.Timeout):
        resolver(server, lifetime=0.2).resolve("a.example.com", "A")
    assert server.count("a.example.com") >= 1


def test_stop_and_start_on_the_same_port(server: DNSServer) -> None:
    server.set("a.example.com", "A", ["192.0.2.1"])
    port = server.port
    server.stop()
    with pytest.raises(dns.exception.Timeout):
        resolver(server, lifetime=0.2).resolve("a.example.com", "A")
    server.start()
    assert server.port == port
    assert [r.address for r in resolver(server).resolve("a.example.com", "A")] == ["192.0.2.1"]

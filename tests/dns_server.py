"""A small authoritative DNS server for tests, on 127.0.0.1, built on dnspython.

It speaks the DNS wire protocol over UDP and TCP on one free port; an answer too big for UDP is
sent truncated (TC bit), so the resolver asks again over TCP. Tests change its zone data while it
runs, stop and start it (on the same port), make it drop queries (never answer), answer
SERVFAIL, or wait before answering, and count the queries it got.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

if TYPE_CHECKING:
    from flask import Flask

    from flask_allow import Decision
    from flask_allow.dns import DNSService

_SOA = "ns.test. hostmaster.test. 1 3600 600 86400 60"


@dataclass(frozen=True)
class Query:
    """One query the server received: name (lower case, no final dot), type, and "udp" or "tcp"."""

    name: str
    rdtype: str
    transport: str


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


class DNSServer:
    """An authoritative server for whatever names the test gives it (everything else: NXDOMAIN).

    ``with DNSServer() as server: server.set("proxy.example.com", "A", ["192.0.2.10"], ttl=300)``.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        #: Never answer (queries are still counted).
        self.drop = False
        #: Answer every query with SERVFAIL.
        self.servfail = False
        #: Answer SERVFAIL for these (name, type) questions only.
        self.failing: set[tuple[str, str]] = set()
        #: Seconds to wait before answering (each query in its own thread).
        self.delay = 0.0
        #: Largest UDP answer for a query without EDNS (RFC 1035: 512 bytes).
        self.udp_limit = 512
        self._records: dict[tuple[dns.name.Name, int], tuple[int, list[str]]] = {}
        self._queries: list[Query] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    # -- zone data --------------------------------------------------------------------

    def set(self, name: str, rdtype: str, values: Iterable[str], ttl: int = 300) -> None:
        """Make ``values`` the records of ``name`` and ``rdtype`` (an empty list removes them)."""
        key = (_name(name), dns.rdatatype.from_text(rdtype))
        values = list(values)
        with self._lock:
            if values:
                self._records[key] = (ttl, values)
            else:
                self._records.pop(key, None)

    def set_ptr(self, address: str, names: Iterable[str], ttl: int = 300) -> None:
        """Make ``names`` the PTR records of ``address`` (in in-addr.arpa or ip6.arpa)."""
        values = [n if n.endswith(".") else n + "." for n in names]
        self.set(dns.reversename.from_address(address).to_text(), "PTR", values, ttl)

    def remove(self, name: str) -> None:
        """Remove every record of ``name``."""
        target = _name(name)
        with self._lock:
            for key in [k for k in self._records if k[0] == target]:
                del self._records[key]

    # -- queries received -------------------------------------------------------------

    @property
    def queries(self) -> list[Query]:
        with self._lock:
            return list(self._queries)

    def count(self, name: str | None = None, rdtype: str | None = None, transport: str | None = None) -> int:
        """How many queries matched ``name`` (any case, final dot or not), ``rdtype`` and ``transport``."""
        wanted = name.lower().rstrip(".") if name is not None else None
        return sum(
            1
            for q in self.queries
            if (wanted is None or q.name == wanted)
            and (rdtype is None or q.rdtype == rdtype)
            and (transport is None or q.transport == transport)
        )

    def clear_queries(self) -> None:
        with self._lock:
            self._queries.clear()

    # -- running ----------------------------------------------------------------------

    def start(self) -> DNSServer:
        """Listen (again) on the server's port, UDP and TCP; the first start picks a free port."""
        if self._threads:
            raise RuntimeError("the DNS server is already running")
        for attempt in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            for sock in (udp, tcp):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                udp.bind((self.host, self.port))
                tcp.bind((self.host, udp.getsockname()[1]))
            except OSError:
                udp.close()
                tcp.close()
                if self.port:  # a restart must get its old port back
                    if attempt < 19:
                        time.sleep(0.05)
                        continue
                    raise
                continue
            break
        else:  # pragma: no cover - no free port in 20 tries
            raise RuntimeError("no free port for the test DNS server")
        self.port = udp.getsockname()[1]
        tcp.listen(16)
        udp.settimeout(0.05)
        tcp.settimeout(0.05)
        self._stop.clear()
        self._sockets = [udp, tcp]
        self._threads = [
            threading.Thread(target=self._serve_udp, args=(udp,), name="test DNS udp", daemon=True),
            threading.Thread(target=self._serve_tcp, args=(tcp,), name="test DNS tcp", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and free the port (``start()`` takes it again)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(5.0)
        for sock in self._sockets:
            sock.close()
        self._threads, self._sockets = [], []

    def __enter__(self) -> DNSServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- the protocol -----------------------------------------------------------------

    def _serve_udp(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            query = self._parse(wire, "udp")
            if query is None:
                continue
            if self.delay:
                threading.Thread(target=self._reply_udp, args=(sock, query, peer, self.delay), daemon=True).start()
            else:
                self._reply_udp(sock, query, peer, 0.0)

    def _reply_udp(self, sock: socket.socket, query: dns.message.Message, peer: tuple[str, int], delay: float) -> None:
        if delay and self._stop.wait(delay):
            return
        response = self._answer(query)
        limit = query.payload if query.edns >= 0 else self.udp_limit
        try:
            wire = response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            wire = truncated.to_wire()
        with contextlib.suppress(OSError):  # stopped meanwhile
            sock.sendto(wire, peer)

    def _serve_tcp(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve_connection, args=(conn,), daemon=True).start()

    def _serve_connection(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        buffer = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65535)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                while len(buffer) >= 2:
                    (size,) = struct.unpack("!H", buffer[:2])
                    if len(buffer) < 2 + size:
                        break
                    wire, buffer = buffer[2 : 2 + size], buffer[2 + size :]
                    query = self._parse(wire, "tcp")
                    if query is None:
                        continue
                    if self.delay and self._stop.wait(self.delay):
                        return
                    answer = self._answer(query).to_wire()
                    try:
                        conn.sendall(struct.pack("!H", len(answer)) + answer)
                    except OSError:
                        return

    def _parse(self, wire: bytes, transport: str) -> dns.message.Message | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if not query.question:
            return None
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        with self._lock:
            self._queries.append(Query(name, dns.rdatatype.to_text(question.rdtype), transport))
        return None if self.drop else query

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        asked = (question.name.to_text(omit_final_dot=True).lower(), dns.rdatatype.to_text(question.rdtype))
        if self.servfail or asked in self.failing:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        name, rdtype = question.name, question.rdtype
        with self._lock:
            records = dict(self._records)
        for _ in range(8):  # follow CNAMEs within the data
            found = records.get((name, rdtype))
            if found is not None:
                response.answer.append(self._rrset(name, rdtype, found))
                return response
            alias = records.get((name, dns.rdatatype.CNAME))
            if alias is None or rdtype == dns.rdatatype.CNAME:
                break
            response.answer.append(self._rrset(name, dns.rdatatype.CNAME, alias))
            name = _name(alias[1][0])
        exists = any(owner == name or owner.is_subdomain(name) for owner, _ in records)
        if not exists:
            response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(dns.rrset.from_text(dns.name.root, 60, "IN", "SOA", _SOA))
        return response

    @staticmethod
    def _rrset(name: dns.name.Name, rdtype: int, found: tuple[int, list[str]]) -> dns.rrset.RRset:
        ttl, values = found
        return dns.rrset.from_text_list(name, ttl, dns.rdataclass.IN, dns.rdatatype.RdataType(rdtype), values)


# -- helpers for the DNS tests ------------------------------------------------------------


def dns_config(server: DNSServer, restriction: object, **extra: object) -> dict[str, object]:
    """An app config whose host-name rules ask ``server`` only (no hosts file, short timeout)."""
    config: dict[str, object] = {
        "ADDRESS_RESTRICTION": restriction,
        "ALLOW_DNS_NAMESERVERS": ["127.0.0.1"],
        "ALLOW_DNS_PORT": server.port,
        "ALLOW_DNS_HOSTS_FILE": None,
        "ALLOW_DNS_TIMEOUT": 1.0,
    }
    config.update(extra)
    return config


def wait_for(condition: Callable[[], object], timeout: float = 8.0, step: float = 0.05) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds have passed; return whether it became true."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def check(app: Flask, address: str) -> Decision:
    """``allow.check(address)`` on ``app``'s own extension."""
    return app.extensions["flask_allow"].extension.check(address, app=app)  # type: ignore[no-any-return]


def service_of(app: Flask) -> DNSService:
    """The DNS service ``app``'s host-name rules share."""
    return app.extensions["flask_allow"].shared["flask_allow.dns"]  # type: ignore[no-any-return]

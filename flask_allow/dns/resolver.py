"""Lookups for host-name rules: the hosts file first, then DNS through dnspython, each one bounded.

Every lookup returns an ``Answer`` (never raises for a DNS problem): the records, how long they
may be kept (the record's TTL within the configured bounds, or the negative TTL), and for a
failure what went wrong. The hosts file is read again when it changes on disk.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.reversename

from .. import config as keys
from ..addresses import format_address, parse_client
from ..errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .settings import DNSSettings

#: The outcome of a lookup.
OK = "ok"  # records found
NEGATIVE = "negative"  # the name does not exist, or has no record of the type asked (not an error)
ERROR = "error"  # no usable answer: timeout, SERVFAIL, REFUSED, no name server

RDTYPE = {4: "A", 6: "AAAA"}
#: Seconds dnspython sleeps (its first backoff) once every name server it asked has timed out,
#: before it notices that the lifetime is spent: kept within the lookup's time, not added to it.
BACKOFF = 0.1


def _import_record_types() -> None:
    """Import, now, the modules dnspython imports on first sight of each record type.

    dnspython imports a type's module the first time an answer holds one. Done by a refresher
    thread while gunicorn forks its workers (``--preload``), that import's lock is copied into
    the child held by a thread the child does not have: the child's refresher then waits for
    it forever, and the worker decides on no answer for good.
    """
    for rdtype in ("A", "AAAA", "PTR", "CNAME", "DNAME", "SOA", "NS", "OPT", "TXT", "RRSIG", "NSEC", "NSEC3"):
        dns.rdata.get_rdata_class(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype))


_import_record_types()
#: Records named in a description, at most.
SHOWN = 8
Key = tuple[int, int]


@dataclass(frozen=True)
class Answer:
    """What one lookup (A, AAAA or PTR of one name) answered, and until when it holds."""

    rdtype: str
    name: str
    status: str
    #: Seconds the answer may be kept: the TTL within bounds, the negative TTL, or 0.
    keep: float
    #: When the answer was had (``time.monotonic()``).
    at: float
    #: The TTL DNS gave (the least along a CNAME chain), None for the hosts file and failures.
    ttl: int | None = None
    #: "DNS" or "hosts file".
    source: str = "DNS"
    #: Why nothing was found (``NXDOMAIN``, ``no record``, ``lookup failed: ...``).
    error: str | None = None
    addresses: frozenset[Key] = frozenset()
    names: tuple[dns.name.Name, ...] = ()
    #: The records in answer order, as text (addresses or names).
    texts: tuple[str, ...] = field(default=())

    @property
    def expires(self) -> float:
        return self.at + self.keep

    def describe(self) -> str:
        """The answer in a few words: ``A 192.0.2.10, 192.0.2.11 (ttl 300)``, ``NXDOMAIN``."""
        if self.status != OK:
            return f"{self.rdtype}: {self.error}"
        prefix = "hosts file " if self.source != "DNS" else ""
        ttl = f" (ttl {self.ttl})" if self.ttl is not None else ""
        texts = ", ".join(self.texts[:SHOWN])
        if len(self.texts) > SHOWN:
            texts += f" and {len(self.texts) - SHOWN} more"
        return f"{prefix}{self.rdtype} {texts}{ttl}"

    def record(self, key: Key) -> str:
        """The one record that holds ``key``, as the reason names it: ``A 192.0.2.10, ttl 300``."""
        text = f"{self.rdtype} {format_address(*key)}"
        if self.source != "DNS":
            return f"hosts file, {text}"
        return f"{text}, ttl {self.ttl}"


def display(name: dns.name.Name) -> str:
    """A name as logs and reasons show it: lower case, no final dot, odd characters escaped."""
    return name.to_text(omit_final_dot=True).lower()


class HostsFile:
    """A hosts file (``/etc/hosts`` format), parsed again whenever its size or mtime changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._by_name: dict[str, tuple[Key, ...]] = {}
        self._by_address: dict[Key, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def _fresh(self) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = (0, 0, 0)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            by_name: dict[str, list[Key]] = {}
            by_address: dict[Key, list[str]] = {}
            try:
                with open(self.path, encoding="utf-8", errors="replace") as handle:
                    for line in handle:
                        fields = line.partition("#")[0].split()
                        key = parse_client(fields[0]) if len(fields) >= 2 else None
                        if key is None:
                            continue
                        for raw in fields[1:]:
                            name = raw.lower().rstrip(".")
                            if key not in by_name.setdefault(name, []):
                                by_name[name].append(key)
                            if name not in by_address.setdefault(key, []):
                                by_address[key].append(name)
            except OSError:
                by_name, by_address = {}, {}
            self._by_name = {k: tuple(v) for k, v in by_name.items()}
            self._by_address = {k: tuple(v) for k, v in by_address.items()}
            self._stamp = stamp

    def after_fork(self) -> None:
        self._lock = threading.Lock()

    def addresses(self, name: str) -> tuple[Key, ...] | None:
        """The addresses of ``name`` (lower case, no final dot), or None when the file lacks it."""
        self._fresh()
        return self._by_name.get(name)

    def names(self, key: Key) -> tuple[str, ...] | None:
        """The names of an address, or None when the file lacks it."""
        self._fresh()
        return self._by_address.get(key)


class Resolver:
    """The lookups of one app: its hosts file and its dnspython resolver (no dnspython cache)."""

    def __init__(self, settings: DNSSettings) -> None:
        self.settings = settings
        self.hosts = HostsFile(settings.hosts_file) if settings.hosts_file else None
        try:
            resolver = dns.resolver.Resolver(configure=settings.nameservers is None)
        except dns.exception.DNSException as exc:
            raise ConfigError(
                f"the system resolver configuration is unusable ({exc}); give the name servers here",
                keys.ALLOW_DNS_NAMESERVERS,
            ) from None
        if settings.nameservers is not None:
            resolver.nameservers = list(settings.nameservers)
        if settings.nameservers is not None or settings.port != 53:
            resolver.port = settings.port
        if not resolver.nameservers:
            raise ConfigError(
                "the system resolver configuration names no name server; give them here",
                keys.ALLOW_DNS_NAMESERVERS,
            )
        resolver.cache = None  # flask_allow caches with its own bounds
        resolver.timeout = settings.timeout
        resolver.lifetime = settings.timeout
        self.dns = resolver
        #: Called with the error of every lookup that failed (set by the service, for metrics).
        self.on_error: Callable[[str], None] | None = None

    # -- forward ------------------------------------------------------------

    def addresses(self, qname: dns.name.Name, family: int, deadline: float) -> Answer:
        """Look up the A (family 4) or AAAA (family 6) records of ``qname``, hosts file first.

        A name the hosts file holds is answered from it alone, as the C library does.
        """
        rdtype = RDTYPE[family]
        text = display(qname)
        now = time.monotonic()
        if self.hosts is not None:
            found = self.hosts.addresses(text)
            if found is not None:
                mine = tuple(k for k in found if k[0] == family)
                if not mine:
                    return self._negative(rdtype, text, now, "no record (hosts file)", "hosts file")
                return Answer(
                    rdtype,
                    text,
                    OK,
                    self.settings.hosts_ttl,
                    now,
                    source="hosts file",
                    addresses=frozenset(mine),
                    texts=tuple(format_address(*k) for k in mine),
                )
        search = not qname.is_absolute()
        result = self._query(qname, rdtype, text, deadline, search)
        if not isinstance(result, dns.resolver.Answer):
            return result
        keys_: list[Key] = []
        for rdata in result.rrset or ():
            key = parse_client(rdata.address)
            if key is not None and key not in keys_:
                keys_.append(key)
        if not keys_:
            return self._negative(rdtype, text, now, "no record")
        ttl = int(result.chaining_result.minimum_ttl)
        keys_.sort()
        return Answer(
            rdtype,
            text,
            OK,
            self.settings.clamp(ttl),
            now,
            ttl=ttl,
            addresses=frozenset(keys_),
            texts=tuple(format_address(*k) for k in keys_),
        )

    # -- reverse ------------------------------------------------------------

    def pointers(self, key: Key, deadline: float) -> Answer:
        """Look up the names of an address: the hosts file first, then PTR in in-addr.arpa/ip6.arpa."""
        address = format_address(*key)
        now = time.monotonic()
        if self.hosts is not None:
            found = self.hosts.names(key)
            if found is not None:
                names = tuple(dns.name.from_text(n) for n in found if _usable(n))
                return Answer(
                    "PTR",
                    address,
                    OK if names else NEGATIVE,
                    self.settings.hosts_ttl,
                    now,
                    source="hosts file",
                    error=None if names else "no usable name (hosts file)",
                    names=names,
                    texts=tuple(display(n) for n in names),
                )
        qname = dns.reversename.from_address(address)
        result = self._query(qname, "PTR", address, deadline, False)
        if not isinstance(result, dns.resolver.Answer):
            return result
        names_: list[dns.name.Name] = []
        for rdata in result.rrset or ():
            if rdata.target not in names_:
                names_.append(rdata.target)
        if not names_:
            return self._negative("PTR", address, now, "no record")
        ttl = int(result.chaining_result.minimum_ttl)
        return Answer(
            "PTR",
            address,
            OK,
            self.settings.clamp(ttl),
            now,
            ttl=ttl,
            names=tuple(names_),
            texts=tuple(display(n) for n in names_),
        )

    # -- the query ----------------------------------------------------------

    def _query(
        self, qname: dns.name.Name, rdtype: str, text: str, deadline: float, search: bool
    ) -> dns.resolver.Answer | Answer:
        start = time.monotonic()
        budget = deadline - start
        full = budget >= self.settings.timeout - 0.001
        if budget <= 0 or (budget <= BACKOFF and not full):
            return self._error(rdtype, text, start, "no time left for the lookup", full=False)
        # Only an ALLOW_DNS_TIMEOUT of at most BACKOFF may overrun, by that pause at most.
        lifetime = budget - BACKOFF if budget > BACKOFF else budget
        try:
            return self.dns.resolve(qname, rdtype, raise_on_no_answer=False, lifetime=lifetime, search=search)
        except dns.resolver.NXDOMAIN:
            return self._negative(rdtype, text, start, "NXDOMAIN")
        except dns.exception.Timeout:
            if full:
                return self._error(rdtype, text, start, f"no answer within {self.settings.timeout:g} s")
            return self._error(rdtype, text, start, "no answer in the time the request had left", full=False)
        except dns.resolver.NoNameservers as exc:
            return self._error(rdtype, text, start, _no_servers(exc))
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            return self._error(rdtype, text, start, f"{type(exc).__name__}: {exc}")

    def _negative(self, rdtype: str, text: str, at: float, error: str, source: str = "DNS") -> Answer:
        keep = self.settings.hosts_ttl if source != "DNS" else self.settings.negative_ttl
        return Answer(rdtype, text, NEGATIVE, keep, at, source=source, error=error)

    def _error(self, rdtype: str, text: str, at: float, error: str, full: bool = True) -> Answer:
        # A lookup cut short by what the request had left is not kept: the next one may succeed.
        keep = self.settings.negative_ttl if full else 0.0
        answer = Answer(rdtype, text, ERROR, keep, at, error=f"lookup failed: {error}")
        if self.on_error is not None:
            self.on_error(f"{rdtype} {answer.error} for {text}")
        return answer


def _usable(name: str) -> bool:
    try:
        dns.name.from_text(name)
    except dns.exception.DNSException:
        return False
    return True


def _no_servers(exc: dns.resolver.NoNameservers) -> str:
    errors = exc.kwargs.get("errors") or []
    parts = []
    for error in errors:
        server, err = str(error[0]).removeprefix("Do53:"), error[3]
        response = error[4] if len(error) > 4 else None
        if response is not None:
            parts.append(f"{server} answered {dns.rcode.to_text(response.rcode())}")
        else:
            parts.append(f"{server}: {err}")
    return "; ".join(parts) or "no name server answered"

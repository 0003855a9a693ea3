"""Who is asking: the client address of a request, parsed once."""

from __future__ import annotations

import ipaddress
import weakref
from typing import TYPE_CHECKING, Any

from .addresses import parse_client, to_ip

if TYPE_CHECKING:
    from flask import Request


class Client:
    """The client of one request (or of a check made without one).

    ``address`` is the text the server or proxy reported; ``ip`` the normalised address
    (IPv4-mapped IPv6 as IPv4, IPv6 zone dropped), or None when ``address`` is not an IP address;
    ``request`` the Flask request, or None; ``via`` how the address was chosen (the socket peer,
    then each proxy header hop taken), for logs and ``flask allow check``.

    The request is held by a weak reference: the decision, which holds this client, is kept in
    the request's environ, and a strong reference would make every request a reference cycle
    for the garbage collector to find.
    """

    __slots__ = ("_ip", "_request", "address", "key", "via")

    #: ``(family, int)`` as matchers compare it, or None when unparsable; parsed when first read
    #: (a request decided by the compiled index alone never needs it).
    key: tuple[int, int] | None

    def __init__(self, address: str, request: Request | None = None, via: tuple[str, ...] = ()) -> None:
        self.address = address
        self._request: weakref.ref[Request] | None = None if request is None else weakref.ref(request)
        self.via = via
        self._ip: Any = None

    def __getattr__(self, name: str) -> Any:
        if name == "key":  # the slot is still empty: parse now, once
            key = self.key = parse_client(self.address)
            return key
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def request(self) -> Request | None:
        """The Flask request this client made, or None (no request, or it is gone)."""
        found = self._request
        return None if found is None else found()

    @request.setter
    def request(self, request: Request | None) -> None:
        self._request = None if request is None else weakref.ref(request)

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The normalised address as an ``ipaddress`` object, or None when unparsable."""
        if self._ip is None and self.key is not None:
            self._ip = to_ip(*self.key)
        return self._ip

    @property
    def version(self) -> int | None:
        """4 or 6 after normalisation, None when unparsable."""
        return None if self.key is None else self.key[0]

    def __repr__(self) -> str:
        return f"Client({self.address!r})"

"""The rule types ``country:``, ``continent:`` and ``asn:``: static rules built from a database.

Each rule takes from its database the networks of the codes it names and returns them from
``spans()``, so flask_allow compiles them into its index with the neighbouring static rules: a
decision costs what it costs for a ``file:`` list of the same networks. The database file is
watched (``MatcherContext.watch``), so a new version is read and swapped in by flask_allow off the
request path, and a version that cannot be read keeps the running rules.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any, ClassVar

from flask_allow import Client, Matcher, MatcherContext, Span

from . import config as keys
from .codes import CONTINENTS, COUNTRIES
from .database import FIELDS, Database, Networks, parse_asn, read_database, stamp_of

#: Where the databases read while rules are built are kept (in ``MatcherContext.shared``), so
#: that several rules on one file read it once; dropped once the new rules are in force.
SHARED = "flask_allow_geoip.databases"
#: Codes people write for a country whose ISO code is another.
_HINTS = {"UK": "GB", "EL": "GR"}


class GeoMatcher(Matcher):
    """What the three rule types share: codes from the rule's value, networks from one database."""

    #: The config key naming the database the rule reads.
    key: ClassVar[str]
    #: The kind of database ("country" or "asn") and the table of it the codes are looked up in.
    kind: ClassVar[str]
    table: ClassVar[str]

    def __init__(self, value: str, context: MatcherContext) -> None:
        super().__init__(value, context)
        items = [item.strip() for item in value.split(",")]
        if not any(items):
            raise ValueError(f"name one or more {self.table} codes after '{self.prefix}:'")
        if not all(items):
            raise ValueError(f"an empty {self.table} code in {value!r}")
        self.codes: tuple[Any, ...] = tuple(dict.fromkeys(self.parse(item) for item in items))
        database = load(context, self.key, self.kind)
        table = database.tables[self.table]
        if not table:
            raise ValueError(
                f"{self.key} {database.path!r} ({database.description}, {database.count} networks) holds no "
                f"{self.table} codes: looked for {FIELDS[self.table]}"
            )
        self.path = database.path
        self.names = database.names
        self.aliases = database.aliases
        #: code -> its networks, for the codes of this rule only (the rest of the database is let go).
        self.networks_of: dict[Any, Networks] = {code: table.get(code) or Networks() for code in self.codes}
        empty = [code for code, networks in self.networks_of.items() if not networks]
        if empty and len(empty) < len(self.codes):  # none at all: flask_allow's own lint says so
            context.warn(f"{database.path} holds no network of {', '.join(map(self.show, empty))}")

    @classmethod
    def parse(cls, item: str) -> Any:
        """The code of one item of the rule's value; ``ValueError`` for an unknown one."""
        raise NotImplementedError

    @classmethod
    def show(cls, code: Any) -> str:
        """The code as written in rules and messages."""
        return str(code)

    def label(self, code: Any) -> str:
        """What a match on the code rested on, as reasons and the CLI name it."""
        return f"{self.table} {code}"

    def spans(self) -> list[Span]:
        return [span for networks in self.networks_of.values() for span in networks.spans(self.aliases)]

    def find(self, client: Client) -> tuple[Any, tuple[int, int]] | None:
        """The code and the network (first, last) of the database that hold the client, or None."""
        key = client.key
        if key is None:
            return None
        for code, networks in self.networks_of.items():
            found = networks.find(*key, self.aliases)
            if found is not None:
                return code, found
        return None

    def matches(self, client: Client) -> bool:
        return self.find(client) is not None

    def detail(self, client: Client) -> str | None:
        found = self.find(client)
        return None if found is None else self.label(found[0])

    def explain(self, client: Client) -> str:
        found = self.find(client)
        if found is None:
            return f"does not match: {self.path} places the client in none of {', '.join(map(self.show, self.codes))}"
        code, (first, last) = found
        family = client.key[0] if client.key is not None else 4
        make = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
        networks = ", ".join(map(str, ipaddress.summarize_address_range(make(first), make(last))))
        return f"matches: {self.label(code)} ({networks} in {self.path})"

    def describe(self) -> str:
        count = sum(map(len, self.networks_of.values()))
        return f"{self.table} {', '.join(map(self.show, self.codes))}: {count} networks from {self.path}"


class CountryMatcher(GeoMatcher):
    """``country:NL,BE``: clients the database places in one of these countries (ISO 3166-1 alpha-2)."""

    prefix = "country"
    key = keys.DATABASE
    kind = "country"
    table = "country"

    @classmethod
    def parse(cls, item: str) -> str:
        code = item.upper()
        if code not in COUNTRIES:
            hint = f" (did you mean {_HINTS[code]}?)" if code in _HINTS else ""
            raise ValueError(f"unknown country code {item!r}: not an ISO 3166-1 alpha-2 code{hint}")
        return code


class ContinentMatcher(GeoMatcher):
    """``continent:EU``: clients the database places on one of these continents."""

    prefix = "continent"
    key = keys.DATABASE
    kind = "country"
    table = "continent"

    @classmethod
    def parse(cls, item: str) -> str:
        code = item.upper()
        if code not in CONTINENTS:
            raise ValueError(f"unknown continent code {item!r}: one of {', '.join(CONTINENTS)}")
        return code


class AsnMatcher(GeoMatcher):
    """``asn:15169,AS13335``: clients in the networks the ASN database gives these AS numbers."""

    prefix = "asn"
    key = keys.ASN_DATABASE
    kind = "asn"
    table = "asn"

    @classmethod
    def parse(cls, item: str) -> int:
        return parse_asn(item)

    @classmethod
    def show(cls, code: Any) -> str:
        return f"AS{code}"

    def label(self, code: Any) -> str:
        name = self.names.get(code)
        return f"AS{code} {name}" if name else f"AS{code}"


def database_path(context: MatcherContext, key: str) -> str:
    """The path config key ``key`` gives, made absolute; ``ValueError`` when it is unset or no path."""
    value = context.config.get(key) if context.config is not None else None
    if value is None or value == "":
        raise ValueError(f"{key} is not set: give the path of the MaxMind DB file (.mmdb) this rule reads")
    path = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(path, str):
        raise ValueError(f"{key} must be the path of a MaxMind DB file (.mmdb), not {value!r}")
    path = os.path.expanduser(path)
    if not os.path.isabs(path) and context.app is not None:
        path = os.path.join(context.app.root_path, path)
    return path


def load(context: MatcherContext, key: str, kind: str) -> Database:
    """The database config key ``key`` names, watched, read once per version while rules are built."""
    path = database_path(context, key)
    context.watch(path)  # before reading: a change made during the read is seen
    if not os.path.isfile(path):
        raise ValueError(f"{key} {path!r} does not exist or is not a file")
    cache: dict[tuple[str, str], Database] = context.shared.setdefault(SHARED, {})
    found = cache.get((path, kind))
    try:
        if found is not None and found.stamp == stamp_of(path):
            return found
    except OSError:
        pass
    database = read_database(path, kind)
    cache[(path, kind)] = database
    return database


def forget(shared: dict[str, Any]) -> None:
    """Let go of the databases read for the rules just put in force (they keep what they took)."""
    shared.pop(SHARED, None)

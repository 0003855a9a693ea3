"""Types of the optional C module built from ``_lookup.c`` (see ``clookup.py``); the arrays are
``array.array`` objects (any buffer of the right integer type)."""

from collections.abc import Callable
from typing import Any

class Index:
    """A ``StaticIndex``'s arrays searched in C."""

    def __init__(
        self,
        rules: tuple[Any, ...],
        other: Callable[[Any], Any],
        v4_starts: Any,
        v4_labels: Any,
        v4_direct: Any,
        v4_radix: Any,
        v6_high: Any,
        v6_low: Any,
        v6_labels: Any,
        v4_pair: tuple[int, int] | None = None,
        plain: bool = False,
    ) -> None: ...
    @property
    def plain_blocks(self) -> int | None: ...
    def lookup(self, address: object, /) -> Any: ...

"""Bans: clients shut out by hand (``allow.ban``, ``flask allow ban``) or after repeated abuse.

- ``ban.Ban``: one ban (a network, since and until when, why).
- ``stores``: where bans and counters are kept, chosen by URI (memory, SQLite, Redis).
- ``snapshot.Snapshot``: one process's copy of the active bans, searched like the static rules.
- ``service.BanService``: that copy, the counting, and the background sync of each process.
- ``settings``: ``ALLOW_BANS``, ``ALLOW_AUTOBAN`` and the ``ALLOW_BAN_*`` keys, validated.

The ``banned`` rule type is the built-in plugin ``flask_allow.builtins.bans``.
"""

from .ban import Ban
from .service import BanService
from .settings import AutobanPolicy, BanSettings
from .stores import BanStore, StoreError, store_from_string

__all__ = ["AutobanPolicy", "Ban", "BanService", "BanSettings", "BanStore", "StoreError", "store_from_string"]

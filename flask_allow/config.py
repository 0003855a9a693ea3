"""Every configuration key flask_allow reads, with its default, in one place."""

from __future__ import annotations

from typing import Any

#: The ordered ALLOW/DENY list (compatible with Flask-Allow 2.0.x).
ADDRESS_RESTRICTION = "ADDRESS_RESTRICTION"
#: The access log: a file name or a dict (compatible with Flask-Allow 2.0.x).
ACCESS_LOG = "ACCESS_LOG"
#: The decision when no rule matches: "allow" (2.0.x) or "deny".
ALLOW_DEFAULT = "ALLOW_DEFAULT"
#: The HTTP status a denial aborts with.
ALLOW_DENY_STATUS = "ALLOW_DENY_STATUS"
#: Evaluate and log every decision but never block.
ALLOW_REPORT_ONLY = "ALLOW_REPORT_ONLY"
#: Importable module names registered as plugins.
ALLOW_PLUGINS = "ALLOW_PLUGINS"
#: Whether plugins of the ``flask_allow`` entry-point group are loaded.
ALLOW_LOAD_ENTRY_POINTS = "ALLOW_LOAD_ENTRY_POINTS"
#: Plugin names (as ``flask allow plugins`` lists them) not to register.
ALLOW_DISABLE_PLUGINS = "ALLOW_DISABLE_PLUGINS"
#: Entries in the decision cache (0 turns it off).
ALLOW_CACHE_SIZE = "ALLOW_CACHE_SIZE"

# -- host-name rules (DNS) ----------------------------------------------------
#: The hosts file consulted before DNS for forward names; None turns it off.
ALLOW_DNS_HOSTS_FILE = "ALLOW_DNS_HOSTS_FILE"
#: Bounds on the TTL of cached answers, in seconds.
ALLOW_DNS_MIN_TTL = "ALLOW_DNS_MIN_TTL"
ALLOW_DNS_MAX_TTL = "ALLOW_DNS_MAX_TTL"
#: How long a negative answer (NXDOMAIN, no data) or a failure is cached, in seconds.
ALLOW_DNS_NEGATIVE_TTL = "ALLOW_DNS_NEGATIVE_TTL"
#: Entries in the per-client reverse-lookup cache (LRU).
ALLOW_DNS_CACHE_SIZE = "ALLOW_DNS_CACHE_SIZE"
#: The time one lookup may take, in seconds.
ALLOW_DNS_TIMEOUT = "ALLOW_DNS_TIMEOUT"
#: On a DNS failure or timeout: "ignore" (the rule does not match) or "deny" (deny outright).
ALLOW_DNS_ON_ERROR = "ALLOW_DNS_ON_ERROR"
#: Name servers to ask (a list of addresses); None uses the system resolver configuration.
ALLOW_DNS_NAMESERVERS = "ALLOW_DNS_NAMESERVERS"
#: The port of those name servers.
ALLOW_DNS_PORT = "ALLOW_DNS_PORT"

# -- the client behind proxies -------------------------------------------------
#: Addresses, networks or ranges of the reverse proxies whose forwarding header is believed.
ALLOW_TRUSTED_PROXIES = "ALLOW_TRUSTED_PROXIES"
#: The header that names the client: X-Forwarded-For, Forwarded, X-Real-IP, CF-Connecting-IP...
ALLOW_PROXY_HEADER = "ALLOW_PROXY_HEADER"

# -- rules that change while the app runs -------------------------------------
#: Seconds (fractions allowed) between two looks at the files rules are built from (``file:``
#: lists, feed copies, databases); a change is swapped in by every process. 0 turns watching off.
ALLOW_WATCH_INTERVAL = "ALLOW_WATCH_INTERVAL"

# -- bans ----------------------------------------------------------------------
#: Whether bans are in use (True/False): puts ``{"DENY": "banned"}`` first unless a rule names ``banned``.
ALLOW_BANS = "ALLOW_BANS"
#: Automatic bans (a dict: status, limit, window, ttl, factor, max_ttl, prefix_v6), or None for none.
ALLOW_AUTOBAN = "ALLOW_AUTOBAN"
#: Seconds a ban made without a ttl lasts (``allow.ban``, ``flask allow ban``); 0 = until unbanned.
ALLOW_BAN_TTL = "ALLOW_BAN_TTL"
#: Addresses and networks (a list) never banned nor counted; the trusted proxies are added to them.
ALLOW_BAN_EXEMPT = "ALLOW_BAN_EXEMPT"
#: Where bans and counters are kept: "memory", "sqlite:///PATH" or "redis://HOST:PORT/DB" ("rediss://");
#: None = a SQLite file in the app's instance folder.
ALLOW_BAN_STORE = "ALLOW_BAN_STORE"
#: Whether a ban store that cannot be reached at start-up is a ConfigError (True/False).
ALLOW_BAN_STORE_REQUIRED = "ALLOW_BAN_STORE_REQUIRED"
#: Seconds (fractions allowed) between two syncs of each process with the ban store.
ALLOW_BAN_SYNC_INTERVAL = "ALLOW_BAN_SYNC_INTERVAL"
#: Clients (a whole number) whose counts one process keeps at most; the oldest are dropped first.
ALLOW_BAN_MAX_TRACKED = "ALLOW_BAN_MAX_TRACKED"

DEFAULTS: dict[str, Any] = {
    ADDRESS_RESTRICTION: None,
    ACCESS_LOG: None,
    ALLOW_DEFAULT: "allow",
    ALLOW_DENY_STATUS: 403,
    ALLOW_REPORT_ONLY: False,
    ALLOW_PLUGINS: (),
    ALLOW_LOAD_ENTRY_POINTS: True,
    ALLOW_DISABLE_PLUGINS: (),
    ALLOW_CACHE_SIZE: 65536,
    ALLOW_DNS_HOSTS_FILE: "/etc/hosts",
    ALLOW_DNS_MIN_TTL: 5,
    ALLOW_DNS_MAX_TTL: 3600,
    ALLOW_DNS_NEGATIVE_TTL: 60,
    ALLOW_DNS_CACHE_SIZE: 10000,
    ALLOW_DNS_TIMEOUT: 2.0,
    ALLOW_DNS_ON_ERROR: "ignore",
    ALLOW_DNS_NAMESERVERS: None,
    ALLOW_DNS_PORT: 53,
    ALLOW_TRUSTED_PROXIES: (),
    ALLOW_PROXY_HEADER: "X-Forwarded-For",
    ALLOW_WATCH_INTERVAL: 5.0,
    ALLOW_BANS: False,
    ALLOW_AUTOBAN: None,
    ALLOW_BAN_TTL: 3600,
    ALLOW_BAN_EXEMPT: ("localhost",),
    ALLOW_BAN_STORE: None,
    ALLOW_BAN_STORE_REQUIRED: True,
    ALLOW_BAN_SYNC_INTERVAL: 1.0,
    ALLOW_BAN_MAX_TRACKED: 100000,
}

#: ``ACCESS_LOG`` dict keys and their defaults (2.0.x names).
ACCESS_LOG_DEFAULTS: dict[str, Any] = {
    "filename": None,
    "maxBytes": 5242880,
    "backupCount": 7,
    "formatter": "%(asctime)s - %(levelname)7s - %(message)s",
    "encoding": "utf-8",
    "queue": False,
}

#: The logger the access log is written through.
ACCESS_LOGGER_NAME = "flask.allow"


def get(config: Any, key: str) -> Any:
    """Return ``config[key]``, or its default when unset."""
    return config.get(key, DEFAULTS.get(key))


class Settings:
    """The validated top-level settings of one app (rules and plugins are validated elsewhere)."""

    def __init__(self, config: Any, root_path: str | None = None, errors: list[Any] | None = None) -> None:
        """Validate; raise one ``ConfigError`` for every bad key, or add them to ``errors`` if given.

        A bad value is replaced by its default, so the rest of the configuration can still be
        checked and every error reported at once.
        """
        from werkzeug.exceptions import default_exceptions

        from .dns.settings import DNSSettings
        from .engine import combine
        from .errors import ConfigError
        from .plugins import _names

        collected: list[ConfigError] = []  # every bad key is reported at once, not one per start-up
        default = get(config, ALLOW_DEFAULT)
        if not isinstance(default, str) or default.lower() not in ("allow", "deny"):
            collected.append(ConfigError("must be 'allow' or 'deny'", ALLOW_DEFAULT, default))
        self.default_allow = not isinstance(default, str) or default.lower() != "deny"
        status = get(config, ALLOW_DENY_STATUS)
        if (
            not isinstance(status, int)
            or isinstance(status, bool)
            or not 400 <= status <= 599
            or status not in default_exceptions
        ):
            collected.append(
                ConfigError("must be an HTTP error status that flask.abort knows (400-599)", ALLOW_DENY_STATUS, status)
            )
        self.deny_status = status if status in default_exceptions else DEFAULTS[ALLOW_DENY_STATUS]
        self.report_only = _flag(config, ALLOW_REPORT_ONLY, collected)
        self.load_entry_points = _flag(config, ALLOW_LOAD_ENTRY_POINTS, collected)
        size = get(config, ALLOW_CACHE_SIZE)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            collected.append(ConfigError("must be a whole number >= 0", ALLOW_CACHE_SIZE, size))
        self.cache_size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else 65536
        self.watch_interval = seconds(config, ALLOW_WATCH_INTERVAL, collected)
        for key in (ALLOW_PLUGINS, ALLOW_DISABLE_PLUGINS):
            try:
                _names(get(config, key), key)
            except ConfigError as exc:
                collected.append(exc)
        try:  # checked even without a host-name rule: a typo must not wait for the first one
            DNSSettings.from_config(config, root_path)
        except ConfigError as exc:
            collected.append(exc)
        from .bans.settings import BanSettings

        #: The ``ALLOW_BAN*`` settings, validated whether or not bans are in use.
        self.bans = BanSettings.from_config(config, collected)
        if collected and errors is not None:
            errors.extend(collected)
        elif collected:
            raise combine(collected)


def seconds(config: Any, key: str, errors: list[Any], minimum: float = 0.0) -> float:
    """A duration in seconds (an int or float >= ``minimum``, finite); its default when bad."""
    import math

    from .errors import ConfigError

    value = get(config, key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < minimum:
        errors.append(ConfigError(f"must be a number of seconds >= {minimum:g}", key, value))
        return float(DEFAULTS[key])
    return float(value)


def _flag(config: Any, key: str, errors: list[Any]) -> bool:
    from .errors import ConfigError

    value = get(config, key)
    if not isinstance(value, bool):
        errors.append(ConfigError("must be True or False", key, value))
    return bool(value)

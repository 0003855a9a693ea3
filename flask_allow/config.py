"""Every configuration key flask_allow reads, with its default, in one place."""

from __future__ import annotations

from typing import Any

#: The ordered ALLOW/DENY list (compatible with Flask-Allow 2.0.x).
#: Type: list of dicts, each with ``ALLOW`` and/or ``DENY`` (a rule value or a list of them)
ADDRESS_RESTRICTION = "ADDRESS_RESTRICTION"
#: The access log: a file name or a dict (compatible with Flask-Allow 2.0.x).
#: Type: str or dict (the keys of ``ACCESS_LOG_DEFAULTS``)
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
#: Type: str or None
ALLOW_DNS_HOSTS_FILE = "ALLOW_DNS_HOSTS_FILE"
#: The shortest time a DNS answer is kept, whatever its TTL, in seconds.
ALLOW_DNS_MIN_TTL = "ALLOW_DNS_MIN_TTL"
#: The longest a DNS answer is kept before it is refreshed, whatever its TTL, in seconds.
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
#: Type: list of str, or None
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
#: The folder where the compiled indexes of large lists are kept, built once per machine and
#: memory-mapped by every process (a relative path is taken from the app's instance folder);
#: None: ``flask_allow_index`` in the instance folder; False: every process compiles its own.
#: Type: str, None or False
ALLOW_INDEX_CACHE = "ALLOW_INDEX_CACHE"

# -- start-up checks --------------------------------------------------------------
#: Turn every start-up lint (a rule that can never match, a DENY covering localhost, a trusted
#: proxy or private clients) into a ``ConfigError``: True or False (for CI).
ALLOW_LINTS_FATAL = "ALLOW_LINTS_FATAL"
#: An automatic update (a watched file, a feed) that would leave a list with fewer than this
#: fraction (0-1) of its last good entries, or none, is held back; 0 turns the check off.
ALLOW_LIST_SHRINK_LIMIT = "ALLOW_LIST_SHRINK_LIMIT"
#: Seconds a held-back shrink must stay unchanged before it is applied anyway (with a warning).
ALLOW_LIST_SHRINK_HOLD = "ALLOW_LIST_SHRINK_HOLD"

# -- url: feeds (the ``feeds`` extra) -------------------------------------------
#: Seconds (fractions allowed) between two refreshes of a ``url:`` feed.
ALLOW_FEED_INTERVAL = "ALLOW_FEED_INTERVAL"
#: Seconds one fetch of a feed may take, connecting and reading the whole body.
ALLOW_FEED_TIMEOUT = "ALLOW_FEED_TIMEOUT"
#: The largest feed body accepted, in bytes; a larger one is refused.
ALLOW_FEED_MAX_BYTES = "ALLOW_FEED_MAX_BYTES"
#: The folder of the feeds' last good copies, shared by the processes of a machine (a path);
#: None: ``flask_allow_feeds/`` in the app's instance folder.
#: Type: str or None
ALLOW_FEED_CACHE_DIR = "ALLOW_FEED_CACHE_DIR"
#: A PEM file of the CAs that sign the feeds' certificates; None: the system's store.
#: Type: str or None
ALLOW_FEED_CA_BUNDLE = "ALLOW_FEED_CA_BUNDLE"
#: Whether a feed with no cached copy that cannot be fetched at start-up fails ``init_app``
#: (True) or starts as an empty list, with an error logged (False).
ALLOW_FEED_REQUIRED = "ALLOW_FEED_REQUIRED"

# -- bans ----------------------------------------------------------------------
#: Whether bans are in use (True/False): puts ``{"DENY": "banned"}`` first unless a rule names ``banned``.
ALLOW_BANS = "ALLOW_BANS"
#: Automatic bans (a dict: status, limit, window, ttl, factor, max_ttl, prefix_v6), or None for none.
#: Type: dict or None
ALLOW_AUTOBAN = "ALLOW_AUTOBAN"
#: Seconds a ban made without a ttl lasts (``allow.ban``, ``flask allow ban``); 0 = until unbanned.
ALLOW_BAN_TTL = "ALLOW_BAN_TTL"
#: Addresses and networks (a list) never banned nor counted; the trusted proxies are added to them.
ALLOW_BAN_EXEMPT = "ALLOW_BAN_EXEMPT"
#: Where bans and counters are kept: "memory", "sqlite:///PATH" or "redis://HOST:PORT/DB" ("rediss://");
#: None = a SQLite file in the app's instance folder.
#: Type: str or None
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
    ALLOW_INDEX_CACHE: None,
    ALLOW_LINTS_FATAL: False,
    ALLOW_LIST_SHRINK_LIMIT: 0.5,
    ALLOW_LIST_SHRINK_HOLD: 600.0,
    ALLOW_FEED_INTERVAL: 3600.0,
    ALLOW_FEED_TIMEOUT: 10.0,
    ALLOW_FEED_MAX_BYTES: 64 * 1024 * 1024,
    ALLOW_FEED_CACHE_DIR: None,
    ALLOW_FEED_CA_BUNDLE: None,
    ALLOW_FEED_REQUIRED: True,
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
    #: The log file (required); a relative name is taken from the working directory, as in 2.0.x.
    #: Type: str
    "filename": None,
    #: Rotate when the file would grow past this many bytes (0: never).
    "maxBytes": 5242880,
    #: Rotated files kept (``access.log.1`` ...).
    "backupCount": 7,
    #: A ``logging`` format string for each line, checked at start-up.
    "formatter": "%(asctime)s - %(levelname)7s - %(message)s",
    #: The file's text encoding.
    "encoding": "utf-8",
    #: True: a writer thread writes the lines gathered every 50 ms; False: each line is written in its request.
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
        valid = isinstance(status, int) and not isinstance(status, bool) and status in default_exceptions
        self.deny_status = status if valid else DEFAULTS[ALLOW_DENY_STATUS]
        self.report_only = _flag(config, ALLOW_REPORT_ONLY, collected)
        self.load_entry_points = _flag(config, ALLOW_LOAD_ENTRY_POINTS, collected)
        self.lints_fatal = _flag(config, ALLOW_LINTS_FATAL, collected)
        size = get(config, ALLOW_CACHE_SIZE)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            collected.append(ConfigError("must be a whole number >= 0", ALLOW_CACHE_SIZE, size))
        self.cache_size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else 65536
        self.watch_interval = seconds(config, ALLOW_WATCH_INTERVAL, collected)
        index_cache = get(config, ALLOW_INDEX_CACHE)
        if (
            index_cache is not None
            and index_cache is not False
            and (not isinstance(index_cache, str) or not index_cache.strip() or "\0" in index_cache)
        ):
            collected.append(
                ConfigError(
                    "must be a folder path, None (the instance folder) or False (off)", ALLOW_INDEX_CACHE, index_cache
                )
            )
            index_cache = None
        #: ``ALLOW_INDEX_CACHE`` as given: a path, None (the instance folder's) or False (off).
        self.index_cache: str | bool | None = index_cache
        self.shrink_limit = fraction(config, ALLOW_LIST_SHRINK_LIMIT, collected)
        self.shrink_hold = seconds(config, ALLOW_LIST_SHRINK_HOLD, collected)
        for key in (ALLOW_PLUGINS, ALLOW_DISABLE_PLUGINS):
            try:
                _names(get(config, key), key)
            except ConfigError as exc:
                collected.append(exc)
        from .feeds.settings import FeedSettings

        FeedSettings.from_config(config, None, collected)  # checked even without a url: rule
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


def fraction(config: Any, key: str, errors: list[Any]) -> float:
    """A fraction from 0 to 1 (an int or float); its default when bad."""
    from .errors import ConfigError

    value = get(config, key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        errors.append(ConfigError("must be a number from 0 to 1", key, value))
        return float(DEFAULTS[key])
    return float(value)


def _flag(config: Any, key: str, errors: list[Any]) -> bool:
    from .errors import ConfigError

    value = get(config, key)
    if not isinstance(value, bool):
        errors.append(ConfigError("must be True or False", key, value))
    return bool(value)

"""The validated ``ALLOW_FEED_*`` settings of one app (no HTTP library needed to check them)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .. import config as keys
from ..errors import ConfigError

#: The folder in the app's instance path the copies go to when ``ALLOW_FEED_CACHE_DIR`` is None.
CACHE_FOLDER = "flask_allow_feeds"


@dataclass(frozen=True)
class FeedSettings:
    interval: float
    timeout: float
    max_bytes: int
    cache_dir: str
    ca_bundle: str | None
    required: bool
    shrink_limit: float
    shrink_hold: float

    @classmethod
    def from_config(cls, config: Any, instance_path: str | None, errors: list[Any] | None = None) -> FeedSettings:
        """Validate; add every bad key's ``ConfigError`` to ``errors``, or raise the first without it."""
        from ..engine import combine

        found: list[ConfigError] = []
        interval = keys.seconds(config, keys.ALLOW_FEED_INTERVAL, found, minimum=0.001)
        timeout = keys.seconds(config, keys.ALLOW_FEED_TIMEOUT, found, minimum=0.001)
        size = keys.get(config, keys.ALLOW_FEED_MAX_BYTES)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            found.append(ConfigError("must be a whole number of bytes >= 1", keys.ALLOW_FEED_MAX_BYTES, size))
            size = keys.DEFAULTS[keys.ALLOW_FEED_MAX_BYTES]
        folder = keys.get(config, keys.ALLOW_FEED_CACHE_DIR)
        if folder is not None and not isinstance(folder, (str, os.PathLike)):
            found.append(ConfigError("must be a folder path or None", keys.ALLOW_FEED_CACHE_DIR, folder))
            folder = None
        if folder is None:
            folder = os.path.join(instance_path or ".", CACHE_FOLDER)
        bundle = keys.get(config, keys.ALLOW_FEED_CA_BUNDLE)
        if bundle is not None and (not isinstance(bundle, (str, os.PathLike)) or not os.path.isfile(bundle)):
            message = "must be the path of a PEM file of CA certificates, or None"
            found.append(ConfigError(message, keys.ALLOW_FEED_CA_BUNDLE, bundle))
            bundle = None
        required = keys.get(config, keys.ALLOW_FEED_REQUIRED)
        if not isinstance(required, bool):
            found.append(ConfigError("must be True or False", keys.ALLOW_FEED_REQUIRED, required))
        limit = keys.fraction(config, keys.ALLOW_LIST_SHRINK_LIMIT, [])  # reported by Settings
        hold = keys.seconds(config, keys.ALLOW_LIST_SHRINK_HOLD, [])
        if found and errors is not None:
            errors.extend(found)
        elif found:
            raise combine(found)
        return cls(
            interval=interval,
            timeout=timeout,
            max_bytes=size,
            cache_dir=os.path.abspath(os.fspath(folder)),
            ca_bundle=None if bundle is None else os.fspath(bundle),
            required=required is not False,
            shrink_limit=limit,
            shrink_hold=hold,
        )

"""The plugin's own config keys, read from ``app.config`` and checked when the rules are built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from flask_allow import ConfigError

#: Where the app serves its metrics (``"/metrics"``), to the clients the rules let in; None: not served.
ALLOW_METRICS_PATH = "ALLOW_METRICS_PATH"
#: Which registry the metrics are registered on: ``"default"`` (``prometheus_client.REGISTRY``, for an
#: app that already exports it), a ``CollectorRegistry``, or None: a registry of the app's own.
ALLOW_METRICS_REGISTRY = "ALLOW_METRICS_REGISTRY"


@dataclass(frozen=True)
class MetricsSettings:
    """``ALLOW_METRICS_PATH`` and ``ALLOW_METRICS_REGISTRY``, checked.

    With neither set the plugin counts nothing for the app: metrics that nobody can scrape
    would only cost the requests time.
    """

    path: str | None = None
    #: The registry given, or None for one of the app's own.
    registry: CollectorRegistry | None = None

    @property
    def active(self) -> bool:
        return self.path is not None or self.registry is not None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MetricsSettings:
        """Read both keys; raise one ``ConfigError`` naming every bad one."""
        errors: list[ConfigError] = []
        path = config.get(ALLOW_METRICS_PATH)
        if path is not None and (
            not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path) or "<" in path
        ):
            errors.append(ConfigError("must be a URL path such as '/metrics', or None", ALLOW_METRICS_PATH, path))
        value = config.get(ALLOW_METRICS_REGISTRY)
        registry: CollectorRegistry | None = None
        if value == "default":
            registry = REGISTRY
        elif isinstance(value, CollectorRegistry):
            registry = value
        elif value is not None:
            errors.append(
                ConfigError(
                    "must be 'default' (prometheus_client.REGISTRY), a prometheus_client.CollectorRegistry, or None",
                    ALLOW_METRICS_REGISTRY,
                    value,
                )
            )
        if errors:
            if len(errors) == 1:
                raise errors[0]
            error = ConfigError("\n".join(str(e) for e in errors))
            error.errors = errors
            raise error
        return cls(path, registry)

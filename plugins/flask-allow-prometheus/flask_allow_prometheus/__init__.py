"""flask-allow-prometheus: Prometheus metrics of what flask_allow decides, written against its public API.

``flask_allow_decisions_total{action, rule, enforced}``, ``flask_allow_errors_total{kind}``,
``flask_allow_rules``, ``flask_allow_list_entries{rule}`` and
``flask_allow_list_updated_timestamp_seconds{rule}``, served at ``ALLOW_METRICS_PATH`` or
registered on the registry ``ALLOW_METRICS_REGISTRY`` names (see README.md).
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app, request
from prometheus_client import CollectorRegistry, exposition, multiprocess

from flask_allow import Decision, hookimpl

from .metrics import ERROR, AppMetrics, decision_labels
from .settings import ALLOW_METRICS_PATH, ALLOW_METRICS_REGISTRY, MetricsSettings

if TYPE_CHECKING:
    from flask_allow.extension import AppState

__version__ = "1.0.0"
__all__ = ["ALLOW_METRICS_PATH", "ALLOW_METRICS_REGISTRY", "EXTENSION_KEY", "ENDPOINT", "decision_labels"]

#: Where an app's ``AppMetrics`` is kept: ``app.extensions["flask_allow_prometheus"]``.
EXTENSION_KEY = "flask_allow_prometheus"
#: The endpoint of the ``ALLOW_METRICS_PATH`` view (``allow.restrict(...)(app.view_functions[ENDPOINT])``).
ENDPOINT = "flask_allow_metrics"


@hookimpl
def flask_allow_check_config(config: Any) -> None:
    """Refuse a bad ``ALLOW_METRICS_PATH`` or ``ALLOW_METRICS_REGISTRY`` (a ``ConfigError``) at start-up."""
    MetricsSettings.from_config(config)


@hookimpl
def flask_allow_decision(decision: Decision, app: Flask) -> None:
    """Count one decision: a counter bound per rule, found with one dict lookup and two indexes."""
    metrics = app.extensions.get(EXTENSION_KEY)
    if metrics is None:
        return
    rule = decision.rule
    key = rule if rule is not None else (decision.scope if decision.error is None else ERROR)
    slots = metrics.slots.get(key)
    child = None if slots is None else slots[decision.allowed][decision.enforced]
    if child is None:
        child = metrics.child(key, decision)
    child.inc()


@hookimpl
def flask_allow_error(app: Flask, kind: str) -> None:
    """Count an error flask_allow (or a plugin) handled."""
    metrics = app.extensions.get(EXTENSION_KEY)
    if metrics is not None:
        metrics.count_error(kind)


@hookimpl
def flask_allow_rules_changed(app: Flask, state: AppState) -> None:
    """Take the new rules: the gauges, the counters bound per rule, and the metrics route."""
    settings = MetricsSettings.from_config(app.config)  # checked by flask_allow_check_config
    metrics: AppMetrics | None = app.extensions.get(EXTENSION_KEY)
    if not settings.active:
        app.extensions.pop(EXTENSION_KEY, None)
        return
    if settings.registry is not None:
        if metrics is None or metrics.registry is not settings.registry:
            metrics = AppMetrics(settings.registry, own=False)
    elif metrics is None or not metrics.own:
        metrics = AppMetrics(CollectorRegistry(), own=True)
    engines = [state.engine, *state.routes.engines.values()]
    rules = [rule for engine in engines for rule in engine.rules]
    lists = [*rules, *state.proxies.rules]
    metrics.rules_changed(rules, lists, state.engine.default_allow, state.settings.report_only)
    _serve(app, metrics, settings.path)
    app.extensions[EXTENSION_KEY] = metrics
    if any(rule.type == "banned" for rule in rules):  # bans in use (their service may start after this hook)
        _count_bans(app, metrics)


def _count_bans(app: Flask, metrics: AppMetrics) -> None:
    """Keep ``flask_allow_bans`` current: read at each scrape in one process, set at each scrape
    of the metrics route and at each rebuild in multiprocess mode (where a value must be written)."""
    gauge = metrics.families.bans()
    app_ref = weakref.ref(app)

    def active() -> float:
        found = app_ref()
        state = None if found is None else found.extensions.get("flask_allow")
        return float(getattr(state, "active_bans", 0) or 0)

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        gauge.set(active())
    else:
        gauge.set_function(active)


def _serve(app: Flask, metrics: AppMetrics, path: str | None) -> None:
    """Serve the metrics at ``path``: the route is added once, since Flask takes none after the first request."""
    metrics.path = None
    if path is None:
        return
    served = [rule.rule for rule in app.url_map.iter_rules(ENDPOINT)] if ENDPOINT in app.view_functions else []
    if not served:
        try:
            app.add_url_rule(path, ENDPOINT, metrics_view)
        except AssertionError:  # the app has served requests: Flask refuses new routes
            app.logger.warning(
                "flask_allow_prometheus: %s %r was set after the app started: it is served after a restart",
                ALLOW_METRICS_PATH,
                path,
            )
            return
        served = [path]
    elif path not in served:
        app.logger.warning(
            "flask_allow_prometheus: %s changed from %r to %r: the new path is served after a restart",
            ALLOW_METRICS_PATH,
            served[0],
            path,
        )
    metrics.path = served[0]


def exposed(metrics: AppMetrics) -> CollectorRegistry:
    """The registry a scrape reads: every process's values under ``PROMETHEUS_MULTIPROC_DIR``."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return metrics.registry


def metrics_view() -> Response:
    """Serve the metrics, in the format the scraper asks for (Prometheus text or OpenMetrics)."""
    metrics: AppMetrics | None = current_app.extensions.get(EXTENSION_KEY)
    if metrics is None or metrics.path is None:  # the plugin was turned off by a reload
        return Response("metrics are not served\n", status=404, mimetype="text/plain")
    state = current_app.extensions.get("flask_allow")
    if metrics.families.counts_bans and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics.families.bans().set(float(getattr(state, "active_bans", 0) or 0))
    encoder, content_type = exposition.choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(exposed(metrics)), headers={"Content-Type": content_type})

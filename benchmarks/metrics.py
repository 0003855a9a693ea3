"""Request overhead of flask-allow-prometheus: the same guarded app with the plugin and without it.

Flask's test client sends the same GET to each app in turn, a batch at a time, the order rotated
each round (as requests.py does); each app's time is divided by that of the guarded app without
the plugin in the same round. With the plugin, decisions are counted into a registry of the app's
own (``ALLOW_METRICS_REGISTRY``): once with the client matched by a rule, once decided by the
default (a blocklist). The control row is a second app without the plugin. Goal: <= 1.03x.
Times are the process's CPU time (``time.process_time``), which a busy shared machine disturbs
far less than the wall clock: the apps run no thread of their own.

    python benchmarks/metrics.py [--quick] [--json PATH]
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import _common as common
import flask_allow_prometheus
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_allow import Client, FlaskAllow

CLIENT = "192.0.2.10"  # TEST-NET-1: the client of every request
#: Ten rules, the client's the ninth.
RULES = [{"DENY": [f"10.{i}.0.0/16" for i in range(8)]}, {"ALLOW": "192.0.2.0/24"}, {"DENY": "all"}]
#: A blocklist: the client matches none, the default lets it in.
BLOCKLIST = [{"DENY": [f"10.{i}.0.0/16" for i in range(10)]}]


def guarded(name: str, rules: list[dict[str, Any]], metrics: bool) -> Flask:
    app = Flask(name)
    app.config.update(ADDRESS_RESTRICTION=rules, ALLOW_LOAD_ENTRY_POINTS=False)
    if metrics:
        app.config["ALLOW_METRICS_REGISTRY"] = CollectorRegistry()

    @app.route("/")
    def hello() -> str:
        return "Hello, World!"

    FlaskAllow(app, plugins=[flask_allow_prometheus] if metrics else [])
    return app


def observer_cost(app: Flask, count: int) -> float:
    """CPU seconds of one call of the plugin's ``flask_allow_decision``, for a decision a rule made."""
    decision = app.extensions["flask_allow"].engine.decide(Client(CLIENT))
    observe = flask_allow_prometheus.flask_allow_decision
    start = time.process_time()
    for _ in range(count):
        observe(decision, app)
    spent = time.process_time() - start
    start = time.process_time()
    for _ in range(count):  # the loop alone
        pass
    return (spent - (time.process_time() - start)) / count


def main() -> None:
    args = common.arguments(__doc__.splitlines()[0])
    rounds, batch = (3, 100) if args.quick else (60, 1000)
    common.print_header(
        "Request overhead of flask-allow-prometheus (Flask test client, hello world)",
        [f"{rounds} rounds of {batch} requests per app; client {CLIENT}; CPU time of the process"],
    )
    apps = {
        "10 rules": guarded("plain", RULES, metrics=False),
        "10 rules (control)": guarded("plain2", RULES, metrics=False),
        "10 rules + metrics": guarded("metered", RULES, metrics=True),
        "blocklist": guarded("blocklist", BLOCKLIST, metrics=False),
        "blocklist + metrics": guarded("blocklist-metered", BLOCKLIST, metrics=True),
    }
    variants = common.request_batches(apps, batch, CLIENT, clock=time.process_time)
    found = common.interleave(variants, rounds)
    baselines = {"10 rules": "10 rules", "10 rules (control)": "10 rules", "10 rules + metrics": "10 rules"}
    rows = []
    for name, values in found.items():
        baseline = baselines.get(name, "blocklist")
        ratio, low, high = common.ratio(found, name, baseline)
        rows.append([name, statistics.median(values) * 1e6, baseline, f"{ratio:.3f}", common.spread(low, high)])
    common.table(
        ["app", "µs per request", "against", "ratio (median of rounds)", "range"],
        rows,
        "Request time with the metrics plugin against without it",
    )
    alone = guarded("observed", RULES, metrics=True)  # an app of its own: the loop's decisions are not the requests'
    observer = observer_cost(alone, 20_000 if args.quick else 1_000_000)
    alone.extensions["flask_allow"].close()
    request = statistics.median(found["10 rules"])
    print(
        f"the observer alone: {observer * 1e6:.2f} µs per decision (CPU), {observer / request:.2%} of a request "
        f"without it ({request * 1e6:.0f} µs): 1 + that = {1 + observer / request:.4f}x\n"
    )
    counted = []
    for name, app in apps.items():
        registry = app.config.get("ALLOW_METRICS_REGISTRY")
        if registry is not None:
            total = sum(
                sample.value
                for metric in registry.collect()
                if metric.name == "flask_allow_decisions"
                for sample in metric.samples
                if sample.name == "flask_allow_decisions_total"
            )
            counted.append((name, total))
        app.extensions["flask_allow"].close()
    expected = (rounds + 1) * batch + 1
    print("decisions counted: " + ", ".join(f"{name} {total:,.0f}" for name, total in counted))
    if any(total != expected for _, total in counted):  # every request counted, once
        raise SystemExit(f"the metrics lost or doubled decisions: {counted}, expected {expected:,} each")
    common.write_json(args.json, "metrics", args, {"seconds": found, "table": rows, "counted": counted})


if __name__ == "__main__":
    sys.exit(main())

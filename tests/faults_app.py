"""The app the fault suite (test_faults.py) serves under gunicorn, configured by the environment.

``FLASK_ALLOW_FAULTS_CONFIG`` holds the app config as JSON. ``/r/<n>`` answers "ok" (when the
rules allow); ``/reload/<n>`` (exempt from the rules, logged all the same) calls
``allow.reload()`` in the worker that gets it: 200 when the new rules are in force, 409 when
they were refused and the running ones kept.
"""

from __future__ import annotations

import json
import os

from flask import Flask

from flask_allow import ConfigError, FlaskAllow

app = Flask(__name__)
app.config.update(json.loads(os.environ["FLASK_ALLOW_FAULTS_CONFIG"]))
allow = FlaskAllow(app)


@app.route("/r/<int:n>")
def numbered(n: int) -> str:
    return "ok"


@app.route("/reload/<int:n>")
@allow.exempt
def reload_rules(n: int) -> tuple[str, int]:
    try:
        allow.reload()
    except ConfigError as exc:
        return f"refused: {exc}", 409
    return "reloaded", 200

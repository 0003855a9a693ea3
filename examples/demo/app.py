"""A demo app guarded by flask_allow, with its configuration in demo_config.py.

Run it (from the repository root):  flask --app examples/demo/app.py run
Then try:  curl http://127.0.0.1:5000/   curl http://127.0.0.1:5000/admin   curl http://127.0.0.1:5000/health
and see the decisions in demo-access.log, or ask the CLI:
    flask --app examples/demo/app.py allow check 127.0.0.1 203.0.113.7 --path /admin
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request

from flask_allow import FlaskAllow

app = Flask(__name__)
app.config.from_pyfile(os.path.join(os.path.dirname(__file__), "demo_config.py"))
allow = FlaskAllow(app)


@app.route("/")
def index() -> object:
    decision = request.environ["flask_allow.decision"]
    return jsonify(client=decision.client.address, reason=decision.reason)


@app.route("/admin")
@allow.restrict([{"ALLOW": "localhost"}])  # 127.0.0.0/8 and ::1: curl may come over either
def admin() -> str:
    return "admin area: only this machine (127.0.0.1 or ::1) gets here\n"


@app.route("/health")
@allow.exempt
def health() -> str:
    return "ok\n"


if __name__ == "__main__":
    app.run("127.0.0.1", 5000)

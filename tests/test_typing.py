"""flask_allow type-checks for its users: ``mypy --strict`` on a small app, decorated views keep their type."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO_ROOT

APP = textwrap.dedent(
    """
    from flask import Blueprint, Flask
    from flask.views import MethodView

    from flask_allow import ConfigError, Decision, FlaskAllow

    app = Flask(__name__)
    app.config["ADDRESS_RESTRICTION"] = [{"ALLOW": ["localhost", "10.0.0.0/8"]}, {"DENY": "all"}]
    allow = FlaskAllow(app)
    ops = allow.exempt(Blueprint("ops", __name__))


    @app.route("/health")
    @allow.exempt
    def health() -> str:
        return "ok"


    @app.route("/item/<int:number>")
    @allow.restrict([{"ALLOW": "10.20.0.0/16"}], default="deny")
    def item(number: int) -> str:
        return str(number)


    @allow.exempt()
    class Items(MethodView):
        def get(self) -> str:
            return "items"


    app.add_url_rule("/items", view_func=Items.as_view("items"))
    app.register_blueprint(ops)
    text: str = item(3) + health()
    decision: Decision = allow.check("10.1.2.3", app=app)
    allowed: bool = decision.allowed
    try:
        allow.reload(app)
    except ConfigError as exc:
        location: str | None = exc.location
    """
)
WRONG = APP + "\nitem('three')\nnumber: int = health()\n"


def mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "user_app.py").write_text(source)
    # The editable install's import hook is not for mypy: the checkout is found on MYPYPATH, and its
    # own errors are not reported, as for an installed package (only the user's file is judged).
    env = {**os.environ, "MYPYPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--follow-imports=silent"]
    return subprocess.run(
        [*command, "--python-version", "3.10", "user_app.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_user_app_passes_mypy_strict(tmp_path: Path) -> None:
    done = mypy(tmp_path, APP)
    assert done.returncode == 0, done.stdout + done.stderr


def test_decorated_views_keep_their_signature(tmp_path: Path) -> None:
    done = mypy(tmp_path, WRONG)
    assert done.returncode == 1, done.stdout + done.stderr
    assert '"item" has incompatible type "str"; expected "int"' in done.stdout
    assert "Incompatible types in assignment" in done.stdout

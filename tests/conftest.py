"""Shared fixtures: a guarded Flask app factory that cleans up after itself, and small helpers."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dns_server import DNSServer
from flask import Flask

import flask_allow
from flask_allow import FlaskAllow
from flask_allow.builtins import listfile
from flask_allow.config import ACCESS_LOGGER_NAME

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Where the flask_allow under test was imported from: this checkout (an editable install), or the
#: site-packages an unpacked sdist was installed into (with its C search built there).
PACKAGE_ROOT = Path(flask_allow.__file__).resolve().parent.parent


def checkout_environ() -> dict[str, str]:
    """The environment for a child process that imports this checkout (no ``FLASK_*`` of ours)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    roots = dict.fromkeys([str(PACKAGE_ROOT), str(REPO_ROOT)])  # the flask_allow under test comes first
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*roots, env.get("PYTHONPATH")]))
    return env


def start_gunicorn(
    folder: Path, app: str, config: dict[str, Any], *options: str, stderr: Any = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    """gunicorn serving ``app`` (the text of ``guarded_app.py``, written to ``folder``), which reads
    its flask_allow config from ``FLASK_ALLOW_TEST_CONFIG``; ``options`` are gunicorn's."""
    (folder / "guarded_app.py").write_text(app, encoding="utf-8")
    env = {**checkout_environ(), "FLASK_ALLOW_TEST_CONFIG": json.dumps(config)}
    command = [sys.executable, "-m", "gunicorn", *options, "--chdir", str(folder), "guarded_app:app"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def stop_gunicorn(server: subprocess.Popen[bytes], timeout: float = 30) -> bytes:
    """Stop gunicorn (SIGTERM, then SIGKILL after ``timeout``); return what it wrote to a piped stderr."""
    server.terminate()
    try:
        _, errors = server.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        _, errors = server.communicate()
    return errors or b""


def flask_allow_command(
    cwd: Path, app: str, *args: str, environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``flask --app APP allow ARGS`` in a child process of this checkout, run in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", app, "allow", *args],
        cwd=cwd,
        env=checkout_environ() if environ is None else environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


#: Published blocklists kept next to the repository (see its SOURCES.md); FLASK_ALLOW_BLOCKLISTS
#: names them from elsewhere (a git worktree, an unpacked sdist).
BLOCKLISTS = Path(os.environ.get("FLASK_ALLOW_BLOCKLISTS") or REPO_ROOT.parent / "shared" / "blocklists")


def require_blocklists(path: Path = BLOCKLISTS) -> Path:
    """``path`` (the blocklists, or one of them); absent, the test fails in CI and is skipped elsewhere."""
    if not path.exists():  # beside the repository; not in an unpacked sdist or a clone elsewhere
        reason = f"the published blocklists are not at {path} (set FLASK_ALLOW_BLOCKLISTS)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


#: What building the package needs, relative to the repository (``package_source``).
PACKAGE_FILES = ("setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in")


def package_source(target: Path, everything: bool = False) -> Path:
    """Copy what building the package needs (``everything``: the whole tree) to ``target``, clean.

    No git: an unpacked sdist runs these tests too. Built modules, caches and the venv stay behind.
    """
    skip = shutil.ignore_patterns(
        "__pycache__", "*.so", "*.pyd", "*.egg-info", ".venv", ".git", "build", "dist", ".*_cache", ".hypothesis"
    )
    if everything:
        shutil.copytree(REPO_ROOT, target, ignore=skip)
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in PACKAGE_FILES:
        shutil.copy(REPO_ROOT / name, target / name)
    shutil.copytree(REPO_ROOT / "flask_allow", target / "flask_allow", ignore=skip)
    return target


MakeApp = Callable[..., Flask]


def _loopback_only(address: Any) -> None:
    """Refuse any socket destination beyond loopback: tests never touch the network."""
    if not isinstance(address, tuple):
        return  # AF_UNIX paths and the like
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode()
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(str(host).partition("%")[0]).is_loopback:
            return
    except ValueError:
        pass
    raise OSError(f"test tried to reach {address!r}: only loopback is allowed in tests")


@pytest.fixture(autouse=True, scope="session")
def loopback_only() -> Iterator[None]:
    """Make every socket in the test process refuse non-loopback destinations."""
    original = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto

    def connect(self: socket.socket, address: Any) -> None:
        _loopback_only(address)
        original[0](self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _loopback_only(address)
        return original[1](self, address)

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        _loopback_only(args[-1])
        return original[2](self, data, *args)  # type: ignore[arg-type]

    socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = connect, connect_ex, sendto  # type: ignore[method-assign,assignment]
    yield
    socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = original  # type: ignore[method-assign]


def new_app(config: dict[str, Any] | None = None, name: str = "guarded", root_path: str | None = None) -> Flask:
    """A Flask app with ``/`` answering "ok", not yet guarded."""
    # the instance folder (index cache, ban store, feed copies) in the test's folder, not the cwd
    instance = os.path.join(root_path, "instance") if root_path is not None else None
    app = Flask(name, root_path=root_path, instance_path=instance)
    app.config.update(config or {})

    @app.route("/")
    def index() -> str:
        return "ok"

    @app.route("/<path:anything>")
    def other(anything: str) -> str:
        return "ok"

    return app


def close_app(app: Flask) -> None:
    """Release what flask_allow holds for ``app`` (log handlers, matchers)."""
    state = app.extensions.get("flask_allow")
    if state is not None:
        state.close()


@pytest.fixture(autouse=True)
def list_files_settle_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests read list files they have just written: no settle delay (tests of it set their own)."""
    monkeypatch.setattr(listfile, "SETTLE", 0.0)


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[MakeApp]:
    """``make_app(config, plugins=..., extension=...)``: a guarded app, closed at teardown."""
    apps: list[Flask] = []

    def factory(
        config: dict[str, Any] | None = None,
        *,
        plugins: Iterable[object] = (),
        extension: FlaskAllow | None = None,
        name: str = "guarded",
    ) -> Flask:
        app = new_app(config, name=name, root_path=str(tmp_path))
        apps.append(app)
        (extension or FlaskAllow(plugins=plugins)).init_app(app)
        return app

    yield factory
    for app in apps:
        close_app(app)


def get(app: Flask, address: str, path: str = "/", **kwargs: Any) -> Any:
    """A GET from ``address`` through the test client."""
    environ = {"REMOTE_ADDR": address, **kwargs.pop("environ_base", {})}
    return app.test_client().get(path, environ_base=environ, **kwargs)


def status(app: Flask, address: str, path: str = "/") -> int:
    """The status code a GET from ``address`` gets."""
    return int(get(app, address, path).status_code)


def warnings_of(caplog: pytest.LogCaptureFixture, app: Flask) -> list[str]:
    """The warning (and worse) messages logged on ``app.logger``."""
    return [r.getMessage() for r in caplog.records if r.name == app.logger.name and r.levelno >= logging.WARNING]


def lines(path: Path) -> list[str]:
    """The lines of a log file (empty when it does not exist)."""
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


@pytest.fixture
def dns() -> Iterator[DNSServer]:
    """A real DNS server on 127.0.0.1, with zone data the test sets."""
    with DNSServer() as server:
        yield server


@pytest.fixture
def access_log_alone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No handler but the apps' own on ``flask.allow`` or above it, so lines are written directly.

    pytest's log capture listens on the root logger, which ``flask.allow`` propagates to; and
    pytest (9.2+) gives its capture handler to every logger that does not propagate, for the
    time a test runs: it is kept off this one too.
    """
    logger = logging.getLogger(ACCESS_LOGGER_NAME)
    monkeypatch.setattr(logger, "propagate", False)
    add = logger.addHandler

    def add_but_pytests(handler: logging.Handler) -> None:
        if type(handler).__module__ != "_pytest.logging":
            add(handler)

    logger.addHandler = add_but_pytests  # type: ignore[method-assign]
    yield
    del logger.addHandler


@pytest.fixture(params=["direct", "records"])
def write_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Both ways an access-log line is written: directly, when no one but the app's handler would
    see the record, and as a record through the logger, when a handler on the root logger listens
    (see tests/test_accesslog_fast_path.py)."""
    if request.param == "direct":
        request.getfixturevalue("access_log_alone")
        yield request.param
        return
    listener = logging.NullHandler()
    logging.getLogger().addHandler(listener)
    yield request.param
    logging.getLogger().removeHandler(listener)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """A real redis-server on a loopback port for the session (``redis_server.RedisServer``)."""
    from redis_server import RedisServer

    server = RedisServer()
    server.start()
    yield server
    server.stop()

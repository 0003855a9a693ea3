"""Helpers for testing flask_allow plugins: register a throwaway plugin on an app for a while.

In the style of datasette's plugin tests::

    class Deny451:
        @hookimpl
        def flask_allow_deny_response(self, decision):
            return Response("unavailable", status=451)

    def test_deny_451(app):
        with plugin_registered(app, Deny451()):
            assert app.test_client().get("/", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 451
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from .extension import AppState

__all__ = ["plugin_registered"]

_UNSET = object()


@contextmanager
def plugin_registered(app: Flask, *plugins: object, config: Mapping[str, Any] | None = None) -> Iterator[AppState]:
    """Register ``plugins`` (objects or modules with ``@hookimpl`` functions) on ``app`` for a while.

    The app's flask_allow state is rebuilt as ``reload()`` does, with the plugins added to its
    ``FlaskAllow``'s ``plugins`` and the ``config`` keys set (rules that use a plugin's prefix go
    there); on the way out both are undone and the state is rebuilt again. Yields the app's new
    state. A plugin or config that is invalid raises ``ConfigError`` on entry, with nothing
    changed. The plugins belong to the ``FlaskAllow`` for the block: another app of the same
    extension that is reloaded meanwhile gets them too.
    """
    state = app.extensions.get("flask_allow")
    if state is None:
        raise RuntimeError("flask_allow is not initialised on this app (call init_app)")
    extension = state.extension
    original = extension.plugins
    saved = {key: app.config.get(key, _UNSET) for key in config or {}}

    def restore() -> None:
        extension.plugins = original
        for key, value in saved.items():
            if value is _UNSET:
                app.config.pop(key, None)
            else:
                app.config[key] = value

    extension.plugins = [*original, *plugins]
    app.config.update(config or {})
    try:
        extension.reload(app)
    except BaseException:
        restore()
        raise
    try:
        yield app.extensions["flask_allow"]
    finally:
        restore()
        extension.reload(app)

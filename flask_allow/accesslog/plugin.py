"""The access log as a default plugin: one line per guarded request (see ``flask_allow.accesslog.log``)."""

from __future__ import annotations

from flask import Flask

from flask_allow import Decision, hookimpl


@hookimpl(trylast=True)
def flask_allow_decision(decision: Decision, app: Flask) -> None:
    state = app.extensions.get("flask_allow")
    log = state.access_log if state is not None else None
    if log is not None:
        log.write(decision)

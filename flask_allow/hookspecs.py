"""Hook specifications for flask_allow plugins.

A plugin is a module or object with functions named after these hooks and marked with
``flask_allow.hookimpl``. Hooks are always called with keyword arguments, so a plugin may take
just the arguments it needs. Plugins come from flask_allow's built-ins, the ``flask_allow``
entry-point group, the ``ALLOW_PLUGINS`` config key and ``FlaskAllow(plugins=...)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from flask import Config, Flask, Request
    from werkzeug.wrappers import Response

    from .client import Client
    from .decision import Decision
    from .extension import AppState
    from .matcher import Matcher

hookspec = pluggy.HookspecMarker("flask_allow")


# -------------------------------------------------------------------------
# Rule types
# -------------------------------------------------------------------------


@hookspec
def flask_allow_matchers() -> list[type[Matcher]]:
    """Return the rule types (``Matcher`` subclasses) this plugin provides.

    Called once each time an app's rules are built (``init_app``, ``reload``). Two plugins
    providing the same ``prefix`` is a ``ConfigError`` naming both.

    :return: A list of ``Matcher`` subclasses; an empty list or None provides none.
    """


@hookspec
def flask_allow_check_config(config: Config, app: Flask) -> None:
    """Check this plugin's own configuration keys, each time the rules are built.

    Called by ``init_app``, ``reload()`` and every rebuild, before the new rules are put in
    force. Raise ``ConfigError`` naming the key for a bad value: it is reported together with
    every other configuration error, and the rules are not built (at start-up, ``init_app``
    fails). Any other exception is a ``ConfigError`` naming the plugin.

    :param config: The app's configuration (``app.config``).
    :param app: The Flask app whose rules are being built.
    """


# -------------------------------------------------------------------------
# The request cycle
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def flask_allow_client_address(request: Request, app: Flask) -> str | Client | None:
    """Say who the client of ``request`` is.

    The built-in answer is ``request.remote_addr``, or with ``ALLOW_TRUSTED_PROXIES`` the address
    taken from the proxy header. An address that is not an IP address is denied, never a 500.

    Stops at first non-None result.

    :param request: The Flask request being guarded.
    :param app: The Flask app the request is for.
    :return: The client's address as text, or a ``Client`` (which also says how it was chosen
        in ``via``), or None to let the next plugin answer.
    """


@hookspec
def flask_allow_decision(decision: Decision, app: Flask) -> None:
    """Observe the decision made for a request (the access log implements this).

    Called exactly once for every guarded request, exempt ones included, after the decision
    and before a denial is sent. An exception raised here is logged and ignored; it never
    changes the decision.

    :param decision: What was decided; ``decision.client.request`` is the request.
    :param app: The Flask app the request is for.
    """


@hookspec(firstresult=True)
def flask_allow_deny_response(decision: Decision, app: Flask) -> Response | None:
    """Render the response for a denied request.

    Without an answer the request is aborted with ``ALLOW_DENY_STATUS`` through
    ``flask.abort``, so the app's own error handlers render it. A plugin that raises is
    logged, and the default denial is sent.

    Stops at first non-None result.

    :param decision: The denial.
    :param app: The Flask app the request is for.
    :return: A response to send instead, or None.
    """


# -------------------------------------------------------------------------
# Rules that change while the app runs
# -------------------------------------------------------------------------


@hookspec
def flask_allow_rules_changed(app: Flask, state: AppState, previous: AppState | None, reason: str) -> None:
    """Observe that new rules are in force for ``app``.

    Called in the thread that built them, once they are swapped in: by ``init_app`` (``previous``
    None), ``reload()``, and the background rebuild after a watched source (a list file, a feed's
    copy, a database) changed. ``state.engine.rules`` are the global rules, each with its
    ``location`` and matcher. An exception raised here is logged and ignored.

    :param app: The Flask app whose rules changed.
    :param state: The app's new ``AppState``, already in force.
    :param previous: The state it replaced (already closed), or None at ``init_app``.
    :param reason: Why: ``"init_app"``, ``"reload"``, or ``"changed: PATH, ..."``.
    """


@hookspec
def flask_allow_error(app: Flask, kind: str, message: str, location: str | None) -> None:
    """Observe an error flask_allow handled without failing a request.

    The error was already logged on the app logger; this hook is for counting it (metrics).
    The kinds flask_allow reports: ``"client_address"`` (a request denied because its client
    address could not be read: not an IP address, an unreadable proxy header, a failing
    ``flask_allow_client_address``), ``"matcher"`` (a request denied because a rule failed to
    decide), ``"dns"`` (a DNS lookup failed: timeout, SERVFAIL, no name server),
    ``"source_refused"`` (a new version of a watched source did not build, and the last good
    rules stay in force) and ``"feed_refused"`` (a ``url:`` feed's refresh failed, its last good
    copy stays; once per outage); plugins may report kinds of their own. Called from a request
    or a background thread; an exception raised here is logged and ignored.

    :param app: The Flask app the error belongs to.
    :param kind: What failed, a short fixed word (label cardinality stays bounded).
    :param message: The error as logged.
    :param location: The rule's location in the configuration, or None.
    """


# -------------------------------------------------------------------------
# After the view
# -------------------------------------------------------------------------


@hookspec
def flask_allow_response(decision: Decision, response: Response, app: Flask) -> None:
    """Observe the response to a guarded request (the auto-ban policy counts its status).

    Called from an ``after_request`` function, which is only installed while some plugin
    implements this hook (a guarded request costs nothing more otherwise). Not called for a
    request that ended in an unhandled exception. An exception raised here is logged and
    ignored; the response is sent unchanged.

    :param decision: What was decided for the request (``decision.client`` is the client the
        trusted proxies resolve).
    :param response: The response about to be sent.
    :param app: The Flask app the request is for.
    """

"""The Flask extension: wires the engine into the request cycle of each app."""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from flask import Flask, Request, abort, current_app, has_app_context, request
from werkzeug.wrappers import Response

from . import config as keys
from .accesslog import AccessLog
from .client import Client
from .decision import Decision
from .engine import Engine, combine, compile_rules
from .errors import ConfigError
from .index import built_elsewhere
from .matcher import MatcherContext
from .plugins import make_plugin_manager
from .registry import MatcherRegistry
from .routes import RouteMarks, RouteTable, unreadable_client

EXTENSION_KEY = "flask_allow"
DECISION_ENVIRON_KEY = "flask_allow.decision"
log = logging.getLogger("flask_allow")
log.addHandler(logging.NullHandler())


def _calls(hook: Any) -> list[tuple[Callable[..., Any], tuple[str, ...]]] | None:
    """The implementations of a hook in call order, or None when a wrapper needs pluggy to call."""
    impls = hook.get_hookimpls()
    if any(getattr(i, "hookwrapper", False) or getattr(i, "wrapper", False) for i in impls):
        return None
    return [(impl.function, tuple(impl.argnames)) for impl in reversed(impls)]


def _positional(function: Callable[..., Any], argnames: tuple[str, ...], first: str) -> Callable[..., Any] | None:
    """Make a hook implementation callable as ``(first, app)``, passing only what it names (as
    pluggy does), without building keyword arguments per call; None for another signature."""
    if argnames == (first, "app"):
        return function
    if argnames == (first,):
        return lambda value, app: function(value)
    if argnames == ("app", first):
        return lambda value, app: function(app, value)
    if argnames == ("app",):
        return lambda value, app: function(app)
    if argnames == ():
        return lambda value, app: function()
    return None


class AppState:
    """Everything flask_allow holds for one app; built whole, then swapped in by ``reload()``."""

    def __init__(
        self,
        app: Flask,
        extension: FlaskAllow,
        shared: dict[str, Any] | None = None,
        previous: AppState | None = None,
    ) -> None:
        self.app_ref = weakref.ref(app)
        self.extension = extension
        config = app.config
        # Every part is built even when an earlier one is wrong, so that one ConfigError can
        # name every mistake; a part that cannot be built without its predecessor stops there.
        errors: list[ConfigError] = []
        self.settings = keys.Settings(config, app.root_path, errors)
        self.shared: dict[str, Any] = shared if shared is not None else {}
        try:
            self.pm = make_plugin_manager(config, extension.plugins)
            provided = []
            for plugin_matchers, plugin in self._each_result(self.pm.hook.flask_allow_matchers):
                for cls in plugin_matchers or ():
                    provided.append((cls, plugin))
            self.registry = MatcherRegistry(provided)
        except ConfigError as exc:
            raise combine([*errors, exc]) from exc
        from .builtins.proxies import TrustedProxies

        built: list[Any] = []

        def attempt(build: Callable[[], Any]) -> Any:
            try:
                part = build()
            except ConfigError as exc:
                errors.append(exc)
                return None
            built.append(part)
            return part

        try:
            engine = attempt(lambda: self.make_engine(config.get(keys.ADDRESS_RESTRICTION), keys.ADDRESS_RESTRICTION))
            #: ALLOW_TRUSTED_PROXIES and ALLOW_PROXY_HEADER, compiled (read by the proxies plugin).
            self.proxies: TrustedProxies = attempt(lambda: TrustedProxies(self))
            if engine is not None:  # route rules are evaluated after the global ones
                self.engine: Engine = engine
                #: Per-route and per-blueprint rules (``exempt``, ``restrict``), compiled.
                self.routes: RouteTable = attempt(lambda: RouteTable(self, extension.route_marks))
            log_value = config.get(keys.ACCESS_LOG)
            if errors and log_value is not None:  # only check it: an opened file would stay behind
                try:
                    AccessLog.options(log_value)
                except ConfigError as exc:
                    errors.append(exc)
            else:
                self.access_log: AccessLog | None = attempt(lambda: self._access_log(log_value, previous))
            if errors:
                raise combine(errors)
        except BaseException:
            for part in built:
                if isinstance(part, AccessLog):
                    if part is not getattr(previous, "access_log", None):
                        part.stop()
                elif part is not None:
                    part.close()
            raise
        self._observers = _calls(self.pm.hook.flask_allow_decision)
        self._addressers = _calls(self.pm.hook.flask_allow_client_address)
        self._renderers = _calls(self.pm.hook.flask_allow_deny_response)

    @property
    def app(self) -> Flask:
        app = self.app_ref()
        if app is None:  # pragma: no cover - the app owns this state
            raise RuntimeError("the app of this flask_allow state is gone")
        return app

    def _each_result(self, hook: Any) -> Iterable[tuple[Any, str]]:
        for impl in reversed(hook.get_hookimpls()):
            yield impl.function(), impl.plugin_name

    def make_engine(
        self, restriction: Any, where: str, scope: str | None = None, default_allow: bool | None = None
    ) -> Engine:
        """Compile an ``ADDRESS_RESTRICTION``-style list with this app's rule types."""
        app = self.app
        engine_ref: list[Engine] = []

        def changed() -> None:
            if engine_ref:
                engine_ref[0].invalidate()

        def make_context(location: str) -> MatcherContext:
            return MatcherContext(app, app.config, location, self.shared, app.logger, changed)

        rules = compile_rules(restriction, self.registry, make_context, where)
        engine = Engine(
            rules,
            self.settings.default_allow if default_allow is None else default_allow,
            self.settings.cache_size,
            scope=scope,
            logger=app.logger,
        )
        engine_ref.append(engine)
        return engine

    def _access_log(self, value: Any, previous: AppState | None) -> AccessLog | None:
        if value is None:
            return None
        old = previous.access_log if previous is not None else None
        if old is not None and old.options(value) == old.options(old.value):
            return old  # unchanged: keep the handler, so no line is lost or doubled
        return AccessLog(value, self.app)

    def start(self, previous: AppState | None = None) -> None:
        """Take over from ``previous`` (on reload): attach the log, report the lints."""
        if self.access_log is not None:
            self.access_log.no_rules = not self.engine.rules
            self.access_log.start()
        if previous is not None:
            if previous.access_log is not None and previous.access_log is not self.access_log:
                previous.access_log.stop()
            previous.engine.close()
            previous.routes.close()
            previous.proxies.close()
        for lint in self.engine.lints:
            self.app.logger.warning("flask_allow: %s", lint)

    def close(self) -> None:
        """Release matchers and the log handler (app teardown, tests)."""
        self.engine.close()
        self.routes.close()
        self.proxies.close()
        if self.access_log is not None:
            self.access_log.stop()

    # -- the request path ---------------------------------------------------

    def client_of(self, req: Request) -> Client:
        """Ask the plugins who the client is; an answer that cannot be had denies (fail closed)."""
        app = self.app
        try:
            if self._addressers is None:
                answer = self.pm.hook.flask_allow_client_address(request=req, app=app)
            else:
                answer = None
                for function, argnames in self._addressers:
                    answer = function(**{n: (req if n == "request" else app) for n in argnames})
                    if answer is not None:
                        break
        except Exception as exc:
            app.logger.error("flask_allow: finding the client address failed: %r (request denied)", exc, exc_info=True)
            return Client("", req, via=(f"client address hook failed: {type(exc).__name__}",))
        if isinstance(answer, Client):
            answer.request = req
            return answer
        return Client(answer if isinstance(answer, str) else "", req)

    def decide(self, req: Request) -> Decision:
        """Decide for one request: its client, the global rules, then the route's (``flask allow check`` too)."""
        client = self.client_of(req)
        if self.routes.active:
            decision = self.routes.decide(req, client)
        elif client.key is None and client.via:
            decision = unreadable_client(client)
        else:
            decision = self.engine.decide(client)
        if not decision.allowed and self.settings.report_only:
            decision.enforced = False
        return decision

    @functools.cached_property
    def _peer_is_client(self) -> bool:
        """Whether the client is simply the socket peer: only the built-in answer, no trusted proxies."""
        from .builtins import proxies as builtin

        calls = self._addressers
        return (
            calls is not None
            and [f for f, _ in calls] == [builtin.flask_allow_client_address]
            and not self.proxies.active
        )

    @functools.cached_property
    def _short_way(self) -> Engine | None:
        """The engine, when the socket peer is the client and every global rule is static."""
        return self.engine if self._peer_is_client and self.engine.static else None

    @functools.cached_property
    def _observe(self) -> list[Callable[[Decision, Flask], Any]] | None:
        """The ``flask_allow_decision`` implementations, each callable as ``(decision, app)``.

        The built-in access log's is left out when this state has no ``ACCESS_LOG``: it would
        write nothing.
        """
        from .accesslog import plugin as builtin

        calls = self._observers
        if calls is None:
            return None
        if self.access_log is None:
            calls = [(function, names) for function, names in calls if function is not builtin.flask_allow_decision]
        adapted = [_positional(function, argnames, "decision") for function, argnames in calls]
        return None if None in adapted else adapted  # type: ignore[return-value]

    def guard(self, req: Request) -> Response | None:
        """Decide for one request, tell the observers, and deny when the decision says so."""
        engine = self._short_way
        if engine is not None and not self.routes.active:  # the usual set-up: one search in the index
            address = req.environ.get("REMOTE_ADDR") or ""
            try:
                rule = engine.lookup(address)
            except Exception:  # not an IP address (or the search failed): the engine says why
                decision = engine.decide(Client(address, req))
            else:
                allowed = engine.default_allow if rule is None else rule.allowed
                decision = Decision(Client(address, req), rule, allowed, None, engine.scope)
            if not decision.allowed and self.settings.report_only:
                decision.enforced = False
        else:
            decision = self.decide(req)
        req.environ[DECISION_ENVIRON_KEY] = decision
        observe = self._observe
        if observe is None or observe:
            self.notify(decision)
        if decision.allowed or not decision.enforced:
            return None
        return self.deny(decision)

    def notify(self, decision: Decision) -> None:
        """Call every ``flask_allow_decision`` observer; one that fails is logged, not fatal."""
        observe = self._observe
        if observe is not None:
            if observe:
                app = self.app
                for call in observe:
                    try:
                        call(decision, app)
                    except Exception:
                        app.logger.exception("flask_allow: flask_allow_decision of %r failed", call)
            return
        app = self.app
        if self._observers is None:
            hook, write_line = self._hook_then_log
            try:
                hook(decision=decision, app=app)
            except Exception:
                app.logger.exception("flask_allow: a flask_allow_decision plugin failed")
            if write_line is not None:  # after the others, whatever they did: the line is never lost
                try:
                    write_line(decision=decision, app=app)
                except Exception:
                    app.logger.exception("flask_allow: the access log's flask_allow_decision failed")
            return
        for function, argnames in self._observers:
            try:
                function(**{n: (decision if n == "decision" else app) for n in argnames})
            except Exception:
                app.logger.exception("flask_allow: flask_allow_decision of %r failed", function)

    @functools.cached_property
    def _hook_then_log(self) -> tuple[Any, Callable[..., Any] | None]:
        """When pluggy calls the observers (a wrapper among them): the hook without the built-in
        access log, and the access log's implementation, called after it on its own (a plugin
        that raises stops pluggy's call, and would cost the line)."""
        from .accesslog import plugin as builtin

        if self.access_log is None or not self.pm.is_registered(builtin):
            return self.pm.hook.flask_allow_decision, None
        hook = self.pm.subset_hook_caller("flask_allow_decision", remove_plugins=[builtin])
        return hook, builtin.flask_allow_decision

    def deny(self, decision: Decision) -> Response:
        """Render the denial through a plugin, or abort with ``ALLOW_DENY_STATUS``."""
        app = self.app
        response = None
        try:
            if self._renderers is None:
                response = self.pm.hook.flask_allow_deny_response(decision=decision, app=app)
            else:
                for function, argnames in self._renderers:
                    response = function(**{n: (decision if n == "decision" else app) for n in argnames})
                    if response is not None:
                        break
        except Exception:
            app.logger.exception("flask_allow: a flask_allow_deny_response plugin failed")
            response = None
        if response is not None:
            return response
        abort(self.settings.deny_status)


class FlaskAllow:
    """IP access control for one or more Flask apps.

    ``FlaskAllow(app)`` or ``FlaskAllow()`` then ``init_app(app)``. ``plugins`` are extra plugin
    objects or modules registered for every app this extension is initialised on.
    """

    def __init__(self, app: Flask | None = None, *, plugins: Iterable[object] = ()) -> None:
        self.plugins = list(plugins)
        self._app: weakref.ref[Flask] | None = None
        #: What ``exempt`` and ``restrict`` marked (compiled by every app this guards).
        self.route_marks = RouteMarks()
        if app is not None:
            self._app = weakref.ref(app)
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Guard ``app``: build its rules (raising ``ConfigError`` when they are wrong)."""
        existing = app.extensions.get(EXTENSION_KEY)
        if existing is not None:
            if existing.extension is self:
                return  # already guarding this app: never a second hook or handler
            raise RuntimeError("this app is already guarded by another FlaskAllow instance")
        state = AppState(app, self)
        app.extensions[EXTENSION_KEY] = state
        try:
            state.start()
        except BaseException:
            del app.extensions[EXTENSION_KEY]
            state.close()
            raise
        app.before_request_funcs.setdefault(None, []).insert(0, _make_guard(app))
        self.route_marks.apps.add(app)
        from .cli import register as register_cli  # here, so `python -m flask_allow.cli` runs cleanly

        register_cli(app)
        if not app.config.get(keys.ADDRESS_RESTRICTION) and not app.config.get(keys.ACCESS_LOG):
            app.logger.info("flask_allow: neither ADDRESS_RESTRICTION nor ACCESS_LOG is configured")

    def _get_app(self, app: Flask | None = None) -> Flask:
        if app is not None:
            return app
        if has_app_context():
            return current_app._get_current_object()  # type: ignore[attr-defined]
        if self._app is not None:
            found = self._app()
            if found is not None:
                return found
        raise RuntimeError("no app: call this inside an app context, pass app=, or create FlaskAllow(app)")

    def state(self, app: Flask | None = None) -> AppState:
        """The flask_allow state of ``app`` (the current app by default)."""
        app = self._get_app(app)
        state = app.extensions.get(EXTENSION_KEY)
        if state is None or state.extension is not self:
            raise RuntimeError("flask_allow is not initialised on this app (call init_app)")
        return state

    def exempt(self, target: Any = None) -> Any:
        """Skip the global rules for a view (``@allow.exempt``), a View class or a blueprint.

        Exempt requests are still decided (as exempt) and logged. Returns ``target`` unchanged.
        """
        if target is None:  # @allow.exempt()
            return self.route_marks.exempt
        return self.route_marks.exempt(target)

    def restrict(self, rules: Sequence[Any], default: str = "deny") -> Callable[[Any], Any]:
        """Add rules (``ADDRESS_RESTRICTION`` format) for a view, View class or blueprint.

        They are evaluated after the global rules allowed the request; when none matches,
        ``default`` decides (deny: ``restrict([{"ALLOW": "10.0.0.0/8"}])`` means only 10/8).
        Invalid rules raise ``ConfigError`` here on the apps already guarded, else at ``init_app``.
        """
        return self.route_marks.restrict(rules, default)

    def check(self, address: str, *, app: Flask | None = None) -> Decision:
        """Decide for ``address`` with the global rules, without a request."""
        return self.state(app).engine.decide(Client(address))

    def reload(self, app: Flask | None = None) -> None:
        """Re-read the configuration and ``file:`` sources, then swap the rules in at once.

        In-flight requests finish with the rules they started with. A reload that fails raises
        ``ConfigError`` and leaves the running rules as they were.
        """
        app = self._get_app(app)
        old = self.state(app)
        with built_elsewhere():  # large lists compile in a child process: requests keep the GIL
            new = AppState(app, self, shared=old.shared, previous=old)
        app.extensions[EXTENSION_KEY] = new
        new.start(previous=old)


def _make_guard(app: Flask) -> Callable[[], Response | None]:
    app_ref = weakref.ref(app)

    def flask_allow_guard() -> Response | None:
        state: AppState = app_ref().extensions[EXTENSION_KEY]  # type: ignore[union-attr]
        return state.guard(request._get_current_object())  # type: ignore[attr-defined]

    return flask_allow_guard


__all__ = ["FlaskAllow", "AppState", "ConfigError", "EXTENSION_KEY"]

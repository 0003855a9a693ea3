"""The Flask extension: wires the engine into the request cycle of each app."""

from __future__ import annotations

import functools
import logging
import os
import time
import weakref
from collections.abc import Callable, Container, Iterable, Sequence
from datetime import timedelta
from typing import Any, TypeVar, overload

from flask import Flask, Request, abort, current_app, has_app_context, has_request_context, request
from werkzeug.wrappers import Response

from . import config as keys
from . import logsource
from .accesslog import AccessLog
from .bans import Ban, BanService
from .bans.ban import network_of, ttl_seconds
from .client import Client
from .decision import Decision
from .engine import Engine, build_rule, combine, compile_rules, fatal_lints
from .errors import ConfigError
from .index import built_elsewhere
from .live import Watcher, swap_state
from .live.shrink import ShrinkGuard, Source
from .matcher import MatcherContext
from .plugins import make_plugin_manager
from .registry import MatcherRegistry
from .routes import RouteMarks, RouteTable, unreadable_client

#: A view function, View class or Blueprint, whose type ``exempt`` and ``restrict`` keep.
T = TypeVar("T")
EXTENSION_KEY = "flask_allow"
DECISION_ENVIRON_KEY = "flask_allow.decision"
log = logging.getLogger("flask_allow")
log.addHandler(logging.NullHandler())
logsource.attach(log)


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
    """Everything flask_allow holds for one app; built whole, then swapped in by ``reload()``.

    Kept in ``app.extensions["flask_allow"]`` and returned by :meth:`~flask_allow.FlaskAllow.state`. Its parts:
    ``settings`` (the validated top-level keys), ``pm`` (the app's pluggy plugin manager),
    ``registry`` (the rule types by prefix), ``engine`` (the compiled ``ADDRESS_RESTRICTION``:
    ``engine.rules`` lists the :class:`~flask_allow.Rule` objects in evaluation order),
    ``routes`` (the per-route rules), ``proxies`` (the trusted proxies) and ``access_log``.
    A ``reload()`` replaces the whole object; do not keep one across reloads.
    """

    def __init__(
        self,
        app: Flask,
        extension: FlaskAllow,
        shared: dict[str, Any] | None = None,
        previous: AppState | None = None,
        automatic: bool = False,
    ) -> None:
        self.app_ref = weakref.ref(app)
        self.extension = extension
        #: Whether this state is being built because a watched source changed.
        self.automatic = automatic
        config = app.config
        # Every part is built even when an earlier one is wrong, so that one ConfigError can
        # name every mistake; a part that cannot be built without its predecessor stops there.
        errors: list[ConfigError] = []
        self.settings = keys.Settings(config, app.root_path, errors)
        self.shared: dict[str, Any] = shared if shared is not None else {}
        #: The files these rules were built from, watched for change (``ALLOW_WATCH_INTERVAL``).
        guard = ShrinkGuard.of(self.shared)
        self.watcher = Watcher(self.settings.watch_interval, self._source_changed, app.logger, retry_at=guard.retry_at)
        #: (rule location, path) -> the list each ``file:`` (or feed) rule was built from.
        self.sources: dict[tuple[str, str], Source] = {}
        try:
            self.pm = make_plugin_manager(config, extension.plugins)
            provided = []
            for plugin_matchers, plugin in self._each_result(self.pm.hook.flask_allow_matchers):
                for cls in plugin_matchers or ():
                    provided.append((cls, plugin))
            self.registry = MatcherRegistry(provided)
        except ConfigError as exc:
            raise combine([*errors, exc]) from exc
        self._check_plugin_config(app, errors)
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
            engine = attempt(
                lambda: self.make_engine(
                    config.get(keys.ADDRESS_RESTRICTION), keys.ADDRESS_RESTRICTION, first=self._implied(config)
                )
            )
            #: ALLOW_TRUSTED_PROXIES and ALLOW_PROXY_HEADER, compiled (read by the proxies plugin).
            self.proxies: TrustedProxies = attempt(lambda: TrustedProxies(self))
            if engine is not None and self.proxies is not None:  # a DENY covering a proxy is linted
                for proxy in self.proxies.rules:
                    engine.protect(proxy.matcher.spans() or (), f"the trusted proxy {proxy.spec}")
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
            if not errors and self.settings.lints_fatal:
                errors.extend(fatal_lints([*self.engine.lints, *self.proxies.lints]))
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

    def lints(self) -> list[str]:
        """Every start-up lint: the global rules', the trusted proxies', the route rules'."""
        found = [*self.engine.lints, *self.proxies.lints]
        for engine in self.routes.engines.values():
            found.extend(engine.lints)
        return found

    def _check_plugin_config(self, app: Flask, errors: list[ConfigError]) -> None:
        """Let every ``flask_allow_check_config`` plugin check its keys; collect what they raise."""
        for impl in reversed(self.pm.hook.flask_allow_check_config.get_hookimpls()):
            try:
                impl.function(**{name: (app if name == "app" else app.config) for name in impl.argnames})
            except ConfigError as exc:
                errors.append(exc)
            except Exception as exc:
                message = f"plugin {impl.plugin_name!r} failed to check the configuration: {type(exc).__name__}: {exc}"
                errors.append(ConfigError(message))

    def _each_result(self, hook: Any) -> Iterable[tuple[Any, str]]:
        for impl in reversed(hook.get_hookimpls()):
            yield impl.function(), impl.plugin_name

    def _implied(self, config: Any) -> list[tuple[str, str, str]]:
        """``{"DENY": "banned"}`` first when bans are in use and no global rule names ``banned``."""
        bans = self.settings.bans
        if not bans.in_use or _names_banned(config.get(keys.ADDRESS_RESTRICTION)):
            return []
        return [("DENY", "banned", f"{bans.implied_by} (implied)")]

    def make_engine(
        self,
        restriction: Any,
        where: str,
        scope: str | None = None,
        default_allow: bool | None = None,
        first: Sequence[tuple[str, str, str]] = (),
    ) -> Engine:
        """Compile an ``ADDRESS_RESTRICTION``-style list with this app's rule types; ``first`` are
        ``(action, value, location)`` rules put before it (the implied ``banned``)."""
        app = self.app
        engine_ref: list[Engine] = []

        def changed() -> None:
            if engine_ref:
                engine_ref[0].invalidate()

        def make_context(location: str) -> MatcherContext:
            return self.context(location, changed)

        rules = [build_rule(a, v, loc, self.registry, make_context, i) for i, (a, v, loc) in enumerate(first)]
        try:
            rules += compile_rules(restriction, self.registry, make_context, where)
        except BaseException:
            for rule in rules:
                rule.matcher.close()
            raise
        for i, rule in enumerate(rules):
            rule.index = i
        engine = Engine(
            rules,
            self.settings.default_allow if default_allow is None else default_allow,
            self.settings.cache_size,
            scope=scope,
            logger=app.logger,
            index_cache=self.index_cache_folder,
        )
        engine_ref.append(engine)
        return engine

    @property
    def index_cache_folder(self) -> str | None:
        """Where large indexes are shared between this machine's processes (``ALLOW_INDEX_CACHE``)."""
        value = self.settings.index_cache
        if value is False:
            return None
        instance = self.app.instance_path
        return os.path.join(instance, "flask_allow_index") if value is None else os.path.join(instance, str(value))

    def context(self, location: str, changed: Callable[[], None] = lambda: None) -> MatcherContext:
        """The ``MatcherContext`` of the rule at ``location`` (its files are watched by this state)."""
        app = self.app

        def watch(path: str) -> None:
            self.watcher.add(path, location)

        def loaded(path: str, entries: int, guard: bool, url: str | None) -> None:
            self._loaded(location, path, entries, guard, url)

        return MatcherContext(
            app,
            app.config,
            location,
            self.shared,
            app.logger,
            changed,
            watch=watch,
            automatic=self.automatic,
            loaded=loaded,
            report=self.report_error,
        )

    def _loaded(self, location: str, path: str, entries: int, guard: bool, url: str | None) -> None:
        """A rule read ``entries`` from ``path``: hold an automatic shrink back, then record it."""
        if guard and self.automatic:
            settings = self.settings
            ShrinkGuard.of(self.shared).check(
                location, path, entries, settings.shrink_limit, settings.shrink_hold, self.app.logger
            )
        kind = "file" if url is None else "feed"
        self.sources[(location, path)] = Source(location, path, entries, time.time(), kind, url)

    def _source_changed(self, paths: list[str]) -> None:
        """The watcher's rebuild: new rules from the changed files, unless this state was replaced."""
        self.extension._rebuild(self.app, reason=f"changed: {', '.join(paths)}", automatic=True, current=self)

    def _access_log(self, value: Any, previous: AppState | None) -> AccessLog | None:
        if value is None:
            return None
        old = previous.access_log if previous is not None else None
        if old is not None and old.options(value) == old.options(old.value):
            return old  # unchanged: keep the handler, so no line is lost or doubled
        return AccessLog(value, self.app)

    def start(self, previous: AppState | None = None, reason: str = "init_app") -> None:
        """Take over from ``previous`` (on reload): attach the log, watch the sources, report
        the lints, and tell the ``flask_allow_rules_changed`` plugins why."""
        if self.access_log is not None:
            self.access_log.no_rules = not self.engine.rules
            self.access_log.start()
            if previous is None or previous.access_log is not self.access_log:
                where = os.path.abspath(self.access_log.filename)  # a relative name: the working directory
                self.app.logger.info("flask_allow: the access log is written to %s", where)
        ShrinkGuard.of(self.shared).commit(self.sources)
        if previous is not None:
            previous.watcher.stop()
            if previous.access_log is not None and previous.access_log is not self.access_log:
                previous.access_log.stop()
            previous.engine.close()
            previous.routes.close()
            previous.proxies.close()
        self.watcher.start()
        for lint in self.engine.lints:
            self.app.logger.warning("flask_allow: %s", lint)
        try:
            self.pm.hook.flask_allow_rules_changed(app=self.app, state=self, previous=previous, reason=reason)
        except Exception:
            self.app.logger.exception("flask_allow: a flask_allow_rules_changed plugin failed")

    def report_error(self, kind: str, message: str, location: str | None = None) -> None:
        """Tell the ``flask_allow_error`` plugins of an error (they never make it worse)."""
        try:
            self.pm.hook.flask_allow_error(app=self.app, kind=kind, message=message, location=location)
        except Exception:
            self.app.logger.exception("flask_allow: a flask_allow_error plugin failed")

    @property
    def bans(self) -> BanService | None:
        """The app's bans in this process (``banned`` rules in use), or None."""
        from .builtins.bans import SHARED_KEY

        return self.shared.get(SHARED_KEY)

    @property
    def active_bans(self) -> int:
        """How many bans are in force in this process, without asking the store (for metrics)."""
        bans = self.bans
        return 0 if bans is None else bans.snapshot.size

    @functools.cached_property
    def _respond(self) -> list[Callable[[Decision, Response, Flask], Any]]:
        """The ``flask_allow_response`` implementations, each callable as ``(decision, response, app)``;
        the built-in auto-ban counting (the service's own method, bound) only while an
        ``ALLOW_AUTOBAN`` policy is in force."""
        from .builtins import bans as builtin

        service = self.bans
        found: list[Callable[[Decision, Response, Flask], Any]] = []
        for impl in reversed(self.pm.hook.flask_allow_response.get_hookimpls()):
            function, names = impl.function, tuple(impl.argnames)
            if function is builtin.flask_allow_response:
                if service is not None and service.policy is not None:
                    found.append(service.count_response)
            elif names == ("decision", "response", "app"):
                found.append(function)
            else:

                def call(decision: Decision, response: Response, app: Flask, f: Any = function, n: Any = names) -> Any:
                    given = {"decision": decision, "response": response, "app": app}
                    return f(**{name: given[name] for name in n})

                found.append(call)
        return found

    @functools.cached_property
    def _counted_only(self) -> Container[int] | None:
        """The statuses the auto-ban counts, when its counting is the only ``flask_allow_response``
        call: any other response is then let through without looking at the request."""
        service = self.bans
        if service is None or self._respond != [service.count_response]:
            return None
        return service._statuses

    def respond(self, response: Response) -> Response:
        """The ``after_request`` function: tell the ``flask_allow_response`` plugins."""
        calls = self._respond
        if calls:
            counted = self._counted_only
            if counted is not None and response.status_code not in counted:
                return response
            decision = request._get_current_object().environ.get(DECISION_ENVIRON_KEY)  # type: ignore[attr-defined]
            if decision is not None:
                app = self.app
                for call in calls:
                    try:
                        call(decision, response, app)
                    except Exception:
                        app.logger.exception("flask_allow: a flask_allow_response plugin failed")
        return response

    def close(self) -> None:
        """Release matchers, the watcher and the log handler (app teardown, tests)."""
        bans = self.bans
        if bans is not None:
            bans.close()
        self.watcher.stop()
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

        The built-in access log's is this state's ``AccessLog.write`` (what it calls), or left
        out when this state has no ``ACCESS_LOG``: it would write nothing.
        """
        from .accesslog import plugin as builtin

        calls = self._observers
        if calls is None:
            return None
        log = self.access_log
        adapted: list[Callable[[Decision, Flask], Any] | None] = []
        for function, argnames in calls:
            if function is builtin.flask_allow_decision:
                if log is not None:
                    adapted.append(log.write)
            else:
                adapted.append(_positional(function, argnames, "decision"))
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
        if decision.error is not None:
            self._report_denial(decision)
        observe = self._observe
        if observe:  # the usual: the observers called here, each as (decision, app)
            app = self.app
            for call in observe:
                try:
                    call(decision, app)
                except Exception:
                    app.logger.exception("flask_allow: flask_allow_decision of %r failed", call)
        elif observe is None:
            self.notify(decision)
        if decision.allowed or not decision.enforced:
            return None
        return self.deny(decision)

    def _report_denial(self, decision: Decision) -> None:
        """Report a request denied for an error: its client address unreadable, or a rule that failed."""
        rule = decision.rule
        kind = "client_address" if decision.client.key is None else "matcher"
        self.report_error(kind, decision.error or "", rule.location if rule is not None else None)

    def notify(self, decision: Decision) -> None:
        """Call the ``flask_allow_decision`` observers through pluggy, when they cannot be called
        one by one (a wrapper among them: see ``_observe``); one that fails is logged, not fatal."""
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
    objects or modules registered for every app this extension is initialised on. One object may
    guard several apps; each keeps its own state (:class:`~flask_allow.extension.AppState`) in
    ``app.extensions["flask_allow"]``. The app given to the constructor is held by a weak reference,
    so that ``check`` and ``reload`` work outside an app context.
    """

    def __init__(self, app: Flask | None = None, *, plugins: Iterable[object] = ()) -> None:
        self.plugins = list(plugins)
        self._app: weakref.ref[Flask] | None = None
        #: What ``exempt`` and ``restrict`` marked (compiled by every app this guards).
        self.route_marks = RouteMarks()
        self._responding: weakref.WeakSet[Flask] = weakref.WeakSet()
        if app is not None:
            self._app = weakref.ref(app)
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Guard ``app``: build its rules (raising ``ConfigError`` when they are wrong).

        Adds the guard as the app's first ``url_value_preprocessor`` (so it decides before any
        of the app's code in ``preprocess_request``: the URL value preprocessors, then the
        ``before_request`` functions) and the ``flask allow`` command group. Calling it again
        for the same app does nothing; an app guarded by another ``FlaskAllow`` raises
        ``RuntimeError``. A failure leaves the app as it was.
        """
        existing = app.extensions.get(EXTENSION_KEY)
        if existing is not None:
            if existing.extension is self:
                return  # already guarding this app: never a second hook or handler
            raise RuntimeError("this app is already guarded by another FlaskAllow instance")
        logsource.attach(app.logger)  # "WARNING in flask_allow", never "in refresher"
        state = AppState(app, self)
        app.extensions[EXTENSION_KEY] = state
        try:
            state.start(reason="init_app")
        except BaseException:
            del app.extensions[EXTENSION_KEY]
            state.close()
            raise
        app.url_value_preprocessors.setdefault(None, []).insert(0, _make_guard(app))
        self._watch_responses(app, state)
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
        """The flask_allow state of ``app`` (by default the current app, else the constructor's).

        Raises ``RuntimeError`` when there is no app to take, or this extension does not guard it.
        """
        app = self._get_app(app)
        state = app.extensions.get(EXTENSION_KEY)
        if state is None or state.extension is not self:
            raise RuntimeError("flask_allow is not initialised on this app (call init_app)")
        return state

    @overload
    def exempt(self, target: None = None) -> Callable[[T], T]: ...

    @overload
    def exempt(self, target: T) -> T: ...

    def exempt(self, target: Any = None) -> Any:
        """Skip the global rules for a view (``@allow.exempt``), a View class or a blueprint.

        Exempt requests are still decided (as exempt) and logged. Returns ``target`` unchanged.
        """
        if target is None:  # @allow.exempt()
            return self.route_marks.exempt
        return self.route_marks.exempt(target)

    def restrict(self, rules: Sequence[Any], default: str = "deny") -> Callable[[T], T]:
        """Add rules (``ADDRESS_RESTRICTION`` format) for a view, View class or blueprint.

        They are evaluated after the global rules allowed the request; when none matches,
        ``default`` decides (deny: ``restrict([{"ALLOW": "10.0.0.0/8"}])`` means only 10/8).
        Invalid rules raise ``ConfigError`` here on the apps already guarded, else at ``init_app``.
        """
        return self.route_marks.restrict(rules, default)

    def check(self, address: str, *, app: Flask | None = None) -> Decision:
        """Decide for ``address`` with the global rules, without a request.

        ``address`` is the client as the rules see it (proxy headers and per-route rules do not
        apply: ``flask allow check`` simulates a whole request). Nothing is logged. Works inside an
        app context, with ``app=``, or anywhere when the extension was given the app.
        """
        return self.state(app).engine.decide(Client(address))

    def _watch_responses(self, app: Flask, state: AppState) -> None:
        """Install the ``after_request`` function once some plugin implements ``flask_allow_response``."""
        if state._respond and app not in self._responding:
            self._responding.add(app)
            app_ref = weakref.ref(app)

            def flask_allow_response(response: Response) -> Response:
                found = app_ref()
                return found.extensions[EXTENSION_KEY].respond(response) if found is not None else response

            app.after_request_funcs.setdefault(None, []).append(flask_allow_response)

    def _bans(self, app: Flask | None) -> BanService:
        service = self.state(app).bans
        if service is None:
            raise RuntimeError(
                f"bans are not in use: set {keys.ALLOW_BANS} = True, {keys.ALLOW_AUTOBAN}, or a 'banned' rule"
            )
        return service

    def ban(
        self,
        address_or_network: Any,
        ttl: float | timedelta | None = None,
        reason: str = "",
        *,
        app: Flask | None = None,
    ) -> Ban:
        """Ban an address or network: at once in this process, in every other within
        ``ALLOW_BAN_SYNC_INTERVAL`` + 1 s. ``ttl`` in seconds or a ``timedelta``; None is
        ``ALLOW_BAN_TTL``; 0 lasts until unbanned. Raises ``ValueError`` for a bad address or ttl,
        or a network the ban exemptions cover."""
        seconds = None if ttl is None else ttl_seconds(ttl)
        return self._bans(app).ban(network_of(address_or_network), seconds, str(reason))

    def ban_many(
        self,
        addresses_or_networks: Iterable[Any],
        ttl: float | timedelta | None = None,
        reason: str = "",
        *,
        app: Flask | None = None,
    ) -> list[Ban]:
        """Ban many addresses or networks as one change (a list from a file, say): like ``ban()``
        for each, in the order given, but all or none: a bad or exempt one raises ``ValueError``
        before any is banned."""
        seconds = None if ttl is None else ttl_seconds(ttl)
        return self._bans(app).ban_many([network_of(item) for item in addresses_or_networks], seconds, str(reason))

    def unban(self, address_or_network: Any, *, app: Flask | None = None) -> bool:
        """Lift the ban of exactly this address or network; whether it was banned (as this process knew)."""
        return self._bans(app).unban(network_of(address_or_network))

    def bans(self, *, app: Flask | None = None) -> list[Ban]:
        """The bans in force, as this process knows them (no store round trip)."""
        return self._bans(app).bans()

    def strike(
        self, address: str | None = None, weight: int = 1, reason: str = "", *, app: Flask | None = None
    ) -> bool:
        """Count against a client for the ``ALLOW_AUTOBAN`` policy (a failed login): the current
        request's client by default. False when not counted (exempt, a trusted proxy, no policy)."""
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise ValueError(f"weight must be a whole number >= 1, not {weight!r}")
        service = self._bans(app)
        if address is None:
            decision = request.environ.get(DECISION_ENVIRON_KEY) if has_request_context() else None
            if decision is None:
                raise RuntimeError("strike() without an address needs a request guarded by flask_allow")
            key = decision.client.key
        else:
            key = Client(address).key
            if key is None:
                raise ValueError(f"{address!r} is not an IP address")
        return service.count(key, weight, str(reason))

    def reload(self, app: Flask | None = None) -> None:
        """Re-read the configuration and ``file:`` sources, then swap the rules in at once.

        In-flight requests finish with the rules they started with. A reload that fails raises
        ``ConfigError`` and leaves the running rules as they were.
        """
        self._rebuild(self._get_app(app), reason="reload")

    def _rebuild(self, app: Flask, reason: str, automatic: bool = False, current: AppState | None = None) -> None:
        """Build the app's rules anew off the request path and swap them in (``reload``, the watcher).

        With ``current``, nothing is done when the app's state is no longer ``current`` (it was
        replaced meanwhile). An automatic rebuild that fails is logged and reported, then raised.
        """
        self.state(app)

        def build(old: AppState | None) -> AppState:
            assert old is not None
            with built_elsewhere():  # large lists compile in a child process: requests keep the GIL
                return AppState(app, self, shared=old.shared, previous=old, automatic=automatic)

        replaced: list[AppState | None] = []

        def start(new: AppState, old: AppState | None) -> None:
            replaced.append(old)
            new.start(previous=old, reason=reason)
            self._watch_responses(app, new)

        try:
            new = swap_state(app, EXTENSION_KEY, build, start, unless=None if current is None else current.__ne__)
        except ConfigError as exc:
            if automatic and current is not None:
                app.logger.error(
                    "flask_allow: %s; the last good rules stay in force (%s):\n%s",
                    reason,
                    _counts(current, None),
                    exc,
                )
                current.report_error("source_refused", str(exc), None)
            raise
        if new is not None:
            app.logger.info("flask_allow: rules swapped in (%s): %s", reason, _counts(replaced[0], new))


def _counts(old: AppState | None, new: AppState | None) -> str:
    """The entries of each list file before and after a swap (or those in force), for the log."""
    before = {} if old is None else old.sources
    after = before if new is None else new.sources
    if not after:
        return "no list files"
    parts = []
    for key, source in after.items():
        name = source.url or source.path
        was = before.get(key)
        if new is None or was is None:
            parts.append(f"{source.location} {name}: {source.entries} entries")
        else:
            parts.append(f"{source.location} {name}: {was.entries} -> {source.entries} entries")
    return "; ".join(parts)


def _names_banned(restriction: Any) -> bool:
    """Whether some rule of a configured list is ``banned``."""
    if not isinstance(restriction, (list, tuple)):
        return False
    for entry in restriction:
        for values in entry.values() if isinstance(entry, dict) else ():
            for value in [values] if isinstance(values, str) else values if isinstance(values, (list, tuple)) else ():
                if isinstance(value, str) and value.strip().lower() == "banned":
                    return True
    return False


def _make_guard(app: Flask) -> Callable[[str | None, dict[str, Any] | None], None]:
    """The guard, as the app's first URL value preprocessor: Flask calls those before every
    ``before_request`` function (an app's preprocessor looking a tenant up in its database
    must not run for a denied client, nor answer it first). A denial is raised (``abort``):
    a preprocessor's return value is not used."""
    app_ref = weakref.ref(app)

    def flask_allow_guard(endpoint: str | None, values: dict[str, Any] | None) -> None:
        state: AppState = app_ref().extensions[EXTENSION_KEY]  # type: ignore[union-attr]
        response = state.guard(request._get_current_object())  # type: ignore[attr-defined]
        if response is not None:
            abort(response)

    return flask_allow_guard


__all__ = ["FlaskAllow", "AppState", "ConfigError", "EXTENSION_KEY"]

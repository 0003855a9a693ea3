"""The ``banned`` rule type, and counting responses for the auto-ban policy (``flask_allow.bans``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask

from flask_allow import ConfigError, Decision, Matcher, MatcherContext, hookimpl
from flask_allow import config as keys
from flask_allow.bans import BanService, BanSettings, StoreError, store_from_string

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from flask_allow.client import Client
    from flask_allow.extension import AppState

#: Where an app's ban service is kept (``AppState.shared``: it outlives reloads).
SHARED_KEY = "flask_allow.bans"
_BUILDING = "flask_allow.bans.building"
WORD = "banned"


def service_for(context: MatcherContext) -> BanService:
    """The app's ban service for these settings: the running one, or a new one (store reached)."""
    errors: list[ConfigError] = []
    settings = BanSettings.from_config(context.config, errors)
    if errors:  # reported by the app's settings already; a rule cannot be built on them
        raise errors[0]
    for key in (SHARED_KEY, _BUILDING):
        found = context.shared.get(key)
        if found is not None and found.settings == settings:
            return found
    app = context.app
    store = store_from_string(settings.store, app.instance_path if app is not None else None)

    def report(kind: str, message: str) -> None:
        state = app.extensions.get("flask_allow") if app is not None else None
        if state is not None:
            state.report_error(kind, message, None)

    service = BanService(settings, store, context.logger, report=report)
    try:
        service.start()
    except StoreError as exc:
        if settings.store_required:
            service.close()
            raise ConfigError(
                f"the ban store cannot be reached: {exc} (set {keys.ALLOW_BAN_STORE_REQUIRED} = False "
                "to start without it)",
                keys.ALLOW_BAN_STORE,
                settings.store if settings.store is not None else store.uri,
            ) from exc
        service.sync()  # logs the outage once; the background task retries
        service.start_background()
    context.shared[_BUILDING] = service
    return service


class BannedMatcher(Matcher):
    """``banned``: a client while it, or a network holding it, is banned (never an exempt one)."""

    claims_before_prefixes = True

    @classmethod
    def claims(cls, value: str) -> bool:
        return value.strip().lower() == WORD

    @classmethod
    def type_name(cls) -> str:
        return WORD

    def __init__(self, value: str, context: MatcherContext) -> None:
        super().__init__(value, context)
        self.service = service_for(context)
        self._shared = context.shared
        self._listener = context.changed
        self.service.listen(self._listener)

    def matches(self, client: Client) -> bool:
        return self.service.snapshot.banned_key(client.key)

    def text_lookup(self) -> Callable[[str], bool]:
        return self.service.banned

    def detail(self, client: Client) -> str | None:
        ban = self.service.ban_of(client.key)
        return None if ban is None else ban.describe()

    def explain(self, client: Client) -> str:
        detail = self.detail(client)
        return f"matches ({detail})" if detail else "does not match (not banned)"

    def describe(self) -> str:
        return f"the banned clients ({self.service.snapshot.size} bans in force, store {self.service.store.uri})"

    def close(self) -> None:
        """Stop listening; and close a service started for rules that never came into force (a
        reload that failed after this rule was built: the running service stays)."""
        listeners = self.service._listeners
        if self._listener in listeners:
            listeners.remove(self._listener)
        shared = self._shared
        if shared.get(_BUILDING) is self.service and shared.get(SHARED_KEY) is not self.service:
            del shared[_BUILDING]
            self.service.close()


def banned_matchers(state: AppState) -> list[BannedMatcher]:
    """The ``banned`` rules of a state: global and per-route."""
    engines = [state.engine, *state.routes.engines.values()]
    return [r.matcher for e in engines for r in e.rules if isinstance(r.matcher, BannedMatcher)]


@hookimpl(trylast=True)
def flask_allow_matchers() -> list[type[Matcher]]:
    return [BannedMatcher]


@hookimpl(trylast=True)
def flask_allow_rules_changed(app: Flask, state: AppState, previous: AppState | None, reason: str) -> None:
    """Keep the service the new rules use (closing one no rule uses any more); tell it the proxies."""
    shared = state.shared
    building = shared.pop(_BUILDING, None)
    current = next((m.service for m in banned_matchers(state)), None)
    for unused in {id(s): s for s in (shared.get(SHARED_KEY), building) if s is not None}.values():
        if unused is not current:
            unused.close()
    if current is None:
        shared.pop(SHARED_KEY, None)
        return
    shared[SHARED_KEY] = current
    spans = []
    for rule in state.proxies.rules:
        spans += rule.matcher.spans() or []
    current.set_proxies(spans)


@hookimpl(trylast=True)
def flask_allow_response(decision: Decision, response: Response, app: Flask) -> None:
    """Count a response with an ``ALLOW_AUTOBAN`` status against the client (the one the
    trusted proxies resolve), unless flask_allow denied the request itself.

    ``AppState`` calls the service's ``count_response`` directly (this, minus finding it)."""
    state: Any = app.extensions.get("flask_allow")
    service = state.shared.get(SHARED_KEY) if state is not None else None
    if service is not None:
        service.count_response(decision, response)

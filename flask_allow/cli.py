"""The ``flask allow`` command group: check addresses, show the rules and plugins, test a config file.

``init_app`` adds the group to ``app.cli``. ``check`` simulates requests through the app's test
request context and never calls the ``flask_allow_decision`` hooks, so it writes nothing to the
access log. ``test-config`` also runs without an app: ``python -m flask_allow.cli test-config FILE``.
"""

from __future__ import annotations

import difflib
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, ScriptInfo

from . import clookup
from . import config as keys
from .addresses import looks_like_address, parse_client, parse_span
from .errors import ConfigError
from .routes import GLOBAL

if TYPE_CHECKING:
    from .decision import Decision, Rule
    from .engine import Engine
    from .extension import AppState

#: Exit statuses of ``flask allow check`` and ``test-config``.
EXIT_OK, EXIT_DENIED, EXIT_USAGE = 0, 1, 2

cli = AppGroup("allow", help="Check addresses against flask_allow's rules and inspect its configuration.")


def register(app: Flask) -> None:
    """Add the ``allow`` group to ``app.cli`` (once; an app command of that name is left alone)."""
    if cli.name not in app.cli.commands:
        app.cli.add_command(cli)


def config_error_of(error: BaseException | None) -> ConfigError | None:
    """The ``ConfigError`` an exception is or was raised from (an app factory may wrap it)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ConfigError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def print_config_error(error: ConfigError) -> None:
    """Print every error of a ``ConfigError``, one a line, with its location (no traceback)."""
    for single in error.errors:
        click.echo(f"Error: {single}", err=True)
    count = len(error.errors)
    click.echo(f"flask_allow: {count} configuration error{'s' if count != 1 else ''}; the app did not start", err=True)


def _app() -> Flask:
    """The app, loaded here when the command came from the ``flask.commands`` entry point, so that a
    ``ConfigError`` raised while loading it is printed as its message and exits 2."""
    if current_app:
        return current_app._get_current_object()  # type: ignore[attr-defined]
    ctx = click.get_current_context()
    try:
        app = ctx.ensure_object(ScriptInfo).load_app()
    except Exception as exc:
        error = config_error_of(exc)
        if error is None:
            raise
        print_config_error(error)
        raise SystemExit(EXIT_USAGE) from None
    ctx.with_resource(app.app_context())
    return app


def _state() -> AppState:
    state = _app().extensions.get("flask_allow")
    if state is None:
        click.echo("Error: flask_allow is not initialised on this app", err=True)
        raise SystemExit(EXIT_USAGE)
    return state


# -------------------------------------------------------------------------
# flask allow check
# -------------------------------------------------------------------------


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name.strip()):
        raise click.BadParameter(f"{text!r} is not 'Name: value'", param_hint="'--header'")
    return name.strip(), value.strip()


def _rule_json(rule: Rule) -> dict[str, Any]:
    return {
        "location": rule.location,
        "action": rule.action,
        "type": rule.type,
        "value": rule.spec,
        "static": rule.static,
    }


def _how(state: AppState, decision: Decision, peer: str) -> str:
    client = decision.client
    if client.via:
        return "; ".join(client.via)
    if client.address != peer:
        return "as a flask_allow_client_address plugin answered"
    proxies = getattr(state, "proxies", None)
    if proxies is not None and proxies.active:
        return "the socket peer (not a trusted proxy, no proxy header)"
    return f"the socket peer ({keys.ALLOW_TRUSTED_PROXIES} is empty)"


def _decided_by(decision: Decision) -> str:
    if decision.exempt:
        return f"exempt ({decision.scope})"
    if decision.rule is not None:
        return decision.rule.describe()
    if decision.error is not None:
        return "error"
    return "default" if decision.scope is None else f"default of {decision.scope}"


def simulate(
    state: AppState, address: str, path: str = "/", method: str = "GET", headers: Iterable[tuple[str, str]] = ()
) -> dict[str, Any]:
    """Decide for a request from socket peer ``address`` to ``path`` as the guard would, without logging it."""
    app = state.app
    with app.test_request_context(
        path, method=method, headers=list(headers), environ_base={"REMOTE_ADDR": address}
    ) as ctx:
        req = ctx.request
        decision = state.decide(req)
        endpoint = req.endpoint
        chain = state.routes.chain(endpoint)
        trace: list[dict[str, Any]] = []
        if decision.error is None or decision.rule is not None:  # an unknown client is tried by no rule
            for scope, engine in chain.engines:  # as RouteTable.decide: up to the first list that denies
                trace.extend(_trace(scope, engine, decision))
                if not engine.decide(decision.client).allowed:
                    break
    client = decision.client
    return {
        "address": address,
        "method": method,
        "path": path,
        "endpoint": endpoint,
        "client": str(client.ip) if client.ip is not None else client.address,
        "client_address": client.address,
        "via": list(client.via),
        "how": _how(state, decision, address),
        "allowed": decision.allowed,
        "action": decision.action,
        "enforced": decision.enforced,
        "exempt": decision.exempt,
        "scope": decision.scope,
        "decided_by": _decided_by(decision),
        "rule": _rule_json(decision.rule) if decision.rule is not None else None,
        "reason": decision.reason,
        "error": decision.error,
        "rule_lists": [scope for scope, _ in chain.engines],
        "trace": trace,
    }


def _trace(scope: str, engine: Engine, decision: Decision) -> list[dict[str, Any]]:
    steps = []
    try:
        explained = engine.explain(decision.client)
    except Exception as exc:  # a trace is for reading; it must not hide the decision
        return [{"scope": scope, "location": None, "outcome": "error", "why": f"{type(exc).__name__}: {exc}"}]
    for rule, outcome, why in explained:
        steps.append({"scope": scope, **_rule_json(rule), "outcome": outcome, "why": why})
    if not explained or explained[-1][1] == "no match":
        default = "allow" if engine.default_allow else "deny"
        if decision.client.key is not None:
            steps.append({"scope": scope, "location": None, "outcome": "default", "why": f"no rule matched: {default}"})
    return steps


def _print_result(result: dict[str, Any]) -> None:
    verdict = "allowed" if result["allowed"] else "denied"
    if not result["enforced"] and not result["allowed"]:
        verdict += " (report-only: the request would be let through)"
    click.echo(f"{result['address']} {result['method']} {result['path']}: {verdict}")
    sent = result["client_address"]
    normalised = f"{sent} normalised; " if sent and sent != result["client"] else ""
    click.echo(f"  client:     {result['client'] or '-'} ({normalised}{result['how']})")
    endpoint = result["endpoint"]
    lists = ", then ".join(result["rule_lists"]) or "none (exempt)"
    click.echo(f"  route:      {'no route matches' if endpoint is None else repr(endpoint)}; rules: {lists}")
    click.echo(f"  decided by: {result['decided_by']}")
    click.echo(f"  reason:     {result['reason']}")
    if result["trace"]:
        click.echo("  trace:")
    for step in result["trace"]:
        if step.get("location") is None:
            click.echo(f"    {step['outcome']:<8} {step['scope']}: {step['why']}")
        else:
            kind = "static" if step["static"] else "dynamic"
            click.echo(
                f"    {step['outcome']:<8} {step['location']} {step['value']!r} ({step['type']}, {kind}): {step['why']}"
            )


def _check_address(address: str) -> None:
    """Refuse, as a usage error, an ADDRESS that is not one IP address (it would only be denied)."""
    if not address or address.startswith("unix:") or parse_client(address) is not None:  # "": a unix-socket peer
        return
    if looks_like_address(address):
        try:
            parse_span(address)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="ADDRESS") from None
        raise click.BadParameter(f"{address!r} is a network or range; give one address", param_hint="ADDRESS")
    raise click.BadParameter(
        f"{address!r} is not an IP address: check takes the socket peer's address (host names are not looked up)",
        param_hint="ADDRESS",
    )


@cli.command("check", with_appcontext=False)
@click.argument("addresses", nargs=-1, required=True)
@click.option("--path", default="/", show_default=True, help="The path (or full URL) of the simulated request.")
@click.option("--method", default="GET", show_default=True, help="The HTTP method of the simulated request.")
@click.option("--header", "headers", multiple=True, metavar='"NAME: VALUE"', help="A request header (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per address, one per line.")
def check_command(addresses: tuple[str, ...], path: str, method: str, headers: tuple[str, ...], as_json: bool) -> None:
    """Decide for requests from each ADDRESS (the socket peer) as the guard would.

    Proxy headers and per-route rules apply as for a real request; nothing is written to the
    access log. Exit status: 0 when all are allowed, 1 when any is denied, 2 on a usage error.
    """
    parsed = [_parse_header(h) for h in headers]
    if not (path.startswith("/") or re.match(r"https?://", path)):
        raise click.BadParameter(f"{path!r} must start with '/' (or be an http(s) URL)", param_hint="'--path'")
    for address in addresses:
        _check_address(address)
    state = _state()
    denied = False
    for address in addresses:
        result = simulate(state, address, path, method.upper(), parsed)
        denied = denied or not result["allowed"]
        if as_json:
            click.echo(json.dumps(result, sort_keys=True))
        else:
            _print_result(result)
    raise SystemExit(EXIT_DENIED if denied else EXIT_OK)


# -------------------------------------------------------------------------
# flask allow rules
# -------------------------------------------------------------------------


def _table(rows: list[list[str]], indent: str = "  ") -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _rule_rows(rules: list[Rule]) -> list[list[str]]:
    rows = [["#", "location", "action", "type", "value", "compiled", "holds"]]
    for rule in rules:
        try:
            holds = rule.matcher.describe()
        except Exception as exc:  # describing is for reading; never fail the listing
            holds = f"({type(exc).__name__}: {exc})"
        rows.append([str(rule.index), rule.location, rule.action, rule.type, repr(rule.spec), _kind(rule), holds])
    return rows


def _kind(rule: Rule) -> str:
    return "static" if rule.static else "dynamic"


@cli.command("rules", with_appcontext=False)
def rules_command() -> None:
    """Show the compiled rules in evaluation order, the default, trusted proxies, route rules and lints."""
    state = _state()
    engine = state.engine
    lints = state.lints()
    click.echo(f"{keys.ADDRESS_RESTRICTION} (first match wins):")
    if engine.rules:
        _table(_rule_rows(engine.rules))
    else:
        click.echo("  (no rules)")
    default = "allow" if engine.default_allow else "deny"
    click.echo(f"Default ({keys.ALLOW_DEFAULT}): {default}")
    if engine.rules and engine.static:
        where = "C" if engine.searched_in == "C" else f"Python ({clookup.why_python()})"
        click.echo(f"Search: every rule is static, one index searched in {where}")
    elif engine.rules:
        cached = f"cached ({keys.ALLOW_CACHE_SIZE} {engine.cache_size})" if engine.cache_size else "not cached"
        where = "C" if clookup.available() else f"Python ({clookup.why_python()})"
        click.echo(f"Search: static runs searched in {where} between dynamic rules; decisions {cached}")
    if state.settings.report_only:
        click.echo(f"{keys.ALLOW_REPORT_ONLY}: denials are logged, never enforced")
    proxies = getattr(state, "proxies", None)
    if proxies is not None:
        if proxies.active:
            click.echo(f"Trusted proxies ({keys.ALLOW_TRUSTED_PROXIES}), header {proxies.header} ({proxies.kind}):")
            rows = [["location", "value", "type", "holds"]]
            rows += [[r.location, repr(r.spec), r.type, r.matcher.describe()] for r in proxies.rules]
            if proxies.trust_unix:
                rows.append([keys.ALLOW_TRUSTED_PROXIES, "'unix:'", "unix", "peers without an IP address"])
            _table(rows)
        else:
            click.echo(f"Trusted proxies ({keys.ALLOW_TRUSTED_PROXIES}): none; the socket peer is the client")
    routes = state.routes
    marks = routes.marks
    if marks.count:
        click.echo("Route rules (after the global rules allowed):")
        for label in routes.exempt_labels():
            click.echo(f"  {label}: exempt (the global rules are skipped)")
        for route_engine in routes.engines.values():
            default = "allow" if route_engine.default_allow else "deny"
            click.echo(f"  {route_engine.scope}: default {default}")
            if route_engine.rules:
                _table(_rule_rows(route_engine.rules), indent="    ")
        endpoints = []
        for endpoint in sorted(state.app.view_functions):
            chain = routes.chain(endpoint)
            scopes = [scope for scope, _ in chain.engines]
            if chain.exempt or scopes != [GLOBAL]:
                exempt = [f"exempt ({chain.exempt})"] if chain.exempt else []
                endpoints.append([endpoint, ", then ".join(exempt + scopes)])
        if endpoints:
            click.echo("Endpoints with route rules:")
            _table([["endpoint", "rule lists"], *endpoints])
    _print_sources(state)
    click.echo("Start-up lints:" if lints else "Start-up lints: none")
    for lint in lints:
        click.echo(f"  - {lint}")


def _print_sources(state: AppState) -> None:
    """The list files and feeds the rules were built from: entries, changes, refresh, refusals."""
    from .live.report import source_lines

    found = source_lines(state)
    if found:
        click.echo("List files and feeds:")
    for line in found:
        click.echo(f"  {line}")


# -------------------------------------------------------------------------
# flask allow feeds
# -------------------------------------------------------------------------


@cli.command("feeds")
@click.option("--refresh", is_flag=True, help="Fetch every feed now (a shrink is applied); exit 1 if any failed.")
def feeds_command(refresh: bool) -> None:
    """Show each url: feed's cached copy, validators and next refresh; --refresh fetches them now."""
    from .live.report import feed_lines, feed_service

    state = _state()
    service = feed_service(state)
    feeds = list(service.feeds.values()) if service is not None else []
    if service is None or not feeds:
        click.echo("No url: feeds.")
        return
    failed = False
    for feed in feeds:
        click.echo(feed.url)
        if refresh:
            outcome = service.refresh(feed, force=True, explicit=True, wait=service.settings.timeout * 2 + 5)
            failed = failed or outcome.result in ("failed", "busy")
            click.echo(f"  refresh: {outcome.result}" + (f" ({outcome.error})" if outcome.error else ""))
        for line in feed_lines(feed, service):
            click.echo(f"  {line}")
    if failed:
        raise SystemExit(1)


# -------------------------------------------------------------------------
# flask allow plugins
# -------------------------------------------------------------------------


@cli.command("plugins", with_appcontext=False)
def plugins_command() -> None:
    """Show every plugin, where it came from, its hooks and the rule types it provides."""
    state = _state()
    pm = state.pm
    origins: dict[str, str] = getattr(pm, "flask_allow_origins", {})
    registry = state.registry
    provided: dict[str, list[str]] = {}
    for cls, owner in registry.early + registry.late + list(registry.by_prefix.values()):
        text = f"{cls.prefix}:" if cls.prefix else f"{cls.type_name()} (claims values without a prefix)"
        if text not in provided.setdefault(owner, []):
            provided[owner].append(text)
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            click.echo(f"{name}  blocked ({keys.ALLOW_DISABLE_PLUGINS})")
            continue
        click.echo(f"{name}  {origins.get(name, 'registered directly')}")
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
        click.echo(f"    hooks: {', '.join(hooks) or 'none'}")
        types = provided.get(name, [])
        if types:
            click.echo(f"    rule types: {', '.join(types)}")


# -------------------------------------------------------------------------
# flask allow test-config
# -------------------------------------------------------------------------

_TEST_LOGGER = "flask_allow.test_config"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message.removeprefix("flask_allow: "))


def load_config_file(path: str) -> Any:
    """Read a JSON, TOML or YAML file; raise ``ValueError`` saying where it does not parse."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".json":
        with open(path, encoding="utf-8") as handle:
            try:
                return json.load(handle)
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if suffix == ".toml":
        name = "tomllib" if sys.version_info >= (3, 11) else "tomli"
        try:
            toml: Any = importlib.import_module(name)
        except ImportError:
            raise click.UsageError("reading TOML on Python 3.10 needs tomli: pip install tomli") from None
        with open(path, "rb") as handle:
            try:
                return toml.load(handle)
            except toml.TOMLDecodeError as exc:
                raise ValueError(str(exc)) from None
    if suffix in (".yaml", ".yml"):
        try:
            yaml: Any = importlib.import_module("yaml")
        except ImportError:
            raise click.UsageError("reading YAML needs PyYAML: pip install pyyaml") from None
        with open(path, encoding="utf-8") as handle:
            try:
                return yaml.safe_load(handle)
            except yaml.YAMLError as exc:
                raise ValueError(str(exc).replace("\n", " ")) from None
    raise click.UsageError(f"{path!r}: unknown file type {suffix or '(none)'}; use .json, .toml, .yaml or .yml")


def _top_key(location: str | None) -> str | None:
    match = re.match(r"[A-Z][A-Z0-9_]*", location or "")
    return match.group() if match else None


def validate_config(data: Any, root_path: str, plugins: Iterable[object] = ()) -> tuple[list[ConfigError], list[str]]:
    """Check config keys as ``init_app`` would, on a throwaway app; return every error and warning.

    ``init_app`` stops at the first key that fails, so each failing key is reported, set back
    to its default, and the app built again until it builds. ``ACCESS_LOG`` is validated but its
    file is not opened.
    """
    from .accesslog import AccessLog
    from .extension import FlaskAllow

    if not isinstance(data, dict):
        return [ConfigError(f"the file must hold a table of config keys, not {type(data).__name__}")], []
    errors: list[ConfigError] = []
    config = {}
    known = set(keys.DEFAULTS)
    for key, value in data.items():
        if key in known:
            config[key] = value
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.8)
        if close or str(key).startswith("ALLOW_"):
            hint = f"; did you mean {close[0]}?" if close else ""
            errors.append(ConfigError(f"unknown flask_allow key{hint}", str(key), value))
    if keys.ACCESS_LOG in config:
        value = config.pop(keys.ACCESS_LOG)
        if value is not None:
            try:
                AccessLog.options(value)
            except ConfigError as exc:
                errors.append(exc)
    collect = _Collect()
    logger = logging.getLogger(_TEST_LOGGER)
    plugins = list(plugins)
    for _ in range(len(keys.DEFAULTS) + 1):
        collect.messages.clear()
        logger.addHandler(collect)
        try:
            app = Flask(_TEST_LOGGER, root_path=root_path)
            app.config.update(config)
            _ = app.logger  # created while our handler is there: Flask adds no stderr handler
            try:
                FlaskAllow(plugins=plugins).init_app(app)
            except ConfigError as exc:
                found = list(getattr(exc, "errors", None) or [exc])
                errors.extend(found)
                bad = {_top_key(error.location) for error in found}
                if not bad or not bad <= set(config):
                    break  # cannot be pinned on one key: nothing left to isolate
                for key in bad:
                    config.pop(key)
                continue
            state = app.extensions["flask_allow"]
            state.close()
            break
        finally:
            logger.removeHandler(collect)
    return errors, list(collect.messages)


def run_test_config(path: str, root_path: str | None, plugins: Iterable[object] = (), strict: bool = False) -> int:
    """Print every error and warning of a config file; return the exit status.

    ``strict`` turns the start-up lints into errors, as ``ALLOW_LINTS_FATAL = True`` does.
    """
    try:
        data = load_config_file(path)
    except (OSError, ValueError) as exc:
        click.echo(f"{path}: error: cannot read: {exc}")
        return EXIT_DENIED
    if strict and isinstance(data, dict):
        data = {**data, keys.ALLOW_LINTS_FATAL: True}
    root = root_path or os.path.dirname(os.path.abspath(path))
    errors, warnings = validate_config(data, root, plugins)
    said = [str(error) for error in errors]
    warnings = [w for w in warnings if not any(w in error for error in said)]  # a lint made an error
    for warning in warnings:
        click.echo(f"{path}: warning: {warning}")
    for error in errors:
        click.echo(f"{path}: error: {error}")
    if errors:
        click.echo(f"{path}: {len(errors)} error{'s' if len(errors) != 1 else ''}")
        return EXIT_DENIED
    click.echo(f"{path}: OK")
    return EXIT_OK


_FILE = click.Path(exists=True, dir_okay=False)
_ROOT = click.Path(exists=True, file_okay=False)
_ROOT_HELP = "Where relative file: paths are taken from (default: the app's root path, or the file's directory)."


_STRICT_HELP = f"Report the start-up lints as errors (as {keys.ALLOW_LINTS_FATAL} = True does)."


@cli.command("test-config", with_appcontext=False)
@click.argument("file", type=_FILE)
@click.option("--root-path", type=_ROOT, default=None, help=_ROOT_HELP)
@click.option("--strict", is_flag=True, help=_STRICT_HELP)
def test_config_command(file: str, root_path: str | None, strict: bool) -> None:
    """Check a JSON, TOML or YAML file of config keys, reporting every error with its location.

    The keys are applied to a throwaway app with this app's constructor plugins, so the check
    takes the same path as init_app. Exit status: 0 when clean, 1 on any error, 2 on a usage error
    (or when the app itself does not start).
    """
    app = _app()
    state = app.extensions.get("flask_allow")
    plugins = state.extension.plugins if state is not None else ()
    raise SystemExit(run_test_config(file, root_path or app.root_path, plugins, strict))


from .bans.cli import add_commands as _add_ban_commands  # noqa: E402

_add_ban_commands(cli)


@click.group("flask_allow")
def main() -> None:
    """flask_allow without an app: python -m flask_allow.cli test-config FILE."""


@main.command("test-config")
@click.argument("file", type=_FILE)
@click.option("--root-path", type=_ROOT, default=None, help=_ROOT_HELP)
@click.option("--strict", is_flag=True, help=_STRICT_HELP)
def _standalone_test_config(file: str, root_path: str | None, strict: bool) -> None:
    """Check a JSON, TOML or YAML file of config keys, reporting every error with its location."""
    raise SystemExit(run_test_config(file, root_path, strict=strict))


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess
    main()

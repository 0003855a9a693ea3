"""Building one app's plugin manager: built-ins, entry points, ``ALLOW_PLUGINS``, constructor."""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import pluggy

from . import config as keys
from . import hookspecs
from .errors import ConfigError

PROJECT = "flask_allow"

#: Built-in behaviour, registered like any plugin (and blockable by name like any plugin).
DEFAULT_PLUGINS: tuple[str, ...] = (
    "flask_allow.builtins.networks",
    "flask_allow.builtins.keywords",
    "flask_allow.builtins.listfile",
    "flask_allow.feeds.matcher",
    "flask_allow.builtins.hostnames",
    "flask_allow.builtins.reverse",
    "flask_allow.builtins.proxies",
    "flask_allow.accesslog.plugin",
    "flask_allow.builtins.bans",
)


def plugin_name(plugin: object) -> str:
    """The name a plugin object is registered under: a module's import name, else a class name."""
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    return f"{type(plugin).__module__}.{type(plugin).__qualname__}@{id(plugin):x}"


def make_plugin_manager(config: Any, extra: Iterable[object] = ()) -> pluggy.PluginManager:
    """Build a fresh plugin manager for one app.

    ``pm.flask_allow_origins`` maps each plugin name to where it came from, for
    ``flask allow plugins``. Raises ``ConfigError`` for a plugin that does not load.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    origins: dict[str, str] = {}
    for name in _names(config.get(keys.ALLOW_DISABLE_PLUGINS, ()), keys.ALLOW_DISABLE_PLUGINS):
        pm.set_blocked(name)
    for module_name in DEFAULT_PLUGINS:
        _register(pm, importlib.import_module(module_name), module_name, "built-in", origins)
    if config.get(keys.ALLOW_LOAD_ENTRY_POINTS, True):
        importlib.invalidate_caches()  # see distributions installed since start-up
        try:
            pm.load_setuptools_entrypoints(PROJECT)
        except Exception as exc:
            raise ConfigError(
                f"a plugin of the {PROJECT!r} entry-point group failed to load: {type(exc).__name__}: {exc}",
                keys.ALLOW_LOAD_ENTRY_POINTS,
            ) from exc
        for plugin, dist in pm.list_plugin_distinfo():
            registered = pm.get_name(plugin)
            if registered is not None:
                origins[registered] = f"entry point ({dist.project_name} {dist.version})"
    for module_name in _names(config.get(keys.ALLOW_PLUGINS, ()), keys.ALLOW_PLUGINS):
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise ConfigError(
                f"plugin module {module_name!r} does not import: {type(exc).__name__}: {exc}",
                keys.ALLOW_PLUGINS,
                module_name,
            ) from exc
        _register(pm, module, module_name, keys.ALLOW_PLUGINS, origins)
    for plugin in extra:
        _register(pm, plugin, plugin_name(plugin), "constructor (plugins=)", origins)
    pm.flask_allow_origins = origins  # type: ignore[attr-defined]
    return pm


def _register(pm: pluggy.PluginManager, plugin: object, name: str, origin: str, origins: dict[str, str]) -> None:
    if pm.is_blocked(name) or pm.is_registered(plugin):
        return
    try:
        pm.register(plugin, name=name)
    except ValueError as exc:  # a name registered twice, or a plugin object registered twice
        raise ConfigError(f"plugin {name!r} ({origin}) cannot be registered: {exc}", origin) from exc
    except pluggy.PluginValidationError as exc:
        raise ConfigError(f"plugin {name!r} ({origin}) is invalid: {exc}", origin) from exc
    origins[name] = origin


def _names(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError("must be a list of module names", key, value)

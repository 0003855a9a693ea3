"""A Sphinx extension: the configuration reference, generated from ``flask_allow/config.py``.

``.. configkeys:: DEFAULTS`` (inside ```` ```{eval-rst} ```` on a MyST page) renders every key of
that dict once, as a ``confval`` entry with its type, its default and its doc. The doc is the
``#:`` comment above the key's constant (or, for a dict with literal keys such as
``ACCESS_LOG_DEFAULTS``, above the entry), the form ``sphinx.ext.autodoc`` reads. A ``Type: ...``
line in that comment names the type; without one it is the default's type, and a default of None
must have one. A key without a doc or a type is a warning, so ``sphinx-build -W`` fails.

Nothing lists keys by hand: a key added to ``DEFAULTS`` appears on the page with the next build.
``read_keys`` and ``problems`` are what the directive uses; the tests use them too.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

MODULE = "flask_allow.config"
_TYPE_LINE = "Type:"
_INFERRED = {bool: "bool", int: "int", float: "float", str: "str", tuple: "list", list: "list", dict: "dict"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Key:
    """One configuration key as the page shows it."""

    name: str
    default: Any
    type: str | None
    doc: str
    #: The line of ``config.py`` the key's doc belongs to (for warnings).
    line: int


def _comment_above(lines: list[str], lineno: int) -> list[str]:
    """The ``#:`` comment lines directly above line ``lineno`` (1-based), or on it after the code."""
    found: list[str] = []
    index = lineno - 2
    while index >= 0 and lines[index].strip().startswith("#:"):
        found.append(lines[index].strip()[2:].removeprefix(" "))
        index -= 1
    found.reverse()
    code, sep, trailing = lines[lineno - 1].partition("#:")
    if not found and sep and code.strip():
        found.append(trailing.strip())
    return found


def _split_type(comment: list[str]) -> tuple[str, str | None]:
    """The doc and the ``Type:`` line's type (None when the comment has none)."""
    doc: list[str] = []
    declared = None
    for line in comment:
        if line.startswith(_TYPE_LINE):
            declared = line[len(_TYPE_LINE) :].strip() or None
        else:
            doc.append(line)
    return "\n".join(doc).strip(), declared


def read_keys(mapping: str = "DEFAULTS", module_name: str = MODULE) -> list[Key]:
    """Every key of ``module.mapping`` in source order, with the doc of its constant or entry."""
    module = importlib.import_module(module_name)
    defaults: dict[str, Any] = getattr(module, mapping)
    source = inspect.getsource(module)
    lines = source.splitlines()
    tree = ast.parse(source)
    constants: dict[str, tuple[list[str], int]] = {}  # a constant's value -> its comment, its line
    entries: dict[str, tuple[list[str], int]] = {}  # a literal key of the dict -> its comment, its line
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                constants[node.value.value] = (_comment_above(lines, node.lineno), node.lineno)
            if mapping in names and isinstance(node.value, ast.Dict):
                for key in node.value.keys:
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        entries[key.value] = (_comment_above(lines, key.lineno), key.lineno)
    keys = []
    for name, default in defaults.items():
        comment, line = entries.get(name) or constants.get(name) or ([], 0)
        doc, declared = _split_type(comment)
        inferred = None if default is None else _INFERRED.get(type(default))
        keys.append(Key(name, default, declared or inferred, doc, line))
    return keys


def problems(keys: list[Key], mapping: str = "DEFAULTS") -> list[str]:
    """What is missing for each key to be documented: its ``#:`` doc, its type."""
    found = []
    for key in keys:
        if not key.doc:
            found.append(f"{mapping} key {key.name} has no '#:' doc comment in {MODULE}")
        if key.type is None:
            found.append(
                f"{mapping} key {key.name}: the type cannot be told from its default {key.default!r}; "
                f"add a '#: {_TYPE_LINE} ...' line to its doc comment in {MODULE}"
            )
    return found


def shown_default(value: Any) -> str:
    """The default as a user writes it in the app's config (tuples as lists)."""
    if isinstance(value, tuple):
        value = list(value)
    return repr(value)


class ConfigKeys(SphinxDirective):
    """``.. configkeys:: DEFAULTS``: a ``confval`` entry for every key of a dict of ``config.py``."""

    required_arguments = 1
    option_spec = {"prefix": directives.unchanged, "module": directives.unchanged}  # noqa: RUF012

    def run(self) -> list[nodes.Node]:
        mapping = self.arguments[0]
        module_name = self.options.get("module", MODULE)
        prefix = self.options.get("prefix", "")
        keys = read_keys(mapping, module_name)
        for problem in problems(keys, mapping):
            log.warning(problem, location=self.get_location())
        self.env.note_dependency(inspect.getsourcefile(importlib.import_module(module_name)) or "")
        text: list[str] = []
        for key in keys:
            text += [f".. confval:: {prefix}{key.name}", ""]
            text += [f"   :Type: {key.type or '(undocumented)'}", f"   :Default: ``{shown_default(key.default)}``", ""]
            text += [f"   {line}" if line else "" for line in key.doc.splitlines()]
            text.append("")
        container = nodes.container(classes=["configkeys"])
        self.state.nested_parse(StringList(text, source=f"{module_name}.{mapping}"), self.content_offset, container)
        return [container]


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the ``confval`` object type (``:confval:`KEY``` links to it) and the directive."""
    app.add_object_type("confval", "confval", objname="configuration key", indextemplate="pair: %s; configuration key")
    app.add_directive("configkeys", ConfigKeys)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

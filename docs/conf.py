"""Sphinx configuration of the flask_allow documentation (Markdown pages read by MyST).

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html``. Nothing is fetched at
build time (no intersphinx): names of other projects are left unlinked, every name of
flask_allow must resolve (``nitpicky``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))  # the checkout, when flask_allow is not installed

import flask_allow  # noqa: E402

project = "flask_allow"
author = "flask_allow contributors"
copyright = "flask_allow contributors, GPL-2.0-only"
release = flask_allow.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx_click",
    "configkeys",  # docs/_ext/configkeys.py: the configuration reference from flask_allow/config.py
    "repofiles",  # docs/_ext/repofiles.py: links to files of the repository outside docs/
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
smartquotes = False  # prose quotes values such as 'allow': keep them as typed
templates_path: list[str] = []

# -- MyST -----------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 4  # hooks.md#flask_allow_client_address and the like resolve
myst_all_links_external = False  # every relative link must name a page or heading that exists

# -- cross references -------------------------------------------------------------
nitpicky = True
# No intersphinx (no network at build time): other projects' names stay plain text. Only those
# are ignored; a flask_allow name that does not resolve is a warning, and the build fails.
_OTHERS = (
    r"flask\..*|werkzeug\..*|pluggy\..*|click\..*|ipaddress\..*|logging\..*|collections\.abc\..*|typing\..*"
    r"|contextlib\..*|weakref\..*|datetime\..*|Flask|Request|Response|Iterable|Iterator|Callable|Mapping|Sequence|Any"
    r"|ClassVar|ValueError|Exception|RuntimeError|TypeError|NotImplementedError|object|str|int|bool|float"
    r"|bytes|list|dict|tuple|set|type|None|NoneType|ipaddress|logging|Config"
)
nitpick_ignore_regex = [
    (r"py:.*", _OTHERS),
    (r"py:class", r"flask_allow\.\w+(\.\w+)*\.(T|P|R|F|V)"),  # type variables of generic signatures
]

# -- autodoc ------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

# -- HTML -----------------------------------------------------------------------------
html_theme = "furo"
html_title = f"flask_allow {release}"
html_static_path: list[str] = []


def _type_alias(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve an annotation naming one of our ``py:type`` aliases (``Matcher.networks()``'s
    ``Network``): Sphinx 8.1 (the newest for Python 3.10) looks for it as a class only."""
    if node.get("refdomain") != "py" or node.get("reftype") != "class":
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(env, node["refdoc"], app.builder, "type", node["reftarget"], node, contnode)


def setup(app: Any) -> None:
    app.connect("missing-reference", _type_alias)

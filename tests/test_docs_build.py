"""The documentation site builds with warnings as errors, without the network, and links only to what exists.

``sphinx-build -W --keep-going -b html docs OUT`` runs once per session in a child process whose
sockets refuse to connect. Sphinx's own warnings already fail it for a page in no toctree, a
reference to a flask_allow name that does not resolve (``nitpicky``), a Markdown link to a page or
heading that does not exist, and a configuration key without a doc (docs/_ext/configkeys.py).
The tests here then read the built site: every local link and anchor resolves, and every
configuration key, hook, public name and CLI command has its entry, generated from the code.
"""

from __future__ import annotations

import html
import importlib
import inspect
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import click
import pytest
from conftest import REPO_ROOT, checkout_environ

import flask_allow
from flask_allow import config as keys
from flask_allow import hookspecs
from flask_allow.cli import cli

DOCS = REPO_ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
configkeys = importlib.import_module("configkeys")

#: Runs Sphinx with every socket refusing to connect: the build must not need the network.
_OFFLINE_SPHINX = """
import socket, sys
def refuse(self, address, *args):
    raise OSError(f"the docs build tried to reach {address!r}: it must not use the network")
socket.socket.connect = socket.socket.connect_ex = refuse
from sphinx.cmd.build import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built HTML site (the build failing is a test failure, with Sphinx's output)."""
    out = tmp_path_factory.mktemp("docs-html")
    try:
        import sphinx  # noqa: F401
    except ImportError:  # a failure, not a skip: the README's test command installs the docs extra
        pytest.fail("Sphinx is not installed: pip install -e '.[docs]'")
    result = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SPHINX, "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)],
        cwd=REPO_ROOT,
        env=checkout_environ(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stdout}\n{result.stderr}"
    return out


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("href", "src") and value and tag in ("a", "img", "link", "script"):
                self.hrefs.append(value)


def _parsed(path: Path, cache: dict[Path, _Links]) -> _Links:
    if path not in cache:
        parser = _Links()
        parser.feed(path.read_text(encoding="utf-8"))
        cache[path] = parser
    return cache[path]


def _inventory(site: Path) -> dict[str, dict[str, str]]:
    """``objects.inv`` as {object type: {name: page}}."""
    from sphinx.util.inventory import InventoryFile

    with (site / "objects.inv").open("rb") as handle:
        inventory = InventoryFile.load(handle, "", lambda base, uri: uri)
    data = getattr(inventory, "data", inventory)  # Sphinx 8.2+ wraps the dict
    return {
        kind: {name: str(getattr(item, "uri", None) or item[2]) for name, item in items.items()}
        for kind, items in data.items()
    }


def _text(page: Path) -> str:
    """The words of a built page's article, tags dropped, whitespace folded."""
    source = page.read_text(encoding="utf-8")
    article = source[source.index("<article") : source.index("</article>")]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", article)).split())


def test_every_page_is_built(site: Path) -> None:
    for page in DOCS.glob("*.md"):
        assert (site / f"{page.stem}.html").is_file(), f"{page.name} was not built (is it in a toctree?)"


def test_no_local_link_is_broken(site: Path) -> None:
    cache: dict[Path, _Links] = {}
    broken = []
    for page in sorted(site.rglob("*.html")):
        if "_static" in page.parts:
            continue
        for href in _parsed(page, cache).hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc:
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {href} (no such file)")
            elif (
                parts.fragment
                and target.suffix == ".html"
                and unquote(parts.fragment) not in _parsed(target, cache).ids
            ):
                broken.append(f"{page.relative_to(site)}: {href} (no such anchor)")
    assert not broken, "\n".join(broken)


def test_every_config_key_is_documented_once() -> None:
    for mapping in ("DEFAULTS", "ACCESS_LOG_DEFAULTS"):
        assert configkeys.problems(configkeys.read_keys(mapping), mapping) == []
    constants = {
        name
        for name, value in vars(keys).items()
        if name.isupper() and value == name  # a key constant: the key's name, e.g. ALLOW_DEFAULT
    }
    assert constants <= set(keys.DEFAULTS), f"keys without a default in DEFAULTS: {constants - set(keys.DEFAULTS)}"
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert text.count(".. configkeys:: DEFAULTS") == 1
    assert text.count(".. configkeys:: ACCESS_LOG_DEFAULTS") == 1


def test_config_keys_have_their_entry(site: Path) -> None:
    documented = _inventory(site)["std:confval"]
    wanted = set(keys.DEFAULTS) | {f"ACCESS_LOG.{k}" for k in keys.ACCESS_LOG_DEFAULTS}
    assert set(documented) == wanted
    assert {page.partition("#")[0] for page in documented.values()} == {"configuration.html"}
    page = (site / "configuration.html").read_text(encoding="utf-8")
    for mapping, prefix in (("DEFAULTS", ""), ("ACCESS_LOG_DEFAULTS", "ACCESS_LOG.")):
        for key in configkeys.read_keys(mapping):
            start = page.index(f'id="confval-{prefix}{key.name}"')
            end = page.find('id="confval-', start + 1)
            entry = _squash(html.unescape(re.sub(r"<[^>]+>", "", page[start : end if end > 0 else None])))
            assert _squash(f"Type:{key.type}") in entry, entry
            assert _squash(f"Default:{configkeys.shown_default(key.default)}") in entry, entry
            assert _squash(" ".join(key.doc.split()[:3])) in entry, entry


def _squash(text: str) -> str:
    """``text`` without whitespace and reST literal quotes, to compare with a page's text."""
    return re.sub(r"\s+", "", text.replace("``", ""))


def test_hooks_are_in_the_reference(site: Path) -> None:
    hooks = {name for name, f in vars(hookspecs).items() if callable(f) and hasattr(f, "flask_allow_spec")}
    documented = _inventory(site)["py:function"]
    for hook in hooks:
        assert documented.get(f"flask_allow.hookspecs.{hook}", "").startswith("hooks_reference.html"), hook


def test_public_names_are_in_the_api_reference(site: Path) -> None:
    inventory = _inventory(site)
    documented = {name: page for kind in inventory.values() for name, page in kind.items() if kind is not None}
    for name in flask_allow.__all__:
        assert f"flask_allow.{name}" in documented, name
        assert documented[f"flask_allow.{name}"].startswith("api.html"), name
    for method in ("check", "exempt", "restrict", "reload", "init_app", "state"):
        assert inventory["py:method"].get(f"flask_allow.FlaskAllow.{method}", "").startswith("api.html"), method
        assert inspect.getdoc(getattr(flask_allow.FlaskAllow, method)), method


def test_cli_reference_has_every_command(site: Path) -> None:
    text = _text(site / "cli_reference.html")
    for name, command in cli.commands.items():
        assert f"Usage flask allow {name} [ OPTIONS ]" in text, name
        for param in command.params:
            for option in param.opts:
                shown = param.metavar if isinstance(param, click.Argument) and param.metavar else option
                assert shown in text, f"{name} {shown}"

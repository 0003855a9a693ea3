"""Meta-tests that keep the plugin API honest: documented, in the docs, tested, examples that run."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT

from flask_allow import hookspecs
from flask_allow.plugins import make_plugin_manager

DOCS = REPO_ROOT / "docs" / "hooks.md"
HOOKS: dict[str, Any] = {
    name: function
    for name, function in vars(hookspecs).items()
    if callable(function) and hasattr(function, "flask_allow_spec")
}


def signature(function: Any) -> str:
    """``name(arg: Type, ...) -> Return`` as written in the hookspec module."""
    parameters = inspect.signature(function).parameters.values()
    arguments = ", ".join(f"{p.name}: {p.annotation}" for p in parameters)
    return f"{function.__name__}({arguments}) -> {function.__annotations__['return']}"


def test_hooks_are_the_plugin_manager_hooks() -> None:
    assert set(HOOKS) >= {
        "flask_allow_matchers",
        "flask_allow_client_address",
        "flask_allow_decision",
        "flask_allow_deny_response",
    }
    pm = make_plugin_manager({"ALLOW_LOAD_ENTRY_POINTS": False})
    assert {name for name in vars(pm.hook) if name.startswith("flask_allow_")} == set(HOOKS)
    assert all(name.startswith("flask_allow_") for name in HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_docstring(name: str) -> None:
    function = HOOKS[name]
    doc = inspect.getdoc(function)
    assert doc, f"{name} has no docstring"
    summary, *rest = doc.split("\n")
    assert not rest or rest[0] == "", f"{name}: the summary is one line, then a blank line"
    assert summary.endswith("."), f"{name}: {summary!r} is not a sentence"
    first = summary.split()[0]
    assert first[0].isupper(), f"{name}: {summary!r}"
    assert not (first.endswith("s") and not first.endswith("ss")), f"{name}: {first!r} is not imperative"
    assert first.lower() not in {"this", "the", "a", "an", "called", "hook"}, f"{name}: {first!r} is not a verb"
    for parameter in inspect.signature(function).parameters:
        assert f":param {parameter}:" in doc, f"{name}: :param {parameter}: is not documented"
    documented = set(re.findall(r":param (\w+):", doc))
    assert documented <= set(inspect.signature(function).parameters), f"{name}: documents a parameter it lacks"
    if function.__annotations__["return"] != "None":
        assert ":return:" in doc, f"{name}: the return value is not documented"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_firstresult_hooks_say_so(name: str) -> None:
    function = HOOKS[name]
    doc = inspect.getdoc(function) or ""
    firstresult = function.flask_allow_spec.get("firstresult", False)
    assert ("Stops at first non-None result" in doc) is firstresult


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_documented_in_docs(name: str) -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert re.search(rf"^#{{2,4}} `?{name}`?\s*$", text, re.MULTILINE), f"no heading for {name} in {DOCS}"
    assert signature(HOOKS[name]) in text, f"{DOCS} lacks the signature {signature(HOOKS[name])}"


def _test_files() -> list[Path]:
    found = list((REPO_ROOT / "tests").glob("test_*.py")) + list((REPO_ROOT / "plugins").glob("*/tests/test_*.py"))
    return [p for p in found if p.resolve() != Path(__file__).resolve()]


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_is_tested(name: str) -> None:
    users = [p.name for p in _test_files() if re.search(rf"\b{name}\b", p.read_text(encoding="utf-8"))]
    assert users, f"no test other than {Path(__file__).name} uses {name}"


def _examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOCS.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)


def test_docs_have_an_example_per_hook() -> None:
    examples = _examples()
    for name in HOOKS:
        assert any(re.search(rf"def {name}\(", code) for code in examples), f"no example implements {name}"


@pytest.mark.parametrize("index", range(len(_examples())))
def test_docs_examples_run(index: int) -> None:
    code = _examples()[index]
    exec(compile(code, f"{DOCS}:example {index + 1}", "exec"), {"__name__": "hooks_doc_example"})


def test_every_public_client_attribute_is_documented() -> None:
    from flask_allow import Client

    public = {name for name in dir(Client) if not name.startswith("_")} | set(Client.__annotations__)
    public = {name for name in public if not name.startswith("_")}
    section = DOCS.read_text(encoding="utf-8").split("### The Client", 1)[1].split("\n#", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE))
    assert public >= {"address", "ip", "key", "version", "request", "via"}
    assert public <= documented, f"undocumented Client attributes in {DOCS}: {sorted(public - documented)}"

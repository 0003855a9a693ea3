"""Every ```python example in docs/*.md and README.md runs, so the docs cannot show code that fails.

Each block runs as a program in a fresh temporary working directory (its files, such as
``access.log``, land there; ``Flask(__name__)`` takes it as the app's root path). Every Flask app
the block leaves guarded in its namespace then gets a request from a few clients through the
test client: none may get a 500. A block is marked by an HTML comment on the line before its
fence (CONTRIBUTING.md, "Examples in the docs"):

- no comment: a complete program, run alone;
- ``<!-- test: continue -->``: run after the page's previous example, in the namespace it left;
- ``<!-- test: module NAME -->``: the file ``NAME.py`` (a plugin module, say): written to the
  working directory and imported, so that the page's next examples (marked ``continue``) import it;
- ``<!-- test: dns NAME=ADDRESS[,ADDRESS] ... -->``: run with a real DNS server on 127.0.0.1
  answering those A/AAAA records and nothing else, the ``ALLOW_DNS_*`` defaults pointed at it;
- ``<!-- no-test: WHY -->``: not run (a fragment); the reason is required.

Functions named ``test_*`` that an example defines are then called, as pytest would (with a
fresh ``monkeypatch`` and ``tmp_path`` when they name them), so a page can show a plugin's tests.

A fence whose info string is ``python`` and more (```` ```python title ````) is refused: mark it.
"""

from __future__ import annotations

import importlib
import inspect
import ipaddress
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, close_app
from dns_server import DNSServer
from flask import Flask

from flask_allow import config as keys

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^`\n]*)$")
_MARK = re.compile(r"^\s*<!--\s*(?P<kind>test|no-test)\s*:\s*(?P<arg>.*?)\s*-->\s*$")
#: Clients every guarded app of an example is asked by (IPv4, IPv6, mapped, loopback).
_CLIENTS = ("127.0.0.1", "10.1.2.3", "192.0.2.1", "203.0.113.9", "2001:db8::1", "::ffff:10.0.0.1")


@dataclass
class Example:
    """One ```python block of a page."""

    path: Path
    line: int  # of the opening fence, 1-based
    code: str
    mark: str = ""  # "", "continue", "dns", "skip"
    argument: str = ""
    previous: Example | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"


def pages() -> list[Path]:
    """The pages whose examples run: the site's Markdown and the README."""
    return [*sorted((REPO_ROOT / "docs").glob("*.md")), REPO_ROOT / "README.md"]


def examples_of(path: Path) -> list[Example]:
    """The ```python blocks of ``path`` in order, with their marks; raise on a malformed one."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Example] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, info = fence["indent"], fence["info"].strip()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise AssertionError(f"{path}:{i + 1}: a code fence that is never closed")
        if info.split()[:1] == ["python"]:
            if info != "python":
                raise AssertionError(f"{path}:{i + 1}: ```{info}: write ```python and mark the block instead")
            body = [line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines[i + 1 : end]]
            example = Example(path, i + 1, "\n".join(body) + "\n")
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            mark = _MARK.match(before)
            if mark and mark["kind"] == "no-test":
                if not mark["arg"]:
                    raise AssertionError(f"{path}:{i + 1}: <!-- no-test: WHY --> needs its reason")
                example.mark, example.argument = "skip", mark["arg"]
            elif mark:
                word, _, rest = mark["arg"].partition(" ")
                if word not in ("continue", "dns", "module"):
                    raise AssertionError(f"{path}:{i + 1}: unknown mark <!-- test: {mark['arg']} -->")
                example.mark, example.argument = word, rest.strip()
                if word == "module" and not example.argument.isidentifier():
                    raise AssertionError(f"{path}:{i + 1}: <!-- test: module NAME --> needs a module name")
                if word == "continue":
                    if not found:
                        raise AssertionError(f"{path}:{i + 1}: <!-- test: continue --> on the page's first example")
                    example.previous = found[-1]
            elif "<!--" in before and ("test" in before):
                raise AssertionError(f"{path}:{i + 1}: {before.strip()!r} is not a mark this test knows")
            found.append(example)
        i = end + 1
    return found


ALL = [example for page in pages() for example in examples_of(page)]


def dns_records(argument: str) -> dict[str, list[str]]:
    """``NAME=ADDRESS[,ADDRESS] ...`` of a dns mark."""
    records: dict[str, list[str]] = {}
    for item in argument.split():
        name, sep, addresses = item.partition("=")
        if not sep or not addresses:
            raise AssertionError(f"dns mark: {item!r} is not NAME=ADDRESS[,ADDRESS]")
        records[name] = addresses.split(",")
    if not records:
        raise AssertionError("dns mark: no records given")
    return records


def guarded_apps(namespace: dict[str, Any]) -> list[Flask]:
    """The Flask apps flask_allow guards among the example's names."""
    return [value for value in namespace.values() if isinstance(value, Flask) and "flask_allow" in value.extensions]


def run(example: Example, namespace: dict[str, Any], modules: list[str]) -> None:
    """Run ``example`` after the examples it continues; a module example is written and imported."""
    if example.previous is not None:
        run(example.previous, namespace, modules)
    if example.mark == "module":
        Path(f"{example.argument}.py").write_text(example.code, encoding="utf-8")
        modules.append(example.argument)
        namespace[example.argument] = importlib.import_module(example.argument)
    else:
        before = set(namespace)
        exec(compile(example.code, example.id, "exec"), namespace)
        for name in [n for n in namespace if n not in before and n.startswith("test_")]:
            call_test(namespace[name], example)


def call_test(function: Any, example: Example) -> None:
    """Call a ``test_*`` function of an example as pytest would, with the fixtures it names."""
    if not callable(function):
        return
    names = list(inspect.signature(function).parameters)
    unknown = set(names) - {"monkeypatch", "tmp_path"}
    assert not unknown, f"{example.id}: {function.__name__} asks for fixtures the docs test lacks: {unknown}"
    with pytest.MonkeyPatch.context() as monkeypatch:
        given = {"monkeypatch": monkeypatch, "tmp_path": Path(tempfile.mkdtemp(dir="."))}
        function(**{name: given[name] for name in names})


@pytest.mark.parametrize("example", [pytest.param(e, id=e.id) for e in ALL if e.mark != "skip"])
def test_example_runs(example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    modules: list[str] = []
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    server = None
    chain = example
    while chain.previous is not None and chain.mark != "dns":
        chain = chain.previous
    if chain.mark == "dns":
        server = DNSServer().start()
        for name, addresses in dns_records(chain.argument).items():
            for rdtype, version in (("A", 4), ("AAAA", 6)):
                values = [a for a in addresses if ipaddress.ip_address(a).version == version]
                if values:
                    server.set(name, rdtype, values)
        monkeypatch.setitem(keys.DEFAULTS, keys.ALLOW_DNS_NAMESERVERS, [server.host])
        monkeypatch.setitem(keys.DEFAULTS, keys.ALLOW_DNS_PORT, server.port)
        monkeypatch.setitem(keys.DEFAULTS, keys.ALLOW_DNS_HOSTS_FILE, None)
    try:
        run(example, namespace, modules)
        for app in guarded_apps(namespace):
            client = app.test_client()
            for address in _CLIENTS:
                response = client.get("/", environ_base={"REMOTE_ADDR": address})
                assert response.status_code < 500, f"{example.id}: {address} got {response.status_code}"
    finally:
        for app in guarded_apps(namespace):
            close_app(app)
        if server is not None:
            server.stop()
        for name in modules:
            sys.modules.pop(name, None)


def test_marks_are_few() -> None:
    """Fragments are the exception: most examples run, and each one that does not says why."""
    skipped = [e for e in ALL if e.mark == "skip"]
    assert len(ALL) >= 15
    assert len(skipped) <= max(3, len(ALL) // 8), [f"{e.id}: {e.argument}" for e in skipped]


def test_parser_reads_the_marks(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nx = 1\n```\n\n<!-- test: continue -->\n\n```python\nassert x == 1\n```\n"
        "<!-- no-test: a fragment -->\n```python\nundefined_name\n```\n"
        "<!-- test: dns a.example=192.0.2.1,2001:db8::1 -->\n```python\npass\n```\n"
        "- in a list:\n\n  ```python\n  y = 2\n  ```\n"
        "<!-- test: module plugin_x -->\n```python\nz = 3\n```\n",
        encoding="utf-8",
    )
    found = examples_of(page)
    assert [(e.line, e.mark) for e in found] == [
        (1, ""),
        (7, "continue"),
        (11, "skip"),
        (15, "dns"),
        (20, ""),
        (24, "module"),
    ]
    assert found[1].previous is found[0]
    assert found[4].code == "y = 2\n"
    assert dns_records(found[3].argument) == {"a.example": ["192.0.2.1", "2001:db8::1"]}
    page.write_text("<!-- test: contineu -->\n```python\npass\n```\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="unknown mark"):
        examples_of(page)
    page.write_text("```python title\npass\n```\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="mark the block"):
        examples_of(page)

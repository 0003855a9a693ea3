"""The release: the sdist holds what its tests need and, installed, passes them; the wheel the package."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

from conftest import BLOCKLISTS, REPO_ROOT, package_source

BUILD = (  # setuptools' PEP 517 backend, called directly: offline, no isolation, no 'build' package
    "import sys; from setuptools import build_meta as backend; print(getattr(backend, sys.argv[1])(sys.argv[2]))"
)


def build(source: Path, kind: str) -> Path:
    done = subprocess.run(
        [sys.executable, "-c", BUILD, f"build_{kind}", str(source / "dist")],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return source / "dist" / done.stdout.strip().splitlines()[-1]


def test_sdist_holds_what_its_tests_need(tmp_path: Path) -> None:
    sdist = build(package_source(tmp_path / "src", everything=True), "sdist")
    with tarfile.open(sdist) as archive:
        top, *_ = archive.getnames()
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        metadata = archive.extractfile(f"{top.split('/')[0]}/PKG-INFO").read().decode()  # type: ignore[union-attr]
    for needed in (
        "LICENSE",
        "README.md",
        "CHANGES.md",
        "SECURITY.md",
        "CONTRIBUTING.md",
        "setup.py",
        "pyproject.toml",
        "flask_allow/_lookup.c",
        "flask_allow/py.typed",
        "tests/conftest.py",
        "tests/dns_server.py",
        "tests/test_packaging.py",
        "docs/hooks.md",
        "docs/rules.md",
        "docs/conf.py",  # the site's build, a test of the suite
        "docs/_ext/configkeys.py",
        "examples/demo/app.py",
        "examples/demo/blocklist.txt",
        "benchmarks/_common.py",
        "plugins/flask-allow-example/pyproject.toml",
        "plugins/flask-allow-example/flask_allow_example/__init__.py",
        ".ci/run",
    ):
        assert needed in names, f"{needed} is not in {sdist.name}"
    assert not [n for n in names if "__pycache__" in n or n.endswith((".so", ".pyc")) or n.startswith(".venv")]
    assert "License-Expression: GPL-2.0-only" in metadata


def test_wheel_holds_the_package_and_the_licence(tmp_path: Path) -> None:
    wheel = build(package_source(tmp_path / "src"), "wheel")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (info,) = {n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA")}
        metadata = Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        licence = archive.read(f"{info}/licenses/LICENSE").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert {"flask_allow/__init__.py", "flask_allow/py.typed", "flask_allow/builtins/networks.py"} <= names
    assert not [n for n in names if n.startswith(("tests/", "docs/", "benchmarks/"))]
    assert "GNU GENERAL PUBLIC LICENSE" in licence and "Version 2, June 1991" in licence
    assert metadata["License-Expression"] == "GPL-2.0-only"
    assert "yaml" in metadata.get_all("Provides-Extra")
    assert any(
        r.startswith("pyyaml") and 'extra == "yaml"' in r for r in map(str.lower, metadata.get_all("Requires-Dist"))
    )
    classifiers = metadata.get_all("Classifier")
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # the SPDX expression says it
    assert any(url.startswith("Source, ") for url in metadata.get_all("Project-URL"))
    assert "[flask.commands]" in entry_points and "allow = flask_allow.cli:cli" in entry_points


def outside_environ() -> dict[str, str]:
    """This environment without what points at the checkout; the published lists as found here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "PYTHON", "PIP_"))}
    env["FLASK_ALLOW_BLOCKLISTS"] = str(BLOCKLISTS)  # present or not, the sdist's tests see what these do
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def outside(python: Path, *args: str, cwd: Path) -> str:
    """Run ``python ARGS`` in ``cwd`` with ``outside_environ()``; its output (failing shows it)."""
    done = subprocess.run(
        [str(python), *args], cwd=cwd, env=outside_environ(), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    return done.stdout


def installed_venv(where: Path, source: Path) -> Path:
    """A venv at ``where`` seeing this interpreter's packages, with ``source`` pip-installed offline.

    ``--system-site-packages`` shows the base interpreter's packages; when this one runs in a venv,
    a ``.pth`` file adds that venv's site directories too (as plain paths: its editable install of
    this checkout stays out). Nothing is downloaded: no index, no build isolation, no dependencies.
    """
    outside(Path(sys.executable), "-m", "venv", "--system-site-packages", "--without-pip", str(where), cwd=where.parent)
    python = where / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if sys.prefix != sys.base_prefix:
        purelib = outside(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=where).strip()
        ours = dict.fromkeys([*site.getsitepackages(), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
        # the plugins installed in editable mode here: their entry points are seen, so must their code be
        plugins = [str(path.parent.parent) for path in sorted(REPO_ROOT.glob("plugins/*/flask_allow_*/__init__.py"))]
        lines = [*ours, *plugins]
        Path(purelib, "_outer_site.pth").write_text("".join(f"{d}\n" for d in lines), encoding="utf-8")
    outside(
        python, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", "--no-deps", str(source), cwd=where
    )
    return python


def test_the_installed_sdist_passes_its_own_tests(tmp_path: Path) -> None:
    """pip install of the unpacked sdist, then a few of its own test modules run from it."""
    sdist = build(package_source(tmp_path / "src", everything=True), "sdist")
    with tarfile.open(sdist) as archive:
        (top,) = {name.split("/")[0] for name in archive.getnames()}
        archive.extractall(tmp_path / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    unpacked = tmp_path / "unpacked" / top
    python = installed_venv(tmp_path / "venv", unpacked)
    where = Path(outside(python, "-c", "import flask_allow; print(flask_allow.__file__)", cwd=tmp_path).strip())
    assert where.resolve().is_relative_to((tmp_path / "venv").resolve()), where  # the installed copy
    # A few fast modules: the rules, the configuration, and the C search (in this process and in a
    # `flask allow` child, which must import the installed copy, built, not the unpacked sources).
    # Run from outside the unpacked folder, as `pytest` in it would: its flask_allow/ must not shadow the install.
    tests = [str(unpacked / "tests" / f"test_{name}.py") for name in ("rules", "config", "clookup")]
    ran = outside(python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests, cwd=tmp_path)
    assert " passed" in ran and " failed" not in ran, ran[-3000:]

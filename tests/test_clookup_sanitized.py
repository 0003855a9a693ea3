"""The C search and the C access-log line under AddressSanitizer and UndefinedBehaviorSanitizer.

``_lookup.c`` reads buffers it is handed and parses text a client sends, and ``_logline.c``
copies a client's text into a line, so an out-of-bounds read or write or undefined behaviour
there is a security bug that a differential test may not see (a stray read that happens to give
the right answer). Here the module is compiled again with ``-fsanitize=
address,undefined`` (every finding fatal), put beside a copy of the package, and the C tests and
the differential fuzz tests run against it in a child Python with the sanitizer runtime preloaded.
A probe module that reads past a buffer, and one that overflows a signed integer, are run the same
way first: they must be caught, or a clean run would prove nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import REPO_ROOT

COMPILER = os.environ.get("CC", "cc")
FLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
PROBE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
static PyObject *past_the_end(PyObject *self, PyObject *count) {
    Py_ssize_t n = PyLong_AsSsize_t(count);
    char *buffer = malloc(8);
    volatile char seen = buffer[n];  /* n = 8: one byte past the buffer */
    free(buffer);
    return PyLong_FromLong(seen);
}
static PyObject *overflow(PyObject *self, PyObject *value) {
    volatile int n = (int)PyLong_AsLong(value);
    return PyLong_FromLong(n + 1);  /* INT_MAX + 1 */
}
static PyMethodDef methods[] = {
    {"past_the_end", past_the_end, METH_O, NULL}, {"overflow", overflow, METH_O, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_probe", NULL, -1, methods};
PyMODINIT_FUNC PyInit__probe(void) { return PyModule_Create(&module); }
"""


def compile_module(source: Path, target: Path) -> None:
    include = sysconfig.get_paths()["include"]
    command = [COMPILER, *FLAGS, "-shared", "-fPIC", f"-I{include}", str(source), "-o", str(target)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}{done.stderr}"


def runtime() -> str:
    """The AddressSanitizer runtime to preload (the interpreter itself is not instrumented)."""
    found = subprocess.run([COMPILER, "-print-file-name=libasan.so"], capture_output=True, text=True, timeout=60)
    path = found.stdout.strip()
    if not os.path.isabs(path) or not os.path.exists(path):
        pytest.fail(f"{COMPILER} has no AddressSanitizer runtime (libasan); on Debian: apt-get install gcc")
    return path


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A copy of the package whose C search is built with the sanitizers, and the child's environ."""
    if shutil.which(COMPILER) is None:
        pytest.fail(f"no C compiler ({COMPILER}): the C search and its sanitizer run need one")
    root = tmp_path_factory.mktemp("sanitized")
    package = root / "site" / "flask_allow"
    shutil.copytree(REPO_ROOT / "flask_allow", package, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    compile_module(package / "_lookup.c", package / f"_lookup{SUFFIX}")
    compile_module(package / "_logline.c", package / f"_logline{SUFFIX}")
    (root / "probe").mkdir()
    (root / "probe" / "_probe.c").write_text(PROBE)
    compile_module(root / "probe" / "_probe.c", root / "probe" / f"_probe{SUFFIX}")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "PYTEST_", "COV_"))}
    environ.update(
        LD_PRELOAD=runtime(),
        # (CPython keeps memory to the end: no leak check.) Reports go to files too: a child pytest
        # captures its stderr, and a report written there dies with the process.
        ASAN_OPTIONS=f"detect_leaks=0:abort_on_error=0:exitcode=86:log_path={root / 'report'}:log_to_syslog=0",
        UBSAN_OPTIONS=f"print_stacktrace=1:halt_on_error=1:exitcode=87:log_path={root / 'report'}",
        PYTHONPATH=os.pathsep.join([str(root / "site"), str(root / "probe")]),
    )
    return root, environ


def child(root: Path, environ: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run Python with the sanitizers; what they reported is appended to its stderr."""
    for old in root.glob("report*"):
        old.unlink()
    done = subprocess.run(
        [sys.executable, *args], cwd=root, env=environ, capture_output=True, text=True, timeout=timeout
    )
    reports = "".join(path.read_text(errors="replace") for path in sorted(root.glob("report*")))
    done.stderr += reports
    return done


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the preloaded runtime is how Linux runs it")
def test_the_sanitizers_catch_what_they_are_there_for(sanitized: tuple[Path, dict[str, str]]) -> None:
    root, environ = sanitized
    fine = child(root, environ, "-c", "import _probe; print(_probe.past_the_end(7), _probe.overflow(1))")
    assert fine.returncode == 0 and fine.stdout.split()[1] == "2", fine.stderr
    read = child(root, environ, "-c", "import _probe; _probe.past_the_end(8)")
    # UBSan's object-size check may see it before AddressSanitizer does: either stops the process
    caught = "heap-buffer-overflow" in read.stderr or "insufficient space for an object" in read.stderr
    assert read.returncode in (86, 87) and caught, read.stderr[-2000:]
    overflow = child(root, environ, "-c", "import _probe; _probe.overflow(2**31 - 1)")
    assert overflow.returncode == 87 and "signed integer overflow" in overflow.stderr, overflow.stderr[-2000:]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the preloaded runtime is how Linux runs it")
def test_the_c_tests_and_the_fuzz_tests_pass_under_the_sanitizers(sanitized: tuple[Path, dict[str, str]]) -> None:
    root, environ = sanitized
    where = child(
        root,
        environ,
        "-c",
        "import flask_allow._lookup as m, flask_allow._logline as n, flask_allow.clookup as c;"
        " print(m.__file__, n.__file__, c.available())",
    )
    assert where.returncode == 0, where.stderr
    built = root / "site" / "flask_allow"
    assert where.stdout.split() == [str(built / f"_lookup{SUFFIX}"), str(built / f"_logline{SUFFIX}"), "True"]
    names = ("test_clookup_fuzz.py", "test_clookup.py", "test_logline_c.py")
    tests = [str(REPO_ROOT / "tests" / name) for name in names]
    done = child(
        root,
        environ,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(REPO_ROOT),
        *tests,
        "-k",
        "not install",  # pip installs of the package: a copy built without the sanitizers
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "skipped" not in summary, summary
    print(summary)

"""The C search of an all-static index (``flask_allow/_lookup.c``): built, used, and safe at its edges.

That it gives the same answers as the Python search is the property tests' job
(``test_engine_property.py`` runs both); here: that it is there unless asked not to be, what it
hands to the Python fallback, that it holds its arrays, and that inconsistent arrays raise
instead of being read out of bounds (and that the engine then denies).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import weakref
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import MakeApp, checkout_environ, flask_allow_command, package_source, status
from flask import request

from flask_allow import Client, Decision
from flask_allow import clookup as clookup_module
from flask_allow.addresses import parse_span
from flask_allow.clookup import ENVIRON_KEY, available, c_lookup
from flask_allow.decision import Rule
from flask_allow.engine import Engine
from flask_allow.index import RADIX_MIN, StaticIndex
from flask_allow.matcher import Matcher

PURE = os.environ.get(ENVIRON_KEY, "") not in ("", "0")


class Spans(Matcher):
    """A static rule over given networks (built without a registry)."""

    def __init__(self, *networks: str) -> None:
        self._spans = [parse_span(network)[0] for network in networks]

    def spans(self) -> list:  # type: ignore[type-arg]
        return self._spans


def engine_of(*per_rule: tuple[str, ...]) -> Engine:
    rules = [Rule("DENY", f"r{k}", f"R[{k}]", Spans(*networks), k) for k, networks in enumerate(per_rule)]
    return Engine(rules, default_allow=True)


@pytest.fixture
def c_search(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The C search, wherever this suite runs (a run with FLASK_ALLOW_PURE_PYTHON=1 included)."""
    if clookup_module._lookup is None:
        pytest.fail("flask_allow._lookup was not built: install with a C compiler (pip install -e .)")
    monkeypatch.delenv(ENVIRON_KEY, raising=False)
    yield


def test_the_c_module_is_built_and_used_unless_pure_python_is_asked() -> None:
    engine = engine_of(("10.0.0.0/8",))
    if PURE:
        assert not available() and engine.searched_in == "Python"
    else:
        # a missing build would silently cost a factor of three on every request: fail loudly
        assert clookup_module._lookup is not None, "flask_allow._lookup was not built (is a C compiler installed?)"
        assert available() and engine.searched_in == "C"


def test_pure_python_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRON_KEY, "1")
    engine = engine_of(("10.0.0.0/8",))
    assert engine.searched_in == "Python" and not available()
    assert engine.lookup("10.1.2.3") is engine.rules[0]
    monkeypatch.setenv(ENVIRON_KEY, "0")
    assert available() == (clookup_module._lookup is not None)


@pytest.mark.parametrize("layout", ["small", "radix"])
def test_what_the_c_search_answers_and_what_it_hands_on(c_search: None, layout: str) -> None:
    extra = tuple(f"172.{16 + i // 256}.{i % 256}.0/24" for i in range(RADIX_MIN)) if layout == "radix" else ()
    engine = engine_of(("10.0.0.0/8", "2001:db8::/32", *extra), ("0.0.0.0/0", "::/0"))
    assert engine.searched_in == "C"
    first, catch_all = engine.rules
    assert engine.lookup("10.255.255.255") is first
    assert engine.lookup("11.0.0.0") is catch_all
    assert engine.lookup("::ffff:10.1.2.3") is first  # mapped: its IPv4 address
    assert engine.lookup("::ffff:11.1.2.3") is catch_all
    assert engine.lookup("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff") is first
    assert engine.lookup("2001:db9::") is catch_all
    assert engine.lookup("fe80::1%eth0") is catch_all  # a zone: parsed by the Python fallback
    assert engine.lookup("2001:db8::1%1") is first
    for garbage in ("", "10.0.0.1\x00", "10.0.0.1 ", "\ud800", "1" * 100, "10.0.0.256", "::g", "010.0.0.1"):
        with pytest.raises(ValueError):
            engine.lookup(garbage)
    for not_text in (None, b"10.0.0.1", 167772161):
        with pytest.raises(ValueError):
            engine.lookup(not_text)  # type: ignore[arg-type]


def test_no_match_is_what_label_zero_holds(c_search: None) -> None:
    engine = engine_of(("10.0.0.0/8",))
    assert engine.lookup("192.0.2.1") is None and engine.lookup("2001:db8::1") is None
    assert engine.decide(Client("192.0.2.1")).allowed  # the default


def test_the_arrays_are_held_while_the_search_lives(c_search: None) -> None:
    engine = engine_of(("10.0.0.0/8",))
    index = engine._index
    with pytest.raises(BufferError):
        index.v4_starts.append(1)  # type: ignore[union-attr]
    lookup = engine.lookup
    del engine
    gc.collect()
    assert lookup("10.0.0.1") is not None  # the bound search keeps what it needs
    searcher = weakref.ref(lookup.__self__)  # type: ignore[attr-defined]
    del lookup
    gc.collect()
    assert searcher() is None
    index.v4_starts.append(1)  # released with it


def test_a_search_in_a_reference_cycle_is_collected(c_search: None) -> None:
    class Holder:
        def other(self, address: str) -> None:
            return None

    holder = Holder()
    found = c_lookup(StaticIndex([[parse_span("10.0.0.0/8")[0]]]), (None, "rule"), holder.other)
    assert found is not None
    holder.search = found  # type: ignore[attr-defined]  # holder -> search -> its fallback -> holder
    gone = weakref.ref(found.__self__)  # type: ignore[attr-defined]
    del found, holder
    gc.collect()
    assert gone() is None


def index_arrays(**changes: object) -> dict[str, object]:
    arrays: dict[str, object] = {
        "v4_starts": array("I", [0, 10, 20]),
        "v4_labels": array("B", [0, 1, 0]),
        "v4_direct": None,
        "v4_radix": None,
        "v6_high": array("Q", [0]),
        "v6_low": array("Q", [0]),
        "v6_labels": array("B", [0]),
    }
    arrays.update(changes)
    return arrays


def test_arrays_of_the_wrong_kind_are_refused(c_search: None) -> None:
    Index = clookup_module._lookup.Index
    rules, other = (None, "rule"), str
    assert Index(rules, other, **index_arrays()).lookup("0.0.0.15") == "rule"
    for wrong in (
        {"v4_starts": array("Q", [0, 10, 20])},  # IPv4 boundaries are 32-bit
        {"v4_starts": array("i", [0, 10, 20])},  # and unsigned
        {"v6_high": array("I", [0])},
        {"v4_labels": array("b", [0, 1, 0])},
        {"v4_labels": array("d", [0, 1, 0])},
        {"v4_labels": [0, 1, 0]},
    ):
        with pytest.raises(TypeError):
            Index(rules, other, **index_arrays(**wrong))
    for mismatched in (
        {"v4_labels": array("B", [0, 1])},
        {"v4_starts": array("I"), "v4_labels": array("B")},
        {"v6_low": array("Q", [0, 5])},
        {"v4_direct": array("b", [-1] * 65536)},  # without its v4_radix
        {"v4_direct": array("b", [-1] * 256), "v4_radix": array("I", [0] * 257)},  # not one per /16
    ):
        with pytest.raises(ValueError):
            Index(rules, other, **index_arrays(**mismatched))
    with pytest.raises(TypeError):
        Index(rules, "not callable", **index_arrays())
    for pair in ((0,), (0, "1"), [0, 1]):
        with pytest.raises(TypeError):
            Index(rules, other, **index_arrays(), v4_pair=pair)
    alternating = Index(rules, other, **index_arrays(), v4_pair=(0, 1))
    assert [alternating.lookup(f"0.0.0.{n}") for n in (9, 10, 19, 20)] == [None, "rule", "rule", None]
    made = Index(rules, other, **index_arrays())
    with pytest.raises(TypeError):
        made.__init__(rules, other, **index_arrays())  # made once


def test_inconsistent_arrays_raise_and_the_engine_denies(c_search: None) -> None:
    Index = clookup_module._lookup.Index
    beyond = Index((None, "rule"), str, **index_arrays(v4_labels=array("B", [0, 7, 0])))
    assert beyond.lookup("0.0.0.1") is None
    with pytest.raises(RuntimeError, match="inconsistent"):
        beyond.lookup("0.0.0.10")
    wrong_pair = Index((None, "rule"), str, **index_arrays(), v4_pair=(0, 2))
    with pytest.raises(RuntimeError, match="inconsistent"):
        wrong_pair.lookup("0.0.0.10")
    # tables are derived (the /16 offsets, the bitmap of plain blocks) only from arrays the search
    # could use, and the /16 tables must say what the boundaries say
    starts = [0, 10, 20, 0x0A000000, 0x0A000100]
    radix = array("I", [bisect_left(starts, b << 16) for b in range(65537)])
    direct = array("b", [[0, 1, 0, 1, 0][lo - 1] if lo == hi else -1 for lo, hi in pairwise(radix)])
    large = index_arrays(
        v4_starts=array("I", starts), v4_labels=array("B", [0, 1, 0, 1, 0]), v4_direct=direct, v4_radix=radix
    )
    off_direct = array("b", direct)
    off_direct[0x0B00] = 1  # 11.0.0.0/16 holds no boundary: its label is the span's before it, 0
    for arrays, pair, plain, why in [
        (index_arrays(), (0, 2), True, "label out of range"),
        (index_arrays(v4_labels=array("B", [0, 7, 0])), None, True, "label out of range"),
        (index_arrays(v4_starts=array("I", [0, 20, 10])), None, True, "out of order"),
        (index_arrays(v4_starts=array("I", [0, 10, 10])), None, True, "out of order"),
        (index_arrays(v4_starts=array("I", [5, 10, 20])), None, True, "out of order"),
        ({**large, "v4_radix": array("I", [0] * 65537)}, None, False, "v4 radix table"),
        ({**large, "v4_radix": array("I", [0, *radix[2:], 5])}, None, True, "v4 radix table"),
        ({**large, "v4_direct": off_direct}, None, False, "v4 direct table"),
        ({**large, "v4_labels": array("B", [0, 1, 0, 1, 2])}, None, False, "label out of range"),
    ]:
        with pytest.raises(RuntimeError, match=f"inconsistent .*{why}"):
            Index((None, "rule"), str, **arrays, v4_pair=pair, plain=plain)
    failed = Index.__new__(Index)
    with pytest.raises(RuntimeError, match="inconsistent"):
        failed.__init__((None, "rule"), str, **{**large, "v4_direct": off_direct}, plain=True)
    assert failed.plain_blocks is None  # what a failed making left in its tables is not read
    with pytest.raises(RuntimeError, match="not initialised"):
        failed.lookup("10.0.0.1")
    for pair, plain in ((None, False), ((0, 1), False), ((0, 1), True)):
        made = Index(
            (None, "rule"), str, **{**large, "v4_direct": off_direct if pair else direct}, v4_pair=pair, plain=plain
        )
        assert [made.lookup(a) for a in ("0.0.0.9", "0.0.0.10", "10.0.0.255", "10.0.1.0", "11.0.0.1")] == [
            None,
            "rule",
            "rule",
            None,
            None,
        ]
    plain = Index((None, "rule"), str, **index_arrays(), plain=True)
    assert plain.plain_blocks == (1 << 21) - 1  # all but 0.0.0.0/21, where the rule is
    assert [plain.lookup(a) for a in ("0.0.0.9", "0.0.0.10", "0.0.0.19", "0.0.8.0", "::ffff:0.0.0.10")] == [
        None,
        "rule",
        "rule",
        None,
        "rule",
    ]
    engine = engine_of(("10.0.0.0/8",))
    engine.lookup = beyond.lookup
    decision = engine.decide(Client("0.0.0.10"))
    assert not decision.allowed and decision.error is not None and "could not be searched" in decision.error


def flask_allow_rules(tmp_path: Path, pure: bool) -> str:
    (tmp_path / "static_app.py").write_text(
        "from flask import Flask\nfrom flask_allow import FlaskAllow\n"
        "app = Flask(__name__)\n"
        "app.config.update(ADDRESS_RESTRICTION=[{'DENY': '10.0.0.0/8'}], ALLOW_LOAD_ENTRY_POINTS=False)\n"
        "FlaskAllow(app)\n"
    )
    env = checkout_environ()
    if pure:
        env[ENVIRON_KEY] = "1"
    done = flask_allow_command(tmp_path, "static_app", "rules", environ=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_flask_allow_rules_says_where_the_index_is_searched(c_search: None, tmp_path: Path) -> None:
    assert "Search: every rule is static, one index searched in C\n" in flask_allow_rules(tmp_path, pure=False)
    pure = flask_allow_rules(tmp_path, pure=True)
    assert f"Search: every rule is static, one index searched in Python ({ENVIRON_KEY} is set)\n" in pure


def test_a_client_parses_its_address_when_first_asked() -> None:
    """The short way decides from the address text alone; ``key`` is parsed only when read."""
    client = Client("::ffff:10.0.0.1%eth0")
    with pytest.raises(AttributeError):
        object.__getattribute__(client, "key")  # not parsed yet
    assert client.key == (4, 0x0A000001) and client.version == 4 and str(client.ip) == "10.0.0.1"
    assert Client("garbage").key is None and Client("garbage").ip is None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        Client("10.0.0.1").nope  # type: ignore[attr-defined]  # noqa: B018


def test_the_short_way_decides_as_the_engine_does(c_search: None, make_app: MakeApp) -> None:
    """A guarded request with static rules only goes the short way: same decisions, errors included."""
    app = make_app({"ADDRESS_RESTRICTION": [{"ALLOW": "10.0.0.0/8"}, {"DENY": "all"}], "ALLOW_DEFAULT": "allow"})
    state = app.extensions["flask_allow"]
    assert state._short_way is state.engine
    seen: list[Decision] = []
    app.teardown_request(lambda error: seen.append(request.environ["flask_allow.decision"]))
    for address, expected in (("10.1.2.3", 200), ("::ffff:10.1.2.3", 200), ("192.0.2.1", 403), ("not-an-ip", 403)):
        assert status(app, address) == expected, address
        decision = seen[-1]
        assert decision.allowed == (expected == 200) and decision.client.address == address
        same = state.engine.decide(Client(address))
        assert (decision.rule, decision.allowed, decision.error) == (same.rule, same.allowed, same.error)


PIP_INSTALL = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q"]


def install(tmp_path: Path, name: str, **environ: str) -> Path:
    """pip-install this checkout into a folder of its own (no index, no build isolation: offline)."""
    source = package_source(tmp_path / f"{name}-src")  # a clean copy: no built module, no egg-info
    target = tmp_path / name
    done = subprocess.run(
        [*PIP_INSTALL, "--target", str(target), str(source)],
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return target


def search_of(target: Path) -> str:
    """Which search an app gets with the package installed in ``target``, and its answers."""
    script = (  # the editable install of this checkout hooks sys.meta_path, ahead of PYTHONPATH: unhook it
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in repr(f)]\n"
        "from flask import Flask; from flask_allow import FlaskAllow\n"
        "app = Flask('x'); app.config.update(ADDRESS_RESTRICTION=[{'DENY': '10.0.0.0/8'}],"
        " ALLOW_LOAD_ENTRY_POINTS=False)\n"
        "FlaskAllow(app); engine = app.extensions['flask_allow'].engine\n"
        "import os, flask_allow; assert flask_allow.__file__.startswith(os.environ['INSTALLED'])\n"
        "print(engine.searched_in, engine.lookup('10.1.1.1') is engine.rules[0], engine.lookup('11.1.1.1'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != ENVIRON_KEY}
    env["INSTALLED"] = str(target)
    env["PYTHONPATH"] = str(target)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=target, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_without_a_c_compiler_the_package_installs_and_searches_in_python(tmp_path: Path) -> None:
    """``optional=True``: a compiler that fails leaves the package whole, with the Python search."""
    target = install(tmp_path, "no-compiler", CC="false", LDSHARED="false")
    assert not list((target / "flask_allow").glob("_lookup*.so")) and (target / "flask_allow" / "_lookup.pyi").is_file()
    assert search_of(target) == "Python True None"


def test_an_install_with_a_compiler_builds_the_c_search(c_search: None, tmp_path: Path) -> None:
    target = install(tmp_path, "compiled")
    assert list((target / "flask_allow").glob("_lookup*.so")) or list((target / "flask_allow").glob("_lookup*.pyd"))
    assert search_of(target) == "C True None"


def test_an_index_is_made_once_even_from_inside_its_making(c_search: None) -> None:
    """An argument's ``__index__`` that calls ``__init__`` again is refused (it once left the
    search reading past a buffer); so are misaligned buffers."""
    Index = clookup_module._lookup.Index
    made = Index.__new__(Index)

    class Sneaky:
        def __index__(self) -> int:
            made.__init__((None, "rule"), str, **index_arrays())
            return 0

    with pytest.raises(TypeError, match="made once"):
        made.__init__((None, "rule"), str, **index_arrays(), v4_pair=(Sneaky(), 1))
    with pytest.raises(RuntimeError, match="not initialised"):
        made.lookup("0.0.0.1")
    raw = bytearray(4 * 4)
    misaligned = memoryview(raw)[1:13].cast("I")
    with pytest.raises(TypeError, match="aligned"):
        Index((None, "rule"), str, **index_arrays(v4_starts=misaligned))


def test_a_crowded_slash_8_takes_the_full_radix_table(c_search: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The C search keeps the /16 table's offsets in 16 bits per group of 256 /16s when they fit;
    more than 65,535 boundaries in one /8 do not, and the full table is searched instead."""
    crowded = tuple(f"10.{n // 256 % 256}.{n % 256}.{n // 65536 * 2 + 1}" for n in range(34_000))
    spread = tuple(f"{20 + n % 200}.{n % 251}.{n % 256}.0/24" for n in range(3_000))
    python = {}
    for name, networks in (("crowded", crowded), ("spread", spread)):
        monkeypatch.setenv(ENVIRON_KEY, "1")
        python[name] = engine_of(networks, ("0.0.0.0/0",))
        monkeypatch.delenv(ENVIRON_KEY)
        engine = engine_of(networks, ("0.0.0.0/0",))
        assert engine.searched_in == "C" and engine._index.v4_direct is not None
        starts = list(engine._index.v4_starts)
        probes = [
            f"{v >> 24}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}" for s in starts[::7] for v in (s - 1, s) if v >= 0
        ]
        for address in probes:
            expected = python[name].lookup(address)
            assert engine.lookup(address).index == expected.index, address  # type: ignore[union-attr]


def test_other_threads_run_while_a_large_index_is_made(c_search: None) -> None:
    """The C search's own tables of a large index (milliseconds at 10^6 networks) are filled
    without the GIL: threads serving requests go on while ``reload()`` swaps rules in."""
    count = 2_000_000  # boundaries: a 1,000,000-network list
    arrays = index_arrays(
        v4_starts=array("I", range(0, count * 2000, 2000)),
        v4_labels=array("B", [0, 1]) * (count // 2),
        v4_direct=array("b", [-1] * 65536),
        v4_radix=array("I", [min(count, -(-(b << 16) // 2000)) for b in range(65537)]),
    )
    Index = clookup_module._lookup.Index
    ticks = [0]
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            ticks[0] += 1

    saved = sys.getswitchinterval()
    sys.setswitchinterval(0.5)  # the GIL changes hands only when given up (or after 0.5 s)
    thread = threading.Thread(target=tick)
    thread.start()
    try:
        during = []
        for _ in range(3):  # (each waits up to the 0.5 s for the GIL back: the thread does not give it up)
            before = ticks[0]
            made = Index((None, "rule"), str, **arrays, v4_pair=(0, 1), plain=True)
            during.append(ticks[0] - before)
    finally:
        stop.set()
        sys.setswitchinterval(saved)
        thread.join()
    assert any(during), during
    # the last span (label 1, from the last boundary to the top) covers the most: its blocks are plain
    last_gap_end = (count - 1) * 2000 - 1
    assert made.plain_blocks == (1 << 21) - (last_gap_end >> 11) - 1
    assert [made.lookup(a) for a in ("0.0.7.207", "0.0.7.208", "238.107.32.47", "238.107.32.48")] == [
        None,
        "rule",
        None,
        "rule",
    ]

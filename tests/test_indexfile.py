"""Indexes kept on disk and memory-mapped: the same answers as built in memory, shared, and safe."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, checkout_environ

from flask_allow import index as index_module
from flask_allow.addresses import V4_MAX, V6_MAX, Span
from flask_allow.clookup import available, c_lookup
from flask_allow.index import StaticIndex
from flask_allow.indexfile import Mapped, digest, save, shared_index


def random_sets(seed: int, rules: int = 3, spans: int = 600) -> list[list[Span]]:
    rng = random.Random(seed)
    made = []
    for _ in range(rules):
        found = []
        for _ in range(spans):
            if rng.random() < 0.8:
                length = rng.randint(8, 32)
                first = rng.getrandbits(32) & ~((1 << (32 - length)) - 1)
                found.append(Span(4, first, min(V4_MAX, first + (1 << (32 - length)) - 1)))
            else:
                length = rng.randint(16, 128)
                first = rng.getrandbits(128) & ~((1 << (128 - length)) - 1)
                found.append(Span(6, first, min(V6_MAX, first + (1 << (128 - length)) - 1)))
        made.append(found)
    return made


def probes(sets: list[list[Span]], seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    found = [(4, rng.getrandbits(32)) for _ in range(300)] + [(6, rng.getrandbits(128)) for _ in range(300)]
    for spans in sets:
        for family, first, last in spans[:100]:
            top = V4_MAX if family == 4 else V6_MAX
            found += [(family, first), (family, last), (family, max(0, first - 1)), (family, min(top, last + 1))]
    return found


@pytest.mark.parametrize("seed", range(4))
def test_a_mapped_index_answers_as_the_one_it_was_saved_from(tmp_path: Path, seed: int) -> None:
    sets = random_sets(seed)
    built = StaticIndex(sets)
    key = digest([str(seed)])
    save(built, str(tmp_path / "i.index"), key, {"n": seed})
    mapped = Mapped(str(tmp_path / "i.index"), key)
    assert mapped.facts == {"n": seed} and mapped.size == built.size
    assert mapped.labels() == built.labels()
    for family, value in probes(sets, seed):
        assert mapped.lookup(family, value) == built.lookup(family, value)
    if available():
        rules = (None, "a", "b", "c")
        fast_built = c_lookup(built, rules, lambda text: "other")
        fast_mapped = c_lookup(mapped, rules, lambda text: "other")
        assert fast_built is not None and fast_mapped is not None
        rng = random.Random(seed)
        for _ in range(2000):
            address = ".".join(str(rng.randrange(256)) for _ in range(4))
            assert fast_mapped(address) == fast_built(address)


def test_a_large_index_maps_its_radix_tables(tmp_path: Path) -> None:
    rng = random.Random(7)
    spans = [Span(4, v, v) for v in sorted({rng.getrandbits(32) for _ in range(5000)})]
    built = StaticIndex([spans])
    assert built.v4_radix is not None and built.v4_pair is not None
    save(built, str(tmp_path / "big.index"), "k")
    mapped = Mapped(str(tmp_path / "big.index"), "k")
    assert isinstance(mapped.v4_radix, memoryview) and mapped.v4_pair == built.v4_pair
    for value in [s.first for s in spans[:500]] + [rng.getrandbits(32) for _ in range(500)]:
        assert mapped.lookup(4, value) == built.lookup(4, value)


def test_a_damaged_or_foreign_file_is_built_again(tmp_path: Path) -> None:
    sets = random_sets(1)
    calls = []

    def build() -> tuple[StaticIndex, None]:
        calls.append(1)
        return StaticIndex(sets), None

    key = digest(["x"])
    first = shared_index(str(tmp_path), key, build)
    again = shared_index(str(tmp_path), key, build)
    assert len(calls) == 1 and again.size == first.size
    path = tmp_path / f"{key}.index"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 8])  # cut short
    shared_index(str(tmp_path), key, build)
    assert len(calls) == 2
    other = digest(["y"])
    os.replace(path, tmp_path / f"{other}.index")  # a file under another name than its own
    shared_index(str(tmp_path), other, build)
    assert len(calls) == 3


def test_the_digest_changes_with_the_tunables(monkeypatch: pytest.MonkeyPatch) -> None:
    before = digest(["a", b"b"])
    assert digest(["a", b"b"]) == before != digest(["ab"])
    monkeypatch.setattr(index_module, "RADIX_MIN", index_module.RADIX_MIN * 2)
    assert digest(["a", b"b"]) != before


def test_processes_of_one_machine_build_an_index_once(tmp_path: Path) -> None:
    """Four processes at once: one builds (the lock), the others map its file."""
    script = f"""
import sys
from flask_allow.addresses import Span
from flask_allow.index import StaticIndex
from flask_allow.indexfile import shared_index

def build():
    with open({str(tmp_path / "builds")!r}, "a") as out:
        out.write("1")
    return StaticIndex([[Span(4, v * 7, v * 7 + 3) for v in range(50000)]]), None

index = shared_index({str(tmp_path / "cache")!r}, "k" * 40, build)
print(index.lookup(4, 7 * 123 + 2))
"""
    env = checkout_environ()
    children = [
        subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [child.communicate(timeout=120)[0].strip() for child in children]
    assert [child.returncode for child in children] == [0] * 4
    assert outputs == ["1"] * 4
    assert (tmp_path / "builds").read_text() == "1"

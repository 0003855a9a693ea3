"""Large lists' indexes shared through ALLOW_INDEX_CACHE: built once per machine, the same answers."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import pytest
from conftest import MakeApp, status

from flask_allow import ConfigError
from flask_allow.builtins import listfile
from flask_allow.indexfile import Mapped


@pytest.fixture(autouse=True)
def small_lists_are_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listfile, "SHARED_MIN", 64)


def write_list(path: Path, seed: int, count: int = 400) -> list[str]:
    rng = random.Random(seed)
    firsts = [1, 23, 45, 67, 89, 101, 134, 156, 178, 199, 211]  # no loopback, no private range
    networks = sorted({f"{rng.choice(firsts)}.{rng.randrange(256)}.{rng.randrange(256)}.0/24" for _ in range(count)})
    path.write_text("# a published list\n" + "\n".join(networks) + "\n2001:db8::/48\n", encoding="utf-8")
    return networks


def rules_for(path: Path) -> list[dict[str, object]]:
    return [{"ALLOW": "localhost"}, {"DENY": f"file:{path}"}, {"ALLOW": "all"}]


def index_files(app: object) -> list[Path]:
    folder = Path(app.instance_path) / "flask_allow_index"  # type: ignore[attr-defined]
    return sorted(folder.glob("*.index")) if folder.exists() else []


def test_a_second_app_maps_the_index_the_first_built(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.txt"
    networks = write_list(path, 1)
    first = make_app({"ADDRESS_RESTRICTION": rules_for(path)})
    [saved] = index_files(first)
    engine = first.extensions["flask_allow"].engine
    assert any(isinstance(segment.index, Mapped) for segment in engine._segments if hasattr(segment, "index"))
    lints = engine.lints

    def no_parsing(data: bytes, where: str) -> None:
        raise AssertionError("the list was parsed although its index is in the cache")

    monkeypatch.setattr(listfile, "parse_data", no_parsing)
    second = make_app({"ADDRESS_RESTRICTION": rules_for(path)}, name="second")
    assert index_files(second) == [saved]
    state = second.extensions["flask_allow"]
    assert state.engine.lints == lints
    assert state.engine.rules[1].matcher.describe() == f"{len(networks) + 1} entries from {path}"
    rng = random.Random(2)
    for network in networks[:50]:
        address = network.replace(".0/24", f".{rng.randrange(256)}")
        assert status(first, address) == status(second, address) == 403
    for address in ("127.0.0.1", "::1", "2001:db8:1::1"):
        assert status(second, address) == 200
    assert status(second, "2001:db8::5") == 403


def test_the_cache_answers_as_a_compile_in_memory(make_app: MakeApp, tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    write_list(path, 3, count=2000)
    shared = make_app({"ADDRESS_RESTRICTION": rules_for(path)})
    alone = make_app({"ADDRESS_RESTRICTION": rules_for(path), "ALLOW_INDEX_CACHE": False}, name="alone")
    assert index_files(alone) == index_files(shared) != []
    rng = random.Random(4)
    for _ in range(3000):
        address = f"{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
        assert shared.extensions["flask_allow"].extension.check(address, app=shared).allowed == (
            alone.extensions["flask_allow"].extension.check(address, app=alone).allowed
        ), address


def test_a_changed_list_gets_a_new_index(make_app: MakeApp, tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    write_list(path, 1)
    app = make_app({"ADDRESS_RESTRICTION": rules_for(path), "ALLOW_WATCH_INTERVAL": 0})
    [before] = index_files(app)
    networks = write_list(path, 5)
    app.extensions["flask_allow"].extension.reload(app)
    assert len(index_files(app)) == 2  # the old one is removed once it is an hour old
    assert status(app, networks[0].replace(".0/24", ".9")) == 403
    assert before in index_files(app)


def test_a_bad_line_in_a_large_list_is_the_rules_error_and_nothing_is_saved(make_app: MakeApp, tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    write_list(path, 1)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("10.0.0.0/33\n")
    with pytest.raises(ConfigError) as caught:
        make_app({"ADDRESS_RESTRICTION": rules_for(path)})
    assert caught.value.location == "ADDRESS_RESTRICTION[1].DENY"
    assert "line 403" in str(caught.value) or "10.0.0.0/33" in str(caught.value)
    assert not list((tmp_path / "instance").rglob("*.index"))


def test_a_folder_that_cannot_be_written_compiles_in_memory(
    make_app: MakeApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "big.txt"
    networks = write_list(path, 1)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the folder should be\n")
    with caplog.at_level(logging.WARNING):
        app = make_app({"ADDRESS_RESTRICTION": rules_for(path), "ALLOW_INDEX_CACHE": str(blocked)})
    assert any("index cache" in r.getMessage() for r in caplog.records)
    assert status(app, networks[0].replace(".0/24", ".1")) == 403


def test_host_bit_warnings_are_said_again_from_the_cache(
    make_app: MakeApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "big.txt"
    write_list(path, 1)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("192.0.2.7/24\n")
    with caplog.at_level(logging.WARNING):
        make_app({"ADDRESS_RESTRICTION": rules_for(path)})
        make_app({"ADDRESS_RESTRICTION": rules_for(path)}, name="again")
    said = [r.getMessage() for r in caplog.records if "host bits" in r.getMessage()]
    assert len(said) == 2, said


@pytest.mark.parametrize("value", [0, True, "", " ", "a\0b", ["x"]])
def test_a_bad_index_cache_is_a_config_error(make_app: MakeApp, value: object) -> None:
    with pytest.raises(ConfigError, match="ALLOW_INDEX_CACHE"):
        make_app({"ALLOW_INDEX_CACHE": value})


def test_a_relative_folder_is_in_the_instance_folder(make_app: MakeApp, tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    write_list(path, 1)
    app = make_app({"ADDRESS_RESTRICTION": rules_for(path), "ALLOW_INDEX_CACHE": "indexes"})
    assert list(Path(app.instance_path, "indexes").glob("*.index"))
    assert os.path.isabs(app.extensions["flask_allow"].index_cache_folder)

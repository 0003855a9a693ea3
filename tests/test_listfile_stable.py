"""A ``file:`` list is applied only once it is complete and stable, and read strictly and in linear time.

A list rewritten in place while the rules are built must never be applied half-written (a cut
``10.53.105.0/24`` read as ``10.53.105.0/2``, an ALLOW list then admitting 1.2.3.4) nor empty (a
file truncated for rewriting, a DENY list then matching nothing). The real thing is tested: a
thread rewrites the file in place, in small slow writes, while ``reload()`` runs in a loop.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest
from conftest import MakeApp
from flask import Flask

from flask_allow import ConfigError
from flask_allow.builtins import listfile
from flask_allow.builtins.listfile import MAX_LINE, parse_list

LISTED = "10.53.105.7"  # in the DENY list in every version of it
STRANGER = "1.2.3.4"  # in no list: denied by the final 'all'


def check(app: Flask, address: str) -> bool:
    """Whether ``app``'s rules allow ``address``."""
    return bool(app.extensions["flask_allow"].extension.check(address, app=app).allowed)


def reload(app: Flask) -> None:
    app.extensions["flask_allow"].extension.reload(app)


# -- empty, incomplete, changing -------------------------------------------------------------


def test_an_empty_list_file_is_never_applied(make_app: MakeApp, tmp_path: Path) -> None:
    path = tmp_path / "block.txt"
    path.write_text("")
    with pytest.raises(ConfigError, match="is empty: a list meant to be empty holds a comment line") as info:
        make_app({"ADDRESS_RESTRICTION": [{"DENY": f"file:{path}"}]})
    assert info.value.location == "ADDRESS_RESTRICTION[0].DENY" and str(path) in str(info.value)

    path.write_text(f"{LISTED}\n")
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": f"file:{path}"}]})
    assert not check(app, LISTED)
    path.write_text("")  # truncated for rewriting: reload() refuses it, and the running rules stay
    with pytest.raises(ConfigError, match="is empty"):
        reload(app)
    assert not check(app, LISTED)


def test_a_list_meant_to_be_empty_holds_a_comment_line(make_app: MakeApp, tmp_path: Path) -> None:
    path = tmp_path / "block.txt"
    path.write_text("# nothing blocked this week\n")
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": f"file:{path}"}]})
    assert check(app, LISTED)


def test_a_recently_written_file_is_read_once_it_has_settled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(listfile, "SETTLE", 0.3)
    path = tmp_path / "block.txt"
    path.write_text("10.0.0.0/8\n")

    def finish() -> None:  # the writer is not done yet when the read begins
        time.sleep(0.1)
        with path.open("a") as handle:
            handle.write("192.0.2.0/24\n")

    writer = threading.Thread(target=finish)
    writer.start()
    started = time.monotonic()
    found, _ = parse_list(str(path))
    writer.join()
    assert time.monotonic() - started >= 0.3  # it waited for the file to stand still
    assert sorted(found) == [(4, 0x0A000000, 0x0AFFFFFF), (4, 0xC0000200, 0xC00002FF)]


def test_a_last_line_without_newline_must_stand_still(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "block.txt"
    path.write_text("10.0.0.0/8\n10.53.105.0/2")  # perhaps cut short: believed once it stays so
    old = time.time_ns() - 10**10
    os.utime(path, ns=(old, old))  # written long ago: no settle wait for the file as such
    monkeypatch.setattr(listfile, "SETTLE", 0.2)

    def finish() -> None:
        time.sleep(0.05)
        with path.open("a") as handle:
            handle.write("4\n")

    writer = threading.Thread(target=finish)
    writer.start()
    found, warnings = parse_list(str(path))
    writer.join()
    assert sorted(found) == [(4, 0x0A000000, 0x0AFFFFFF), (4, 0x0A356900, 0x0A3569FF)]  # /24, not /2
    assert warnings == []

    path.write_text("10.0.0.0/8\n10.53.105.0/24")  # an editor's file without a final newline: fine
    assert len(parse_list(str(path))[0]) == 2


def test_a_file_that_keeps_changing_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(listfile, "SETTLE", 0.05)
    monkeypatch.setattr(listfile, "PATIENCE", 0.5)
    path = tmp_path / "block.txt"
    path.write_text("10.0.0.0/8\n")
    stop = threading.Event()

    def append() -> None:
        with path.open("a") as handle:
            while not stop.is_set():
                handle.write("192.0.2.1\n")
                handle.flush()
                time.sleep(0.01)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        with pytest.raises(ValueError, match=r"kept changing for 0\.5 s; replace list files atomically"):
            parse_list(str(path))
    finally:
        stop.set()
        writer.join()


# -- the real race: in-place rewrites while reload() runs --------------------------------------


def _version(rng: random.Random) -> tuple[str, str]:
    """One version of the DENY and the ALLOW list: LISTED in the first, never STRANGER in either."""
    deny = [f"100.{rng.randrange(64, 128)}.{rng.randrange(256)}.0/24" for _ in range(rng.randrange(4, 24))]
    deny.insert(rng.randrange(len(deny) + 1), "10.53.105.0/24")
    allow = [f"172.{rng.randrange(16, 32)}.{rng.randrange(256)}.0/24" for _ in range(rng.randrange(4, 24))]
    allow.insert(rng.randrange(len(allow) + 1), "10.53.105.0/24")
    return "# deny\n" + "\n".join(deny) + "\n", "# allow\n" + "\n".join(allow) + "\n"


def _rewrite_in_place(path: Path, text: str, rng: random.Random, settle: float) -> None:
    """Truncate, then write ``text`` back in small pieces with pauses shorter than the settle time."""
    data = text.encode()
    with path.open("r+b", buffering=0) as handle:
        handle.truncate(0)
        time.sleep(rng.uniform(0, settle * 0.6))
        at = 0
        while at < len(data):
            step = rng.randrange(1, 40)
            handle.write(data[at : at + step])
            at += step
            time.sleep(rng.uniform(0, settle * 0.6))


def test_in_place_rewrites_during_reloads_never_let_a_listed_client_in(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settle = 0.04
    monkeypatch.setattr(listfile, "SETTLE", settle)
    monkeypatch.setattr(listfile, "PATIENCE", 1.0)
    rng = random.Random(1053)
    deny, allow = tmp_path / "deny.txt", tmp_path / "allow.txt"
    deny_text, allow_text = _version(rng)
    deny.write_text(deny_text)
    allow.write_text(allow_text)
    app = make_app({"ADDRESS_RESTRICTION": [{"DENY": f"file:{deny}"}, {"ALLOW": f"file:{allow}"}, {"DENY": "all"}]})
    stop = threading.Event()
    wrong: list[str] = []

    def writer() -> None:
        writes = random.Random(rng.random())
        while not stop.is_set():
            deny_text, allow_text = _version(writes)
            _rewrite_in_place(deny, deny_text, writes, settle)
            _rewrite_in_place(allow, allow_text, writes, settle)
            time.sleep(writes.uniform(0, 4 * settle))  # now and then complete long enough to be read

    def checker() -> None:
        while not stop.is_set():
            for address in (LISTED, STRANGER):
                if check(app, address):
                    wrong.append(address)
            time.sleep(0.001)

    threads = [threading.Thread(target=writer), threading.Thread(target=checker)]
    for thread in threads:
        thread.start()
    applied = refused = 0
    try:
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline and not wrong:
            try:
                reload(app)
            except ConfigError:
                refused += 1
            else:
                applied += 1
            for address in (LISTED, STRANGER):
                if check(app, address):
                    wrong.append(address)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert wrong == [], f"allowed while the lists were rewritten: {sorted(set(wrong))}"
    assert applied >= 3, (applied, refused)  # the complete versions were taken up


# -- strict and linear parsing ------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "10.0.0.0/\uff18",  # full-width 8
        "10.0.0.0/\u0668",  # Arabic-Indic 8
        "10.0.0.0/\U0001d7d6",  # mathematical bold 8
        "\uff11\uff10.0.0.0/8",  # full-width 10
        "10.0.0.1-10.0.0.\u0669",  # Arabic-Indic 9
        "2001:db8::/\uff13\uff12",  # full-width 32
        "::ffff:10.0.0.1/1\uff120",
    ],
)
def test_non_ascii_digits_are_an_error_naming_the_file_and_line(make_app: MakeApp, tmp_path: Path, line: str) -> None:
    path = tmp_path / "block.txt"
    path.write_text(f"192.0.2.1\n# a comment\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        make_app({"ADDRESS_RESTRICTION": [{"DENY": f"file:{path}"}]})
    message = str(info.value)
    assert f"{path}, line 3: " in message and "ASCII" in message
    with pytest.raises(ConfigError, match="ADDRESS_RESTRICTION"):  # the same text as a rule: an error too
        make_app({"ADDRESS_RESTRICTION": [{"DENY": line}]})


@pytest.mark.parametrize("block", [None, 7], ids=["whole-blocks", "lines-across-blocks"])
def test_a_line_longer_than_the_cap_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int | None
) -> None:
    if block is not None:
        monkeypatch.setattr(listfile, "_BLOCK", block)
    path = tmp_path / "block.txt"
    fits = "# " + "x" * (MAX_LINE - 2)
    path.write_text(f"10.0.0.1\n{fits}\n10.0.0.2\n")
    assert len(parse_list(str(path))[0]) == 2
    path.write_text(f"10.0.0.1\n{fits}\n{fits}x\n10.0.0.2\n")
    with pytest.raises(ValueError, match=f"line 3: longer than {MAX_LINE} characters"):
        parse_list(str(path))


def test_a_huge_line_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    """The old reader joined a growing tail to every block: a 50 MiB line took 16 s (quadratic)."""
    path = tmp_path / "block.txt"
    with path.open("w") as handle:
        handle.write("10.0.0.1\n")
        handle.write("1" * (8 << 20))
    with path.open() as handle:
        lines = listfile._Lines(handle, str(path), 1 << 16)
        with pytest.raises(ValueError, match="line 2: longer than"):
            for _ in lines:
                pass
        assert lines.read <= 2 * (1 << 16)  # stopped at the first blocks past the cap


def test_an_undecodable_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "block.txt"
    path.write_bytes(b"10.0.0.1\n10.0.0.2\n10.0.0.3 # caf\xe9\n")
    with pytest.raises(ValueError, match=r"line 3: not UTF-8 text"):
        parse_list(str(path))

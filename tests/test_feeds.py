"""url: feeds against real HTTP and HTTPS servers on 127.0.0.1 (tests/feed_server.py)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from conftest import BLOCKLISTS, MakeApp, checkout_environ, flask_allow_command, get, require_blocklists, status
from feed_server import Answer, FeedServer
from test_live import Recorder, eventually, networks

from flask_allow import ConfigError
from flask_allow.feeds.cache import CachedFeed

FAST = 0.05


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as found:
        yield found


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[FeedServer]:
    with FeedServer(tls=ca.issue_cert("127.0.0.1")) as found:
        yield found


@pytest.fixture
def bundle(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def feed_config(url: str, cache: Path, action: str = "DENY", **more: Any) -> dict[str, Any]:
    return {
        "ADDRESS_RESTRICTION": [{action: f"url:{url}"}],
        "ALLOW_FEED_CACHE_DIR": str(cache),
        "ALLOW_WATCH_INTERVAL": FAST,
        **more,
    }


def copy_of(url: str, cache: Path) -> CachedFeed:
    return CachedFeed(str(cache), url)


def test_an_https_feed_is_fetched_verified_and_cached(
    make_app: MakeApp, tls_server: FeedServer, bundle: str, tmp_path: Path
) -> None:
    url = tls_server.answer("/ips-v4", "192.0.2.0/24\n198.51.100.7\n")
    app = make_app(feed_config(url, tmp_path / "feeds", ALLOW_FEED_CA_BUNDLE=bundle))
    assert status(app, "192.0.2.9") == 403 and status(app, "198.51.100.7") == 403 and status(app, "203.0.113.1") == 200
    cached = copy_of(url, tmp_path / "feeds")
    assert cached.exists() and Path(cached.path).read_text() == "192.0.2.0/24\n198.51.100.7\n"
    meta = cached.meta()
    assert meta["etag"] == tls_server.answers["/ips-v4"].etag and meta["entries"] == 2
    assert meta["last_modified"] == tls_server.answers["/ips-v4"].last_modified


def test_an_untrusted_certificate_fails_init_app(make_app: MakeApp, tls_server: FeedServer, tmp_path: Path) -> None:
    url = tls_server.answer("/list", "192.0.2.0/24\n")
    with pytest.raises(ConfigError, match=r"ADDRESS_RESTRICTION\[0\].DENY.*no cached copy.*tls: TLS"):
        make_app(feed_config(url, tmp_path / "feeds"))  # the system store does not know the test CA


def test_plain_http_warns_at_start_up(make_app: MakeApp, server: FeedServer, tmp_path: Path, caplog: Any) -> None:
    url = server.answer("/list", "192.0.2.0/24\n")
    make_app(feed_config(url, tmp_path / "feeds"))
    assert any("plain http" in r.getMessage() and url in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (Answer(b"", status=500), "HTTP 500"),
        (Answer(b"192.0.2.0/24\n", delay=1.5), "timeout"),
        (Answer(b"192.0.2.0/24\n" * 200), "too large"),
        (Answer(b"192.0.2.0/24\n", truncate=100), "truncated"),
        (Answer(b"192.0.2.0/24\nnot an address\n"), "unparsable"),
        (Answer(b""), "empty"),
    ],
)
def test_no_copy_and_a_failed_fetch_fail_init_app(
    make_app: MakeApp, server: FeedServer, tmp_path: Path, answer: Answer, expected: str
) -> None:
    url = server.answer("/list", answer)
    config = feed_config(url, tmp_path / "feeds", ALLOW_FEED_TIMEOUT=0.5, ALLOW_FEED_MAX_BYTES=1000)
    with pytest.raises(ConfigError, match=expected):
        make_app(config)
    assert not copy_of(url, tmp_path / "feeds").exists()


def test_feed_not_required_starts_empty_and_fills_in_later(
    make_app: MakeApp, server: FeedServer, tmp_path: Path, caplog: Any
) -> None:
    url = server.answer("/list", Answer(b"", status=503))
    config = feed_config(url, tmp_path / "feeds", ALLOW_FEED_REQUIRED=False, ALLOW_FEED_INTERVAL=0.1)
    app = make_app(config)
    assert status(app, "192.0.2.1") == 200
    assert any("starting with an empty list" in r.getMessage() for r in caplog.records)
    server.answer("/list", "192.0.2.0/24\n")
    eventually(lambda: status(app, "192.0.2.1") == 403)


def test_a_cached_copy_starts_without_the_network(make_app: MakeApp, server: FeedServer, tmp_path: Path) -> None:
    url = server.answer("/list", "192.0.2.0/24\n")
    cache = tmp_path / "feeds"
    make_app(feed_config(url, cache, ALLOW_FEED_INTERVAL=3600), name="first")
    assert len(server.requests("/list")) == 1
    server.answer("/list", Answer(b"198.51.100.0/24\n", delay=1.0))  # slow now: start-up must not wait on it
    meta = copy_of(url, cache).meta()
    copy_of(url, cache).write_meta({**meta, "fetched_at": 0})  # stale: refreshed in the background
    app = make_app(feed_config(url, cache, ALLOW_FEED_INTERVAL=3600), name="second")
    assert len(server.requests("/list")) == 1  # init_app returned before the slow answer came
    assert status(app, "192.0.2.1") == 403  # the copy is in force at once
    eventually(lambda: status(app, "198.51.100.1") == 403)  # then the refresh, picked up by the watcher
    assert status(app, "192.0.2.1") == 200


def test_refreshes_are_conditional_and_a_304_changes_nothing(
    make_app: MakeApp, server: FeedServer, tmp_path: Path
) -> None:
    url = server.answer("/list", "192.0.2.0/24\n")
    recorder = Recorder()
    app = make_app(feed_config(url, tmp_path / "feeds", ALLOW_FEED_INTERVAL=0.1), plugins=[recorder])
    state = app.extensions["flask_allow"]
    cached = copy_of(url, tmp_path / "feeds")
    inode = os.stat(cached.path).st_ino
    eventually(lambda: len(server.requests("/list")) >= 4)
    first, *later = server.requests("/list")
    assert first.if_none_match is None and first.status == 200
    assert all(s.if_none_match == server.answers["/list"].etag and s.status == 304 for s in later)
    assert all(s.if_modified_since == server.answers["/list"].last_modified for s in later)
    assert os.stat(cached.path).st_ino == inode  # not rewritten
    assert app.extensions["flask_allow"] is state  # no rebuild
    assert recorder.changes == [("init_app", 1)]
    server.answer("/list", "192.0.2.0/24\n203.0.113.0/24\n")  # a new version: a 200, then a swap
    eventually(lambda: status(app, "203.0.113.5") == 403)


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (Answer(b"", status=500), "http"),
        (Answer(b"192.0.2.0/24\n", delay=1.0), "timeout"),
        (Answer(b"192.0.2.0/24\n" * 200), "too large"),
        (Answer(b"192.0.2.0/24\n", truncate=50), "truncated"),
        (Answer(b"192.0.2.0/24\n300.1.1.1\n"), "unparsable"),
        (Answer(networks(3).encode()), "shrink"),
    ],
)
def test_a_failed_refresh_keeps_the_last_good_copy_and_is_logged_once(
    make_app: MakeApp, server: FeedServer, tmp_path: Path, caplog: Any, answer: Answer, kind: str
) -> None:
    caplog.set_level(logging.INFO)
    url = server.answer("/list", networks(100))
    recorder = Recorder()
    config = feed_config(url, tmp_path / "feeds", ALLOW_FEED_INTERVAL=0.1, ALLOW_FEED_TIMEOUT=0.4)
    app = make_app({**config, "ALLOW_FEED_MAX_BYTES": 2000}, plugins=[recorder])
    cached = copy_of(url, tmp_path / "feeds")
    before = Path(cached.path).read_bytes()
    server.answer("/list", answer)
    eventually(lambda: cached.meta().get("failures", 0) >= 3, timeout=15)  # several tries: backoff <= interval
    assert Path(cached.path).read_bytes() == before
    assert status(app, "10.0.0.99") == 403
    assert cached.meta()["last_error"].startswith(kind)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    errors = [message for message in errors if f"{url} refused" in message]
    assert len(errors) == 1 and f"({kind})" in errors[0] and "last good copy stays in force" in errors[0], errors
    assert [e[0] for e in recorder.errors] == ["feed_refused"]
    server.answer("/list", networks(101))  # the outage ends
    eventually(lambda: status(app, "10.0.0.100") == 403)
    assert "last_error" not in cached.meta()
    assert any("is back" in r.getMessage() for r in caplog.records)


def test_a_feed_shrink_is_applied_after_the_hold_time(make_app: MakeApp, server: FeedServer, tmp_path: Path) -> None:
    url = server.answer("/list", networks(100))
    config = feed_config(url, tmp_path / "feeds", ALLOW_FEED_INTERVAL=0.1, ALLOW_LIST_SHRINK_HOLD=0.8)
    app = make_app(config)
    server.answer("/list", networks(10))
    eventually(lambda: "shrink" in copy_of(url, tmp_path / "feeds").meta().get("last_error", ""))
    held_at = time.monotonic()
    assert status(app, "10.0.0.50") == 403
    eventually(lambda: status(app, "10.0.0.50") == 200)
    assert time.monotonic() - held_at > 0.5


def test_trusted_proxies_from_a_feed(make_app: MakeApp, tls_server: FeedServer, bundle: str, tmp_path: Path) -> None:
    """As behind Cloudflare: ALLOW_TRUSTED_PROXIES = ["url:https://www.cloudflare.com/ips-v4", ...]."""
    v4 = tls_server.answer("/ips-v4", "173.245.48.0/20\n103.21.244.0/22")  # no final newline, as Cloudflare
    v6 = tls_server.answer("/ips-v6", "2400:cb00::/32\n2606:4700::/32")
    app = make_app(
        {
            "ADDRESS_RESTRICTION": [{"DENY": "198.51.100.0/24"}],
            "ALLOW_TRUSTED_PROXIES": [f"url:{v4}", f"url:{v6}"],
            "ALLOW_PROXY_HEADER": "CF-Connecting-IP",
            "ALLOW_FEED_CA_BUNDLE": bundle,
            "ALLOW_FEED_CACHE_DIR": str(tmp_path / "feeds"),
        }
    )

    def via(peer: str, client: str) -> int:
        return int(get(app, peer, headers={"CF-Connecting-IP": client}).status_code)

    assert via("173.245.48.1", "198.51.100.1") == 403  # an edge: the header names the client
    assert via("2606:4700::1", "198.51.100.1") == 403
    assert via("192.0.2.1", "198.51.100.1") == 200  # not an edge: the header is not believed


def test_the_shipped_blocklists_served_as_feeds(make_app: MakeApp, server: FeedServer, tmp_path: Path) -> None:
    require_blocklists()
    names = ["firehol_level1.netset", "drop.txt", "dropv6.txt", "tor_exits.ipset"]
    urls = [server.answer(f"/{name}", BLOCKLISTS / name) for name in names]
    app = make_app(
        {
            "ADDRESS_RESTRICTION": [{"DENY": [f"url:{url}" for url in urls]}],
            "ALLOW_FEED_CACHE_DIR": str(tmp_path / "feeds"),
        }
    )
    state = app.extensions["flask_allow"]
    counts = {source.url: source.entries for source in state.sources.values()}
    assert all(counts[url] > 0 for url in urls)
    for name in names:
        first = _first_entry(BLOCKLISTS / name)
        assert not state.extension.check(first, app=app).allowed, (name, first)


def _first_entry(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = line.split("#")[0].split(";")[0].strip()
        if entry:
            return entry.split("/")[0]
    raise AssertionError(f"no entry in {path}")


def test_without_the_extra_a_url_rule_says_what_to_install(
    make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "urllib3", None)  # as if not installed: ``import urllib3`` fails
    with pytest.raises(ConfigError, match=r"pip install Flask-Allow\[feeds\]"):
        make_app({"ADDRESS_RESTRICTION": [{"DENY": "url:https://127.0.0.1:9/list"}]})


@pytest.mark.parametrize("value", ["url:ftp://127.0.0.1/list", "url:https://", "url:nothing"])
def test_a_bad_url_is_a_config_error(make_app: MakeApp, value: str) -> None:
    with pytest.raises(ConfigError, match=r"ADDRESS_RESTRICTION\[0\].DENY.*not an http:// or https:// URL"):
        make_app({"ADDRESS_RESTRICTION": [{"DENY": value}]})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ALLOW_FEED_INTERVAL", 0),
        ("ALLOW_FEED_TIMEOUT", "10"),
        ("ALLOW_FEED_MAX_BYTES", 0),
        ("ALLOW_FEED_CACHE_DIR", 5),
        ("ALLOW_FEED_CA_BUNDLE", "/nonexistent/ca.pem"),
        ("ALLOW_FEED_REQUIRED", "no"),
    ],
)
def test_bad_feed_settings_are_config_errors(make_app: MakeApp, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        make_app({key: value})


WORKER = """
import json, os, sys
from flask import Flask
from flask_allow import FlaskAllow
app = Flask("worker", root_path=os.getcwd())
app.config.update(json.loads(os.environ["FEED_CONFIG"]))
FlaskAllow(app)
print("denied" if not app.extensions["flask_allow"].extension.check("192.0.2.1", app=app).allowed else "allowed")
"""


def test_several_processes_fetch_once(server: FeedServer, tmp_path: Path) -> None:
    """Processes starting together with no copy: one fetches, the others wait for its copy."""
    url = server.answer("/list", Answer(b"192.0.2.0/24\n", delay=0.5))
    config = feed_config(url, tmp_path / "feeds", ALLOW_WATCH_INTERVAL=0)
    env = {**checkout_environ(), "FEED_CONFIG": json.dumps(config)}
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    children = [
        subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [child.communicate(timeout=60)[0].strip() for child in children]
    assert outputs == ["denied"] * 4
    assert len(server.requests("/list")) == 1


def test_the_cli_shows_and_refreshes_feeds(server: FeedServer, tmp_path: Path) -> None:
    url = server.answer("/list", networks(100))
    config = feed_config(url, tmp_path / "feeds")
    blocklist = tmp_path / "block.txt"
    blocklist.write_text("203.0.113.0/24\n", encoding="utf-8")
    config["ADDRESS_RESTRICTION"].append({"DENY": f"file:{blocklist}"})
    (tmp_path / "feedapp.py").write_text(
        "import json, os\nfrom flask import Flask\nfrom flask_allow import FlaskAllow\n"
        "app = Flask('feedapp')\napp.config.update(json.loads(os.environ['FEED_CONFIG']))\nFlaskAllow(app)\n",
        encoding="utf-8",
    )
    env = {**checkout_environ(), "FEED_CONFIG": json.dumps(config)}
    rules = flask_allow_command(tmp_path, "feedapp", "rules", environ=env)
    assert rules.returncode == 0, rules.stderr
    assert f"ADDRESS_RESTRICTION[0].DENY: feed {url}" in rules.stdout
    assert "entries 100" in rules.stdout and server.answers["/list"].etag in rules.stdout
    assert "next refresh due" in rules.stdout
    assert f"ADDRESS_RESTRICTION[1].DENY: file {blocklist}" in rules.stdout and "entries 1," in rules.stdout
    server.answer("/list", networks(10))  # a shrink: an explicit refresh applies it
    refreshed = flask_allow_command(tmp_path, "feedapp", "feeds", "--refresh", environ=env)
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
    assert "refresh: fetched" in refreshed.stdout and "entries 10," in refreshed.stdout
    server.answer("/list", Answer(b"", status=500))
    failed = flask_allow_command(tmp_path, "feedapp", "feeds", "--refresh", environ=env)
    assert failed.returncode == 1
    assert "refresh: failed (http: HTTP 500" in failed.stdout
    rules = flask_allow_command(tmp_path, "feedapp", "rules", environ=env)
    assert "refused: http: HTTP 500" in rules.stdout and "the last good copy is in force" in rules.stdout

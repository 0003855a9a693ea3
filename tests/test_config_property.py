"""Every configuration key's bad value ends as a ``ConfigError``: never another exception from ``init_app``.

``ALLOW_DNS_NAMESERVERS`` holding a NUL byte raised a bare ``ValueError``. For EVERY key of
``flask_allow.config.DEFAULTS`` (the dict is iterated, so keys added later are covered too),
arbitrary JSON-like values (None, bools, ints, floats with nan and inf, strings with NUL and
non-ASCII, lists, dicts, nested) either start the app or raise ``ConfigError``.

Strings never hold a slash, except curated ones: ``ACCESS_LOG`` writes where it is told, and
the test runs in a scratch directory it must not leave.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import close_app, new_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_allow import ConfigError, FlaskAllow
from flask_allow.config import ACCESS_LOG_DEFAULTS, DEFAULTS

# Values that reach deeper than random text: rule syntax, option names, the NUL and digits
# of other scripts. Paths are relative (the scratch directory) or read-only ones.
CURATED = [
    "",
    " ",
    "\x00",
    "127.0.0.1",
    "127.0.0.1\x00",
    "::1",
    "10.0.0.0/8",
    "10.0.0.0/\uff18",
    "\uff11\uff10.0.0.1",
    "fe80::1%eth0",
    "all",
    "localhost",
    "unix:",
    "file:list.txt",
    "file:missing.txt",
    "file:/etc/hostname",
    "allow",
    "deny",
    "ignore",
    "DENY",
    "ALLOW",
    "X-Forwarded-For",
    "Forwarded",
    "example.com",
    "*.example.com",
    "ptr:crawl.example.com",
    "access.log",
    "utf-8",
    "latin-1",
    "base64",
    "%(message)s",
    "%(",
    "%(asctime)s %(nope)s",
    "flask_allow.builtins.keywords",
    "no_such_module_here",
    "caf\u00e9",
    "\u202e",
]
strings = st.text(max_size=12).map(lambda text: text.replace("/", "")) | st.sampled_from(CURATED)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, -1, 53, 403, 65535, 65536, 2**31, 2**63])
    | st.floats(allow_nan=True, allow_infinity=True)
    | strings
)
names = st.sampled_from(["ALLOW", "DENY", *ACCESS_LOG_DEFAULTS]) | strings
json_like = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(names, children, max_size=4),
    max_leaves=10,
)

# Name servers on loopback where nothing answers (the discard port), no hosts file, short
# timeouts: a value that names a host resolves against nothing beyond this machine, quickly.
BASE = {
    "ALLOW_LOAD_ENTRY_POINTS": False,
    "ALLOW_DNS_NAMESERVERS": ["127.0.0.1"],
    "ALLOW_DNS_PORT": 9,
    "ALLOW_DNS_HOSTS_FILE": None,
    "ALLOW_DNS_TIMEOUT": 0.2,
}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config-property")
    (path / "list.txt").write_text("10.0.0.0/8\n")
    return path


def starts_or_refuses(scratch: Path, config: dict[str, Any]) -> None:
    """``init_app`` with ``config`` either succeeds or raises ``ConfigError`` (run in ``scratch``)."""
    app = new_app({**BASE, **config}, root_path=str(scratch))
    before = set(sys.modules)
    cwd = os.getcwd()
    os.chdir(scratch)
    try:
        FlaskAllow(app)
    except ConfigError as error:
        assert "flask_allow" not in app.extensions
        assert str(error)
    finally:
        os.chdir(cwd)
        close_app(app)
        for name in set(sys.modules) - before:  # a module ALLOW_PLUGINS imported: imported afresh next time
            if not name.startswith("flask_allow."):
                del sys.modules[name]


EXAMPLES = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOAK = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("key", sorted(DEFAULTS))
@EXAMPLES
@given(value=json_like)
def test_every_value_of_every_key_starts_the_app_or_is_a_config_error(scratch: Path, key: str, value: Any) -> None:
    starts_or_refuses(scratch, {key: value})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=st.dictionaries(st.sampled_from(sorted(DEFAULTS)), json_like, min_size=2))
def test_many_keys_at_once_start_the_app_or_are_one_config_error(scratch: Path, config: dict[str, Any]) -> None:
    starts_or_refuses(scratch, config)


@pytest.mark.soak
@pytest.mark.parametrize("key", sorted(DEFAULTS))
@SOAK
@given(value=json_like)
def test_soak_every_value_of_every_key(scratch: Path, key: str, value: Any) -> None:
    starts_or_refuses(scratch, {key: value})

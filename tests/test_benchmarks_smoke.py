"""Every benchmark script runs (``--quick``, as a subprocess), prints its table and writes its JSON.

No timing is asserted: speed is what the scripts report, not what tests check. server.py and
reload.py start gunicorn on 127.0.0.1 (the test extra installs it); server.py also checks that the
queued access log loses no line when gunicorn is stopped with SIGTERM, and fails if one is lost.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"

SCRIPTS = {
    "decisions.py": [
        "## Decision time per client address",
        "## Building from a list file",
        "control:",
        "## A list split by one dynamic rule",
    ],
    "preload.py": ["## Starting gunicorn with 2 workers", "--preload ÷ as usual"],
    "requests.py": ["## Request time against the bare app", "bare (control)", "access log lines"],
    "server.py": ["## Throughput against the bare app", "bare (control)", "queued access log after SIGTERM"],
    "reload.py": ["## Latency of requests overlapping a reload", "control: p99 quiet ÷ quiet"],
    "live.py": ["## Latency of requests overlapping a watcher swap", "control: off ÷ off"],
    "logcost.py": ["## Against the bare app", "bare (control)", "every log holds one line per request"],
    "metrics.py": ["## Request time with the metrics plugin against without it", "decisions counted:"],
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_benchmark_runs_quick_and_prints_its_table(script: str, tmp_path: Path) -> None:
    if script in ("server.py", "reload.py", "preload.py", "live.py"):
        pytest.importorskip("gunicorn")
    out, chart = tmp_path / "result.json", tmp_path / "chart.png"
    command = [sys.executable, str(BENCHMARKS / script), "--quick", "--json", str(out)]
    if script == "decisions.py":
        command += ["--chart", str(chart)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for expected in SCRIPTS[script]:
        assert expected in done.stdout, done.stdout
    assert "- machine:" in done.stdout and "- versions:" in done.stdout
    document = json.loads(out.read_text())
    assert document["benchmark"] == script.removesuffix(".py")
    assert document["machine"]["python"] and document["versions"]["Flask-Allow"]
    if script == "decisions.py":
        if importlib.util.find_spec("matplotlib") is None:
            assert "no chart: matplotlib is not installed" in done.stdout
        else:
            assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

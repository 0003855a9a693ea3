"""benchmarks/geoip.py runs (``--quick``, as a subprocess), prints its tables and writes its JSON.

No timing is asserted: the ratio is what the script reports. It fails by itself when the country
rule and the file rule decide differently, or when either is not compiled into the index.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


def test_the_geoip_benchmark_runs_quick(tmp_path: Path) -> None:
    out = tmp_path / "geoip.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "geoip.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for expected in ("## Decision time, country: rule against file: rule", "file: rule (control)", "## Building"):
        assert expected in done.stdout, done.stdout
    document = json.loads(out.read_text())
    assert document["benchmark"] == "geoip" and document["us"] > 0

"""What every benchmark script shares: the machine and versions, seeded test data, interleaved
timing with per-round ratios, and printing a table (Markdown) or writing JSON.

Ratios are always taken within one round (the variant and its baseline measured back to back),
and every table carries a control row (the baseline against itself, interleaved the same way),
so the noise of a shared machine shows next to each figure.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib.metadata
import ipaddress
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BLOCKLISTS = REPO.parent / "shared" / "blocklists"
DISTRIBUTIONS = ("Flask-Allow", "Flask", "Werkzeug", "pluggy", "pytricia", "netaddr", "gunicorn", "matplotlib")


# -- the machine -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    commit = None
    with contextlib.suppress(OSError):
        commit = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
        ).stdout.strip()
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory": memory,
        "load": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "commit": commit or None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def print_header(title: str, notes: Iterable[str] = ()) -> None:
    info = machine()
    print(f"# {title}\n")
    print(f"- machine: {info['cpu']}, {info['cpus']} CPUs, {info['memory']}, load {info['load']}")
    print(f"- {info['python']} on {info['platform']}; commit {info['commit']}; {info['date']}")
    print("- versions: " + ", ".join(f"{k} {v}" for k, v in versions().items() if v))
    for note in notes:
        print(f"- {note}")
    print()


# -- arguments and output ------------------------------------------------------------------------


def arguments(description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, few rounds (seconds)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the generated data")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def write_json(path: str | None, benchmark: str, args: argparse.Namespace, results: dict[str, Any]) -> None:
    if not path:
        return
    document = {
        "benchmark": benchmark,
        "machine": machine(),
        "versions": versions(),
        "arguments": {k: v for k, v in vars(args).items() if k != "json"},
        **results,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nJSON written to {path}")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> str:
    """A Markdown table, printed and returned."""
    text_rows = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text_rows)) if text_rows else len(h) for i, h in enumerate(headers)]
    lines = []
    if title:
        lines += [f"## {title}", ""]
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in text_rows:
        lines.append("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    return text


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# -- timing ----------------------------------------------------------------------------------------


def interleave(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run each variant once per round, the order rotated each round; collect what each returns.

    A variant returns its own measurement (seconds per operation); running all variants back to
    back within a round exposes them to the same moment of a noisy machine.
    """
    names = list(variants)
    found: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            found[name].append(variants[name]())
    return found


def request_batches(
    apps: dict[str, Any],
    batch: int,
    address: str,
    clock: Callable[[], float] = time.perf_counter,
    base_urls: dict[str, str] | None = None,
) -> dict[str, Callable[[], float]]:
    """Per app, a run of ``batch`` GETs of ``/`` from ``address`` through Flask's test client,
    returning seconds per request by ``clock``; each app must answer 200, so all do the same work
    after the guard. ``base_urls`` gives an app another Host than ``localhost`` (a port, say)."""
    variants = {}
    for name, app in apps.items():
        client = app.test_client()
        environ = {"REMOTE_ADDR": address}
        base_url = (base_urls or {}).get(name, "http://localhost")
        status = client.get("/", base_url=base_url, environ_base=environ).status_code
        if status != 200:
            raise SystemExit(f"{name}: status {status}")

        def run(client: Any = client, environ: dict[str, str] = environ, base_url: str = base_url) -> float:
            start = clock()
            for _ in range(batch):
                client.get("/", base_url=base_url, environ_base=environ)
            return (clock() - start) / batch

        variants[name] = run
    for run in variants.values():  # warm up
        run()
    return variants


def timed_gets(
    app: Any, batch: int, environ: dict[str, str], clock: Callable[[], float] = time.perf_counter
) -> Callable[[], float]:
    """A variant for ``interleave``: ``batch`` GETs of ``/`` through the app's test client, seconds each."""
    client = app.test_client()

    def run() -> float:
        start = clock()
        for _ in range(batch):
            client.get("/", environ_base=environ)
        return (clock() - start) / batch

    return run


def ratio(results: dict[str, list[float]], name: str, baseline: str) -> tuple[float, float, float]:
    """Median, lowest and highest of the per-round ratios ``name / baseline``."""
    ratios = sorted(a / b for a, b in zip(results[name], results[baseline], strict=True) if b)
    if not ratios:
        return (float("nan"),) * 3
    return statistics.median(ratios), ratios[0], ratios[-1]


def ratio_rows(
    found: dict[str, list[float]], baseline: str, scale: float, baselines: dict[str, str] | None = None
) -> list[list[Any]]:
    """Per variant of ``interleave``: its name, median time times ``scale``, its ratio to ``baseline``
    (or to its own in ``baselines``; median of the rounds' ratios, three decimals) and their range."""
    rows = []
    for name, values in found.items():
        middle, low, high = ratio(found, name, (baselines or {}).get(name, baseline))
        rows.append([name, statistics.median(values) * scale, f"{middle:.3f}", spread(low, high)])
    return rows


def spread(low: float, high: float) -> str:
    return f"{low:.2f}-{high:.2f}"


def per_op(run: Callable[[], Any], count: int) -> float:
    """Seconds per operation of ``run`` (which does ``count`` operations)."""
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / count


# -- data ------------------------------------------------------------------------------------------


def random_networks(count: int, seed: int, family: int = 4) -> list[str]:
    """Seeded random networks shaped like published blocklists, in random order.

    IPv4: 70 % single addresses, 20 % /24, 10 % /20 to /31. IPv6 (under 2000::/3): half single
    addresses, half /32, /48, /56 or /64.
    """
    rnd = random.Random(seed)
    found = []
    for _ in range(count):
        pick = rnd.random()
        if family == 4:
            length = 32 if pick < 0.7 else 24 if pick < 0.9 else rnd.randint(20, 31)
            value = rnd.getrandbits(32) & ~((1 << (32 - length)) - 1)
            text = str(ipaddress.IPv4Address(value))
            found.append(text if length == 32 else f"{text}/{length}")
        else:
            length = 128 if pick < 0.5 else rnd.choice((32, 48, 56, 64))
            value = ((0x2000 << 112) | rnd.getrandbits(125)) & ~((1 << (128 - length)) - 1)
            text = str(ipaddress.IPv6Address(value))
            found.append(text if length == 128 else f"{text}/{length}")
    return found


def write_list(path: Path, networks: Sequence[str]) -> Path:
    path.write_text("# generated by benchmarks/_common.py (seeded)\n" + "\n".join(networks) + "\n")
    return path


def random_clients(count: int, seed: int, family: int = 4) -> list[str]:
    """Distinct random client addresses (IPv4: anywhere; IPv6: under 2000::/3)."""
    rnd = random.Random(seed)
    if family == 4:
        values = rnd.sample(range(1 << 32), count)
        return [str(ipaddress.IPv4Address(v)) for v in values]
    return list(dict.fromkeys(str(ipaddress.IPv6Address((0x2000 << 112) | rnd.getrandbits(125))) for _ in range(count)))


def zipf_stream(clients: Sequence[str], length: int, seed: int, exponent: float = 1.0) -> list[str]:
    """``length`` requests from ``clients`` with Zipf-distributed popularity (rank r: 1 / r**s)."""
    rnd = random.Random(seed)
    weights = [1.0 / (rank**exponent) for rank in range(1, len(clients) + 1)]
    return rnd.choices(clients, weights=weights, k=length)


def fresh(addresses: Sequence[str]) -> list[str]:
    """New string objects with the same text (as each request brings its own; no cached hash)."""
    return [address.encode().decode() for address in addresses]


def rss() -> int:
    """This process's resident memory in bytes, after giving freed memory back where possible."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def python_child(args: Sequence[str], timeout: float = 600) -> dict[str, Any]:
    """Run this Python on ``args`` and read the JSON object it prints last."""
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False, cwd=str(REPO)
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])

"""Decision cost against N networks: flask_allow, pytricia, netaddr and a 2.0.x-style linear loop.

For N networks in one list file (seeded random networks; N up to 1,000,000), each implementation
decides for a client address string, parsing included: flask_allow through ``Engine.lookup`` (a
``file:`` rule; its index searched in C, and again in Python as without a C compiler), pytricia
through ``PyTricia.get``, netaddr through ``in IPSet``, and the 2.0.x loop as ``ip_address()``
then ``ip in network`` for each network in turn. Two client streams:
distinct random addresses, and a Zipf-distributed stream over 100,000 clients (s = 1). Each pass
gets new string objects, as each request does. Then the build (time, retained memory) of each, in
a fresh child process per build. Every ratio is per round, the two measured back to back, with a
pytricia-against-pytricia control row.

    python benchmarks/decisions.py [--quick] [--json PATH] [--chart PATH]
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as common

Lookup = Callable[[str], Any]


# -- the implementations -------------------------------------------------------------------------


def entries(path: Path) -> list[str]:
    found = []
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line and line[0] not in "#;":
                found.append(line)
    return found


def build_flask_allow(path: Path, family: int, pure: bool = False) -> tuple[Lookup, Any]:
    from flask import Flask

    from flask_allow import FlaskAllow
    from flask_allow.clookup import ENVIRON_KEY

    app = Flask("bench")
    app.config.update(ADDRESS_RESTRICTION=[{"DENY": f"file:{path}"}], ALLOW_LOAD_ENTRY_POINTS=False)
    saved = os.environ.pop(ENVIRON_KEY, None)
    if pure:
        os.environ[ENVIRON_KEY] = "1"
    try:
        FlaskAllow(app)
    finally:
        os.environ.pop(ENVIRON_KEY, None)
        if saved is not None:
            os.environ[ENVIRON_KEY] = saved
    engine = app.extensions["flask_allow"].engine
    if engine.searched_in != ("Python" if pure else "C"):
        raise SystemExit(f"flask_allow searches in {engine.searched_in} here (is flask_allow._lookup built?)")
    return engine.lookup, app


def build_flask_allow_python(path: Path, family: int) -> tuple[Lookup, Any]:
    return build_flask_allow(path, family, pure=True)


def build_pytricia(path: Path, family: int) -> tuple[Lookup, Any]:
    import pytricia

    tree = pytricia.PyTricia(32 if family == 4 else 128)
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line and line[0] not in "#;":
                tree.insert(line, True)
    return tree.get, tree


def build_netaddr(path: Path, family: int) -> tuple[Lookup, Any]:
    import netaddr

    found = netaddr.IPSet(entries(path))
    return found.__contains__, found


def build_linear(path: Path, family: int) -> tuple[Lookup, Any]:
    networks = [ipaddress.ip_network(entry, strict=False) for entry in entries(path)]
    ip_address = ipaddress.ip_address

    def decide(address: str) -> Any:  # Flask-Allow 2.0.x: every rule in turn
        ip = ip_address(address)
        for network in networks:
            if ip in network:
                return network
        return None

    return decide, networks


def _never() -> Any:
    """A dynamic rule type that never matches (``never:``), to split a list into two static runs."""
    from flask_allow import Matcher

    class Never(Matcher):
        prefix = "never"
        takes_value = False
        cacheable = False  # every decision searches the runs: what is measured here

        def matches(self, client: Any) -> bool:
            return False

    return Never


def build_mixed(path: Path, family: int, pure: bool = False) -> tuple[Lookup, Any]:
    """The list, one dynamic rule, the list again: two static runs around a dynamic rule."""
    from flask import Flask

    from flask_allow import FlaskAllow, hookimpl
    from flask_allow.clookup import ENVIRON_KEY

    never = _never()

    class Plugin:
        @hookimpl
        def flask_allow_matchers(self) -> list[Any]:
            return [never]

    app = Flask("bench")
    app.config.update(
        ADDRESS_RESTRICTION=[{"DENY": f"file:{path}"}, {"DENY": "never:"}, {"ALLOW": f"file:{path}"}],
        ALLOW_LOAD_ENTRY_POINTS=False,
    )
    saved = os.environ.pop(ENVIRON_KEY, None)
    if pure:
        os.environ[ENVIRON_KEY] = "1"
    try:
        FlaskAllow(app, plugins=[Plugin()])
    finally:
        os.environ.pop(ENVIRON_KEY, None)
        if saved is not None:
            os.environ[ENVIRON_KEY] = saved
    return app.extensions["flask_allow"].engine.lookup, app


def measure_mixed(lists: dict[tuple[int, int], Path], stream: list[str], rounds: int, budget: float) -> list[Any]:
    """Static + dynamic + static against the all-static list: the runs searched in C and in Python."""
    rows = []
    for (n, family), path in lists.items():
        if family != 4:
            continue
        lookups = {
            "all static": build_flask_allow(path, family)[0],
            "mixed": build_mixed(path, family)[0],
            "mixed (Python)": build_mixed(path, family, pure=True)[0],
        }
        found = measure_decisions(lookups, stream, rounds, budget)
        med = {name: statistics.median(values) * 1e9 for name, values in found.items()}
        py, lo, hi = common.ratio(found, "mixed (Python)", "mixed")
        ratio = f"{py:.2f} ({common.spread(lo, hi)})"
        rows.append([f"{n:,}", med["all static"], med["mixed"], med["mixed (Python)"], ratio])
    return rows


BUILDERS: dict[str, Callable[[Path, int], tuple[Lookup, Any]]] = {
    "flask_allow": build_flask_allow,
    "flask_allow (Python)": build_flask_allow_python,
    "pytricia": build_pytricia,
    "netaddr": build_netaddr,
    "2.0.x loop": build_linear,
}


def installed(name: str) -> bool:
    """Whether an implementation can run here (pytricia and netaddr come with the bench extra)."""
    module = {"pytricia": "pytricia", "netaddr": "netaddr"}.get(name)
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def matched(answer: Any) -> bool:
    return answer is not None and answer is not False


# -- a build in a child process: its time and what stays in memory ---------------------------------


def child_build(name: str, path: str, family: int, traced: bool) -> None:
    """Build one implementation from a list file; print JSON: seconds, retained bytes."""
    import flask  # noqa: F401  (imported before measuring, as an app would have it)

    builder = BUILDERS[name]
    if name == "flask_allow":  # what init_app and reload() do with the list: parse and compile it
        from flask import Flask

        from flask_allow import FlaskAllow

        app = Flask("bench")
        app.config["ALLOW_LOAD_ENTRY_POINTS"] = False
        FlaskAllow(app)
        state = app.extensions["flask_allow"]

        def builder(path: Path, family: int) -> Any:
            return state.make_engine([{"DENY": f"file:{path}"}], "ADDRESS_RESTRICTION")

    if name == "pytricia":
        import pytricia  # noqa: F401
    if name == "netaddr":
        import netaddr  # noqa: F401
    gc.collect()
    if traced:
        tracemalloc.start()
    before = common.rss()
    start = time.perf_counter()
    kept = builder(Path(path), family)
    seconds = time.perf_counter() - start
    gc.collect()
    result: dict[str, Any] = {"seconds": seconds, "rss": common.rss() - before}
    if traced:
        result["traced"] = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    del kept
    print(json.dumps(result))


def build_rounds(names: list[str], base: str, path: Path, family: int, rounds: int, traced: bool) -> dict[str, Any]:
    """Each build in its own process, interleaved; the baseline twice (the control)."""
    variants: dict[str, Callable[[], float]] = {}
    memory: dict[str, list[int]] = {}

    def run(name: str, key: str) -> float:
        found = common.python_child([__file__, "--child", name, str(path), str(family)])
        memory.setdefault(key, []).append(found["rss"])
        return float(found["seconds"])

    for name in names:
        variants[name] = lambda name=name: run(name, name)
    variants[f"{base} (control)"] = lambda: run(base, f"{base} (control)")
    seconds = common.interleave(variants, rounds)
    result: dict[str, Any] = {"seconds": seconds, "rss": memory}
    if traced:
        found = common.python_child([__file__, "--child", "flask_allow", str(path), str(family), "--traced"])
        result["traced"] = found["traced"]
    return result


# -- the run -------------------------------------------------------------------------------------


def measure_decisions(
    lookups: dict[str, Lookup], stream: list[str], rounds: int, budget: float
) -> dict[str, list[float]]:
    """Seconds per decision of each lookup over (a prefix of) ``stream``, interleaved."""
    counts = {}
    for name, lookup in lookups.items():  # size each batch to about ``budget`` seconds
        sample = common.fresh(stream[:200])
        cost = common.per_op(lambda lookup=lookup, sample=sample: [lookup(a) for a in sample], len(sample))
        counts[name] = max(20, min(len(stream), int(budget / max(cost, 1e-9))))

    def variant(name: str) -> Callable[[], float]:
        lookup, count = lookups[name], counts[name]

        def run() -> float:
            batch = common.fresh(stream[:count])
            start = time.perf_counter()
            for address in batch:
                lookup(address)
            return (time.perf_counter() - start) / count

        return run

    return common.interleave({name: variant(name) for name in lookups}, rounds)


def main() -> None:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--chart", metavar="PATH", help="draw decision time against N (PNG, matplotlib)")
        parser.add_argument("--sizes", help="comma-separated N (default 10,1000,100000,1000000)")
        parser.add_argument("--slow-max", type=int, default=100_000, help="largest N for netaddr and the 2.0.x loop")
        parser.add_argument("--child", nargs=3, metavar=("IMPL", "PATH", "FAMILY"), help=argparse.SUPPRESS)
        parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)

    args = common.arguments(__doc__.splitlines()[0], extra)
    if args.child:
        child_build(args.child[0], args.child[1], int(args.child[2]), args.traced)
        return
    quick = args.quick
    sizes = (
        [int(n) for n in args.sizes.split(",")]
        if args.sizes
        else ([10, 1000] if quick else [10, 1000, 100_000, 1_000_000])
    )
    v6_size = 1000 if quick else 100_000
    rounds, build_rounds_n = (2, 1) if quick else (7, 3)
    stream_length, zipf_clients = (20_000, 10_000) if quick else (200_000, 100_000)
    budget = 0.02 if quick else 0.25
    here = [name for name in BUILDERS if installed(name)]
    base = "pytricia" if "pytricia" in here else "flask_allow"  # what ratios and the control row use
    missing = [name for name in BUILDERS if name not in here]
    common.print_header(
        "Decision cost against the number of networks",
        [
            *([f"not installed: {', '.join(missing)} (pip install -e '.[bench]')"] if missing else []),
            f"sizes {sizes}; IPv6 at {v6_size:,}; {rounds} rounds; streams of {stream_length:,} "
            f"(Zipf over {zipf_clients:,} clients, s = 1); seed {args.seed}",
            f"netaddr and the 2.0.x loop up to N = {args.slow_max:,} (beyond, they would take minutes)",
        ],
    )
    distinct = common.random_clients(stream_length, args.seed + 1)
    zipf = common.zipf_stream(common.random_clients(zipf_clients, args.seed + 2), stream_length, args.seed + 3)
    distinct6 = common.random_clients(stream_length, args.seed + 4, family=6)
    results: dict[str, Any] = {"decisions": [], "builds": []}
    decision_rows, build_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        lists = {
            (n, 4): common.write_list(Path(tmp) / f"v4_{n}.txt", common.random_networks(n, args.seed + n))
            for n in sizes
        }
        lists[(v6_size, 6)] = common.write_list(
            Path(tmp) / f"v6_{v6_size}.txt", common.random_networks(v6_size, args.seed + v6_size, family=6)
        )
        smallest = min(sizes)
        base_lookup, base_kept = build_flask_allow(lists[(smallest, 4)], 4)
        base_tree_lookup, base_tree = build_pytricia(lists[(smallest, 4)], 4) if installed("pytricia") else (None, None)
        for (n, family), path in lists.items():
            names = [name for name in here if name.startswith(("flask_allow", "pytricia")) or n <= args.slow_max]
            built = {name: BUILDERS[name](path, family) for name in names}
            lookups = {name: lookup for name, (lookup, _) in built.items()}
            lookups[f"{base} (control)"] = built[base][0]
            if family == 4:
                lookups[f"flask_allow N={smallest}"] = base_lookup
                if base_tree_lookup is not None:
                    lookups[f"pytricia N={smallest}"] = base_tree_lookup
            inside = [entry.split("/")[0] for entry in common.random_networks(min(n, 1000), args.seed + n, family)]
            sample = (distinct6 if family == 6 else distinct)[:2000] + inside
            fast = [name for name in names if name.startswith(("flask_allow", "pytricia"))]
            agree = all(len({matched(lookups[name](a)) for name in fast}) == 1 for a in sample)
            agree = (
                agree
                and all(  # the slow ones on a part of it
                    len({matched(lookups[name](a)) for name in names}) == 1 for a in sample[:50] + sample[-50:]
                )
            )
            streams = {"distinct": distinct6} if family == 6 else {"distinct": distinct, "zipf": zipf}
            for stream_name, stream in streams.items():
                found = measure_decisions(lookups, stream, rounds, budget)
                med = {name: statistics.median(values) * 1e9 for name, values in found.items()}
                fa, lo, hi = common.ratio(found, "flask_allow", base)
                py, plo, phi = common.ratio(found, "flask_allow (Python)", base)
                ctl, clo, chi = common.ratio(found, f"{base} (control)", base)
                growth = common.ratio(found, "flask_allow", f"flask_allow N={smallest}")[0] if family == 4 else None
                pt_growth = None
                if family == 4 and f"pytricia N={smallest}" in found:
                    pt_growth = common.ratio(found, "pytricia", f"pytricia N={smallest}")[0]
                label = f"{n:,}" + (" IPv6" if family == 6 else "")
                decision_rows.append(
                    [
                        label,
                        stream_name,
                        med["flask_allow"],
                        med["flask_allow (Python)"],
                        med.get("pytricia"),
                        med.get("netaddr"),
                        med.get("2.0.x loop"),
                        f"{fa:.2f} ({common.spread(lo, hi)})" if base == "pytricia" else None,
                        f"{py:.2f} ({common.spread(plo, phi)})" if base == "pytricia" else None,
                        f"{ctl:.2f} ({common.spread(clo, chi)})",
                        f"{growth:.2f}" if growth else None,
                        f"{pt_growth:.2f}" if pt_growth else None,
                        "yes" if agree else "NO",
                    ]
                )
                results["decisions"].append(
                    {"n": n, "family": family, "stream": stream_name, "seconds": found, "agree": agree}
                )
            del built, lookups
            gc.collect()
            traced = not quick
            built_names = [name for name in names if name != "flask_allow (Python)"]  # the search is not the build
            builds = build_rounds(built_names, base, path, family, build_rounds_n if n < 1_000_000 else 2, traced)
            secs = {name: statistics.median(values) for name, values in builds["seconds"].items()}
            mib = {name: statistics.median(values) / 2**20 for name, values in builds["rss"].items()}
            b, blo, bhi = common.ratio(builds["seconds"], "flask_allow", base)
            c, clo, chi = common.ratio(builds["seconds"], f"{base} (control)", base)
            build_rows.append(
                [
                    f"{n:,}" + (" IPv6" if family == 6 else ""),
                    secs["flask_allow"],
                    secs.get("pytricia"),
                    f"{b:.2f} ({common.spread(blo, bhi)})" if base == "pytricia" else None,
                    f"{c:.2f} ({common.spread(clo, chi)})",
                    mib["flask_allow"],
                    mib.get("pytricia"),
                    builds["traced"] / 2**20 if traced else None,
                    secs.get("netaddr"),
                    mib.get("netaddr"),
                ]
            )
            results["builds"].append({"n": n, "family": family, **builds})
        del base_kept, base_tree
        mixed_rows = measure_mixed(lists, distinct, rounds, budget)
    common.table(
        [
            "N",
            "clients",
            "flask_allow ns",
            "flask_allow (Python) ns",
            "pytricia ns",
            "netaddr ns",
            "2.0.x loop ns",
            "flask_allow ÷ pytricia",
            "flask_allow (Python) ÷ pytricia",
            f"control: {base} ÷ {base}",
            f"flask_allow ÷ itself at N={smallest}",
            f"pytricia ÷ itself at N={smallest}",
            "same answers",
        ],
        decision_rows,
        "Decision time per client address (median ns; ratios: median of per-round ratios, range)",
    )
    common.table(
        [
            "N",
            "flask_allow s",
            "pytricia s",
            "flask_allow ÷ pytricia",
            f"control: {base} ÷ {base}",
            "flask_allow MiB",
            "pytricia MiB",
            "flask_allow Python heap MiB",
            "netaddr s",
            "netaddr MiB",
        ],
        build_rows,
        "Building from a list file (fresh process each; flask_allow: parsing the file and compiling "
        "the rule; MiB: resident memory retained after the build)",
    )
    common.table(
        ["N", "all static ns", "static + dynamic + static ns", "same, runs in Python ns", "Python ÷ C runs"],
        mixed_rows,
        "A list split by one dynamic rule (never matches, not cached): its two static runs searched in C "
        "(as since 3.1) and in Python (as before), distinct clients",
    )
    results["tables"] = {"decisions": decision_rows, "builds": build_rows, "mixed": mixed_rows}
    if args.chart:
        try:
            chart(results["decisions"], Path(args.chart))
        except ImportError:
            print("no chart: matplotlib is not installed (pip install -e '.[bench]')")
    common.write_json(args.json, "decisions", args, results)


def chart(decisions: list[dict[str, Any]], path: Path) -> None:
    """Decision time against N, log-log, one line per implementation (distinct clients solid, Zipf dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    colours = {
        "flask_allow": "tab:blue",
        "flask_allow (Python)": "tab:purple",
        "pytricia": "tab:orange",
        "netaddr": "tab:green",
        "2.0.x loop": "tab:red",
    }
    for stream, style in (("distinct", "-"), ("zipf", "--")):
        for name, colour in colours.items():
            points = sorted(
                (row["n"], statistics.median(row["seconds"][name]) * 1e9)
                for row in decisions
                if row["family"] == 4 and row["stream"] == stream and name in row["seconds"]
            )
            if points:
                label = f"{name} ({'distinct clients' if stream == 'distinct' else 'Zipf clients'})"
                axes.plot(*zip(*points, strict=True), style, marker="o", color=colour, label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("networks in the list (N)")
    axes.set_ylabel("time per decision (ns, parsing included)")
    axes.set_title("Deciding for one client address string")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    print(f"chart written to {path}")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Every benchmark of bench/, one after the other, as one table.

    python bench/run_all.py            # full sizes (about 5 minutes on 2 cores)
    python bench/run_all.py --quick    # tiny sizes: a smoke run of a minute or two
    python bench/run_all.py --only throughput,streaming

Each benchmark also runs alone (python bench/throughput.py --help). Results:
one JSON file per benchmark and bench/results/all.json with every row; the
table is printed, and with --markdown also as Markdown (for the README).
Peers that are not installed (HyperQueue: pip install hyperqueue; GNU
parallel, task-spooler: apt-get install parallel task-spooler) are skipped
with a note.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import many_workers, queue_scale, round_trip, streaming, submit_latency, throughput
from bench.common import RESULTS, log, machine
from bench.sizes import FULL, QUICK
from bench.table import markdown, render

MODULES: dict[str, Any] = {
    "throughput": throughput,
    "submit_latency": submit_latency,
    "round_trip": round_trip,
    "queue_scale": queue_scale,
    "many_workers": many_workers,
    "streaming": streaming,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(MODULES)}")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    parser.add_argument(
        "--output-dir", type=Path, default=RESULTS, help=f"where the JSON goes (default {RESULTS})"
    )
    args = parser.parse_args(argv)
    names = list(MODULES)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in MODULES]
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    sizes = QUICK if args.quick else FULL
    args.output_dir.mkdir(parents=True, exist_ok=True)
    every: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
        "machine": machine(),
        "benchmarks": {},
        "rows": [],
    }
    failed = []
    for name in names:
        module = MODULES[name]
        log(f"== {name} {sizes[name]}")
        began = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(
                prefix=f"kueue-bench-{name}-", ignore_cleanup_errors=True
            ) as tmp:
                results = module.measure(Path(tmp), **sizes[name])
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            log(f"{name} failed: {exc!r}")
            failed.append(name)
            every["benchmarks"][name] = {"error": repr(exc)}
            continue
        results["machine"] = every["machine"]
        results["seconds"] = time.perf_counter() - began
        results["rows"] = [r.as_dict() for r in module.rows(results)]
        (args.output_dir / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
        every["benchmarks"][name] = results
        every["rows"] += results["rows"]
        log(render(results["rows"]))
    every["machine"]["load_after"] = __import__("os").getloadavg()[0]
    (args.output_dir / "all.json").write_text(json.dumps(every, indent=2) + "\n")
    m = every["machine"]
    print(
        f"\nkueue benchmarks ({'quick' if args.quick else 'full'} sizes), {m['cpus']} cpus, Python {m['python']}, "
        f"grpcio {m['grpcio']}, load {m['load_before']:.1f} before / {m['load_after']:.1f} after\n"
    )
    print(render(every["rows"]))
    if args.markdown:
        print()
        print(markdown(every["rows"]))
    print(f"\nwrote {args.output_dir / 'all.json'}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Item 3: `kueue run true` end to end (a fresh client process each time, a
server and a worker on loopback), median and p95 over 50 runs, taking turns
with a local `true` and `ssh localhost true` (bench/sshd.py starts a private
sshd when there is none).

    python bench/round_trip.py [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, Row, interleaved, kueue_argv, local_cluster, log, report, summary, timed
from bench.sizes import sizes
from bench.sshd import ssh_command


def measure(work: Path, *, runs: int) -> dict[str, Any]:
    with local_cluster(work / "c", slots=2) as cluster, ssh_command(work) as (ssh, how):
        kueue = kueue_argv(cluster)
        subjects = {
            "local true": lambda: timed(["true"], cwd=work),
            "kueue run true": lambda: timed([*kueue, "run", "true"], cwd=work),
        }
        if ssh is not None:
            subjects["ssh true"] = lambda: timed([*ssh, "true"], cwd=work)
        for run in subjects.values():  # warm: page cache, .pyc files, ssh host key
            run()
        log(f"round trip: {runs} runs each of {', '.join(subjects)}")
        samples = interleaved(subjects, runs)
    return {
        "benchmark": "round_trip",
        "runs": runs,
        "ssh": how,
        "summary": {name: summary(values) for name, values in samples.items()},
        "samples_s": samples,
    }


def rows(r: dict[str, Any]) -> list[Row]:
    item = "3 round trip"
    s = r["summary"]
    k = s["kueue run true"]
    out = [
        Row(
            item,
            "kueue run true, median",
            k["median_s"] * 1000,
            "ms",
            "local true",
            k["median_s"] / s["local true"]["median_s"],
        ),
        Row(item, "kueue run true, p95", k["p95_s"] * 1000, "ms"),
        Row(item, "local true, median", s["local true"]["median_s"] * 1000, "ms"),
    ]
    if "ssh true" in s:
        ssh = s["ssh true"]
        out[0].note = f"{k['median_s'] / ssh['median_s']:.2f}x ssh"
        out.append(Row(item, "ssh localhost true, median", ssh["median_s"] * 1000, "ms", note=r["ssh"]))
        out.append(Row(item, "ssh localhost true, p95", ssh["p95_s"] * 1000, "ms"))
    else:
        out.append(Row(item, "ssh localhost true", None, "ms", note=r["ssh"]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--runs", type=int, help="runs of each (default 50; quick: 3)")
    parser.add_argument("--output", type=Path, default=RESULTS / "round_trip.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kueue-bench-", ignore_cleanup_errors=True) as tmp:
        results = measure(Path(tmp), **sizes("round_trip", args.quick, runs=args.runs))
    report(results, rows, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Item 6: `kueue run cat` of 500 MB: stdin up through server and worker into
`cat`, its stdout back down to the client, counted by `wc -c`; beside a local
`cat` of the same file (also into `wc -c`), taking turns. Target: at least
100 MB/s on loopback.

    python bench/streaming.py [--quick] [--mb N]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, Row, env, interleaved, kueue_argv, local_cluster, log, report
from bench.sizes import sizes

MB = 1024 * 1024


def make_file(path: Path, size: int) -> None:
    block = os.urandom(MB)
    with open(path, "wb") as f:
        for i in range(size // MB):
            # Not one block repeated: nothing on the way may compress it away.
            f.write(block[i % 251 :] + block[: i % 251])


def pipeline_mb_per_s(command: str, size: int, cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(["sh", "-c", command], env=env(), cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or result.stdout.split() != [str(size)]:
        raise RuntimeError(
            f"{command}: exit {result.returncode}, out {result.stdout!r}, err {result.stderr[-500:]}"
        )
    return size / MB / elapsed


def measure(work: Path, *, mb: int, rounds: int) -> dict[str, Any]:
    data = work / "data.bin"
    make_file(data, mb * MB)
    size = data.stat().st_size
    with local_cluster(work / "c", slots=2) as cluster:
        kueue = shlex.join([*kueue_argv(cluster), "run", "cat"])
        subjects = {
            "local cat": lambda: pipeline_mb_per_s(f"cat {data} | wc -c", size, work),
            "kueue run cat": lambda: pipeline_mb_per_s(f"{kueue} < {data} | wc -c", size, work),
        }
        log(f"streaming: {mb} MB, {rounds} rounds")
        samples = interleaved(subjects, rounds)
    return {
        "benchmark": "streaming",
        "mb": mb,
        "samples_mb_per_s": samples,
        "median_mb_per_s": {k: statistics.median(v) for k, v in samples.items()},
    }


def rows(r: dict[str, Any]) -> list[Row]:
    item = "6 streaming"
    m = r["median_mb_per_s"]
    k = m["kueue run cat"]
    return [
        Row(
            item,
            f"kueue run cat, {r['mb']} MB",
            k,
            "MB/s",
            "local cat",
            k / m["local cat"],
            ">= 100 MB/s",
            k >= 100,
        ),
        Row(item, "local cat", m["local cat"], "MB/s"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--mb", type=int, help="megabytes streamed (default 500; quick: 4)")
    parser.add_argument("--output", type=Path, default=RESULTS / "streaming.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kueue-bench-", ignore_cleanup_errors=True) as tmp:
        results = measure(Path(tmp), **sizes("streaming", args.quick, mb=args.mb))
    report(results, rows, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

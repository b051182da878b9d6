#!/usr/bin/env python3
"""Breaking-change check of protos/ against the newest release tag.

Usage: python scripts/check_breaking.py [--repo DIR] [--buf PATH]

Runs `buf breaking` (rules from buf.yaml) comparing the protos of the working
tree with those of the newest git tag matching `v*` (by version order, so
v1.10.0 is newer than v1.9.0). While there is no such tag (or the clone has no
tags, as a shallow CI clone may), it prints a note and exits 0.
Exit status: 0 compatible or skipped, 1 breaking changes (buf's findings are
printed), 2 the check could not run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = "no git tag matching v* yet: breaking-change check skipped"


def newest_tag(repo: Path) -> str | None:
    result = subprocess.run(
        ["git", "tag", "--list", "v*", "--sort=-v:refname"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"git tag failed in {repo}: {result.stderr.strip()}")
    tags = result.stdout.split()
    return tags[0] if tags else None


def export_protos(repo: Path, tag: str, into: Path) -> Path:
    """The tag's protos/ directory, written under `into` (git archive: works
    in worktrees and needs no checkout)."""
    result = subprocess.run(
        ["git", "archive", "--format=tar", tag, "protos"], cwd=repo, capture_output=True, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{tag} has no protos/ directory: {result.stderr.decode(errors='replace').strip()}"
        )
    with tarfile.open(fileobj=BytesIO(result.stdout)) as archive:
        archive.extractall(into, filter="data")
    return into / "protos"


def check(repo: Path, buf: Path) -> int:
    tag = newest_tag(repo)
    if tag is None:
        print(SKIPPED)
        return 0
    with tempfile.TemporaryDirectory(prefix="kueue-breaking-") as tmp:
        against = export_protos(repo, tag, Path(tmp))
        # The tag's protos/ is given as a plain directory, so its files are
        # named as in the current module (kueue/v1/...) whatever buf.yaml the
        # tag had.
        result = subprocess.run(
            [str(buf), "breaking", "--against", str(against)],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=300,
        )
    findings = (result.stdout + result.stderr).strip()
    if result.returncode == 0:
        print(f"protos are compatible with {tag} (buf breaking)")
        return 0
    print(f"breaking changes against {tag}:\n{findings}")
    return 1 if result.returncode == 100 else 2


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", type=Path, default=ROOT, help="git repository to check (default: this one)")
    parser.add_argument(
        "--buf", type=Path, default=ROOT / "node_modules" / ".bin" / "buf", help="the buf binary (npm ci)"
    )
    args = parser.parse_args()
    if not args.buf.exists():
        print(f"check_breaking: {args.buf} not found; run `npm ci` at the repository root", file=sys.stderr)
        return 2
    try:
        return check(args.repo, args.buf)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"check_breaking: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The protos pass `buf lint` (buf.yaml at the repository root, STANDARD rules).

buf comes from npm (package.json pins @bufbuild/buf); `npm ci` installs it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / "node_modules" / ".bin" / "buf"


def _buf() -> Path:
    if not BUF.exists():
        pytest.skip(f"buf is not installed ({BUF} missing); run `npm ci` at the repository root")
    return BUF


def test_buf_lint_is_clean() -> None:
    result = subprocess.run(
        [str(_buf()), "lint"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    findings = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, f"`buf lint` failed (exit {result.returncode}):\n{findings}"
    assert not result.stdout.strip(), f"`buf lint` reported findings:\n{findings}"


def test_buf_build_succeeds(tmp_path: Path) -> None:
    image = tmp_path / "image.binpb"
    result = subprocess.run(
        [str(_buf()), "build", "-o", str(image)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"`buf build` failed:\n{result.stdout}{result.stderr}"
    assert image.stat().st_size > 0

"""The protos pass `buf lint` (buf.yaml at the repository root, STANDARD rules)
and `buf breaking` against the newest `v*` tag (scripts/check_breaking.py).

buf comes from npm (package.json pins @bufbuild/buf); `npm ci` installs it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / "node_modules" / ".bin" / "buf"
CHECK_BREAKING = ROOT / "scripts" / "check_breaking.py"


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


def _check_breaking(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK_BREAKING), "--repo", str(repo), "--buf", str(_buf())],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_protos_have_no_breaking_change_against_the_newest_tag() -> None:
    result = _check_breaking(ROOT)
    output = (result.stdout + result.stderr).strip()
    if result.returncode == 0 and "skipped" in output:
        pytest.skip(output)
    assert result.returncode == 0, f"scripts/check_breaking.py (exit {result.returncode}):\n{output}"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_breaking_check_compares_with_the_newest_tag_of_a_scratch_repo(tmp_path: Path) -> None:
    """No tag: a note. Then tags v0.9.0 and v0.10.0 (newer, with one more
    field): dropping that field breaks v0.10.0, adding another does not."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "buf.yaml", repo / "buf.yaml")
    shutil.copytree(ROOT / "protos", repo / "protos")
    proto = repo / "protos" / "kueue" / "v1" / "job_service.proto"
    original = proto.read_text()
    anchor = "message CleanJobsResponse {\n"
    assert anchor in original
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "protos")

    untagged = _check_breaking(repo)
    assert untagged.returncode == 0, untagged.stdout + untagged.stderr
    assert "no git tag matching v* yet: breaking-change check skipped" in untagged.stdout

    _git(repo, "tag", "v0.9.0")
    with_field = original.replace(anchor, anchor + "  uint64 kept_count = 100;\n")
    proto.write_text(with_field)
    _git(repo, "commit", "-qam", "a field")
    _git(repo, "tag", "v0.10.0")

    proto.write_text(original)  # compatible with v0.9.0, but drops v0.10.0's field
    broken = _check_breaking(repo)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "breaking changes against v0.10.0" in broken.stdout
    assert "CleanJobsResponse" in broken.stdout and "100" in broken.stdout, broken.stdout

    proto.write_text(with_field.replace(anchor, anchor + "  uint64 other_count = 101;\n"))
    compatible = _check_breaking(repo)
    assert compatible.returncode == 0, compatible.stdout + compatible.stderr
    assert "compatible with v0.10.0" in compatible.stdout

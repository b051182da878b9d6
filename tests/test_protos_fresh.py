"""The committed stubs are exactly what scripts/gen_protos.py makes from
protos/kueue/v1/*.proto: the Python ones in kueue/v1/ (with the pinned
grpcio-tools, with and without buf) and the TypeScript ones in
clients/typescript/src/gen/ (buf and protoc-gen-es, from `npm ci`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "kueue" / "v1"
TS_GEN = Path("clients") / "typescript" / "src" / "gen"
BUF = ROOT / "node_modules" / ".bin" / "buf"
FIX = (
    "the generated stubs are stale: run `python scripts/gen_protos.py` (after `npm ci`) and commit "
    "kueue/v1/ and clients/typescript/src/gen/"
)


def _stub_files(directory: Path) -> dict[str, bytes]:
    """Relative path -> content of every generated file (bytecode caches left out)."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def _tools_version() -> str:
    try:
        from importlib.metadata import version

        return version("grpcio-tools")
    except Exception:  # pragma: no cover - only for the failure message
        return "unknown"


def _generate(out: Path, *flags: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(out), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"scripts/gen_protos.py failed:\n{result.stdout}{result.stderr}"


def _assert_same(fresh_dir: Path, committed_dir: Path, label: str) -> None:
    fresh = _stub_files(fresh_dir)
    committed = _stub_files(committed_dir)
    assert fresh, f"scripts/gen_protos.py produced no files for {label}"

    missing = sorted(set(fresh) - set(committed))
    extra = sorted(set(committed) - set(fresh))
    changed = sorted(name for name in set(fresh) & set(committed) if fresh[name] != committed[name])
    problems = []
    if missing:
        problems.append(f"missing from {label}: {', '.join(missing)}")
    if extra:
        problems.append(f"in {label} but not generated (delete them): {', '.join(extra)}")
    if changed:
        problems.append(f"{label}: differ from the generated ones: {', '.join(changed)}")
    assert not problems, f"{FIX} (grpcio-tools {_tools_version()}, pinned in pyproject.toml)\n" + "\n".join(
        problems
    )


def test_python_stubs_are_fresh_without_buf(tmp_path: Path) -> None:
    _generate(tmp_path, "--no-buf")
    _assert_same(tmp_path / "kueue" / "v1", COMMITTED, "kueue/v1/")


def test_buf_generate_makes_the_committed_python_and_typescript_stubs(tmp_path: Path) -> None:
    if not BUF.exists():
        pytest.skip(f"buf is not installed ({BUF} missing); run `npm ci` at the repository root")
    _generate(tmp_path)
    _assert_same(tmp_path / "kueue" / "v1", COMMITTED, "kueue/v1/")
    _assert_same(tmp_path / TS_GEN, ROOT / TS_GEN, f"{TS_GEN}/")
    protos = sorted(p.stem for p in (ROOT / "protos" / "kueue" / "v1").glob("*.proto"))
    assert sorted(p.name for p in (ROOT / TS_GEN / "kueue" / "v1").iterdir()) == [
        f"{s}_pb.ts" for s in protos
    ]


def test_every_proto_has_stubs() -> None:
    protos = sorted(p.stem for p in (ROOT / "protos" / "kueue" / "v1").glob("*.proto"))
    assert protos, "no .proto files found under protos/kueue/v1/"
    for stem in protos:
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert (COMMITTED / f"{stem}{suffix}").is_file(), f"kueue/v1/{stem}{suffix} missing; {FIX}"


def test_stubs_import_and_name_the_services() -> None:
    from kueue.v1 import cluster_service_pb2, job_service_pb2, worker_service_pb2

    services = {
        name
        for module in (cluster_service_pb2, job_service_pb2, worker_service_pb2)
        for name in module.DESCRIPTOR.services_by_name
    }
    assert services == {"ClusterService", "JobService", "WorkerService"}
    assert job_service_pb2.DESCRIPTOR.package == "kueue.v1"

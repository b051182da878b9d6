"""The committed stubs in kueue/v1/ are exactly what scripts/gen_protos.py makes
from protos/kueue/v1/*.proto (with the pinned grpcio-tools)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "kueue" / "v1"
FIX = "the generated stubs are stale: run `python scripts/gen_protos.py` and commit kueue/v1/"


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


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"scripts/gen_protos.py failed:\n{result.stdout}{result.stderr}"

    fresh = _stub_files(tmp_path / "kueue" / "v1")
    committed = _stub_files(COMMITTED)
    assert fresh, "scripts/gen_protos.py produced no files"

    missing = sorted(set(fresh) - set(committed))
    extra = sorted(set(committed) - set(fresh))
    changed = sorted(name for name in set(fresh) & set(committed) if fresh[name] != committed[name])
    problems = []
    if missing:
        problems.append(f"missing from kueue/v1/: {', '.join(missing)}")
    if extra:
        problems.append(f"in kueue/v1/ but not generated (delete them): {', '.join(extra)}")
    if changed:
        problems.append(f"differ from the generated ones: {', '.join(changed)}")
    assert not problems, f"{FIX} (grpcio-tools {_tools_version()}, pinned in pyproject.toml)\n" + "\n".join(
        problems
    )


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

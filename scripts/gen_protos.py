#!/usr/bin/env python3
"""Regenerate every stub made from protos/kueue/v1/*.proto.

Usage: python scripts/gen_protos.py [--out DIR] [--no-buf]

With buf installed (`npm ci`), this runs `buf generate` (buf.gen.yaml): the
Python stubs in kueue/v1/ and the TypeScript ones in
clients/typescript/src/gen/. Without it (or with --no-buf) only the Python
stubs are made, with grpcio-tools directly; both ways give the same bytes.
The output is committed; tests/test_protos_fresh.py fails when it is stale.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
BUF = ROOT / "node_modules" / ".bin" / "buf"
PROTOC_GEN_ES = ROOT / "node_modules" / ".bin" / "protoc-gen-es"
INIT_TEXT = '"""Generated protobuf and gRPC stubs (scripts/gen_protos.py); do not edit."""\n'


def generate_python(out_dir: Path) -> None:
    """The Python stubs with grpcio-tools' protoc, without buf."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "kueue" / "v1").glob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")


def generate_with_buf(out_dir: Path) -> None:
    """`buf generate` with buf.gen.yaml: Python and TypeScript stubs."""
    env = dict(os.environ)
    # buf.gen.yaml runs `python3`: make that this interpreter (a venv's, say),
    # the one with grpcio-tools.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    command = [str(BUF), "generate"]
    if out_dir.resolve() != ROOT:
        command += ["--output", str(out_dir)]
    result = subprocess.run(command, cwd=ROOT, env=env, timeout=300)
    if result.returncode != 0:
        sys.exit(f"buf generate failed (exit {result.returncode})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT, help="root to write the stubs under")
    parser.add_argument(
        "--no-buf",
        action="store_true",
        help="make only the Python stubs, with grpcio-tools (no buf, no node)",
    )
    args = parser.parse_args()
    out = args.out
    if args.no_buf:
        generate_python(out)
    elif BUF.exists() and PROTOC_GEN_ES.exists():
        generate_with_buf(out)
    else:
        generate_python(out)
        print(
            "gen_protos: buf is not installed (run `npm ci` at the repository root): made the Python "
            "stubs only; the TypeScript stubs in clients/typescript/src/gen/ were not regenerated",
            file=sys.stderr,
        )
    (out / "kueue" / "v1" / "__init__.py").write_text(INIT_TEXT)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Regenerate the Python stubs in kueue/v1/ from protos/kueue/v1/*.proto.

Usage: python scripts/gen_protos.py [--out DIR]

The output is committed; tests/test_protos_fresh.py fails when it is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


def generate(out_dir: Path) -> None:
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
    init = out_dir / "kueue" / "v1" / "__init__.py"
    init.write_text('"""Generated protobuf and gRPC stubs (scripts/gen_protos.py); do not edit."""\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="root to write kueue/v1/ under")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()

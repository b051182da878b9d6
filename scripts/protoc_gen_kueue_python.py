#!/usr/bin/env python3
"""A protoc plugin (used by buf.gen.yaml) that makes the Python stubs with the
protoc bundled in grpcio-tools: `_pb2.py`, `_pb2.pyi` and `_pb2_grpc.py`.

buf has no built-in for grpc_python and grpcio-tools ships no stand-alone
protoc, so this plugin hands the descriptors buf compiled to
`grpc_tools.protoc --descriptor_set_in` and returns what it writes. The output
is byte for byte what `scripts/gen_protos.py --no-buf` makes from the .proto
files (tests/test_protos_fresh.py checks both).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2


def _as_protoc_would_read_them(files: list[descriptor_pb2.FileDescriptorProto]) -> None:
    """buf fills in every field's json_name, which protoc only does when the
    .proto sets it; left in, it would be embedded in the _pb2.py descriptors
    and make them differ from protoc's own. Our protos set no json_name."""
    for file in files:
        stack = list(file.message_type)
        while stack:
            message = stack.pop()
            for field in [*message.field, *message.extension]:
                field.ClearField("json_name")
            stack.extend(message.nested_type)
        for field in file.extension:
            field.ClearField("json_name")


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    from grpc_tools import protoc

    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    files = list(request.proto_file)
    _as_protoc_would_read_them(files)
    with tempfile.TemporaryDirectory(prefix="kueue-protoc-") as tmp:
        descriptors = Path(tmp) / "descriptors.binpb"
        descriptors.write_bytes(descriptor_pb2.FileDescriptorSet(file=files).SerializeToString())
        out = Path(tmp) / "out"
        out.mkdir()
        args = [
            "grpc_tools.protoc",
            f"--descriptor_set_in={descriptors}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *request.file_to_generate,
        ]
        if protoc.main(args) != 0:
            response.error = "grpc_tools.protoc failed (its message is above)"
            return response
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            response.file.add(name=str(path.relative_to(out)), content=path.read_text())
    return response


def main() -> None:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    sys.stdout.buffer.write(generate(request).SerializeToString())


if __name__ == "__main__":
    main()

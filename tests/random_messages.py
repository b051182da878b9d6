"""Random protobuf messages for fuzz tests: any message type, a random
subset of its fields set to edge values (huge and negative numbers, NaN,
NUL bytes, long strings, unknown enum values), built from the descriptors."""

from __future__ import annotations

import math
import random
from typing import Any

from google.protobuf import descriptor as d
from google.protobuf.message import Message

INTS = [0, 1, -1, 2, 7, 2**31 - 1, -(2**31), 2**32 - 1, 2**53, 2**63 - 1, -(2**63)]
UINTS = [0, 1, 2, 7, 42, 2**31, 2**32 - 1, 2**53, 2**63, 2**64 - 1]
FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 1e300, -1e300, math.inf, -math.inf, math.nan]
STRINGS = ["", "a", "/", "/tmp", "\0", "a\0b", "x=y", "é", "\U0001f600", " ", "..", "../../etc", "-1"]


def _string(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return rng.choice("ab\0/=é") * rng.choice([100, 10_000, 300_000])
    return rng.choice(STRINGS)


def scalar(field: d.FieldDescriptor, rng: random.Random) -> Any:
    t = field.type
    if t in (d.FieldDescriptor.TYPE_INT32, d.FieldDescriptor.TYPE_SINT32, d.FieldDescriptor.TYPE_SFIXED32):
        return rng.choice([v for v in INTS if -(2**31) <= v < 2**31])
    if t in (d.FieldDescriptor.TYPE_INT64, d.FieldDescriptor.TYPE_SINT64, d.FieldDescriptor.TYPE_SFIXED64):
        return rng.choice(INTS)
    if t in (d.FieldDescriptor.TYPE_UINT32, d.FieldDescriptor.TYPE_FIXED32):
        return rng.choice([v for v in UINTS if v < 2**32])
    if t in (d.FieldDescriptor.TYPE_UINT64, d.FieldDescriptor.TYPE_FIXED64):
        return rng.choice(UINTS)
    if t in (d.FieldDescriptor.TYPE_DOUBLE, d.FieldDescriptor.TYPE_FLOAT):
        return rng.choice(FLOATS)
    if t == d.FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if t == d.FieldDescriptor.TYPE_STRING:
        return _string(rng)
    if t == d.FieldDescriptor.TYPE_BYTES:
        return rng.randbytes(rng.choice([0, 1, 16, 4096, 200_000]))
    if t == d.FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return rng.choice([*known, 99, -5])  # proto3 enums are open
    raise AssertionError(f"unexpected field type {t}")


def fill(msg: Message, rng: random.Random, depth: int = 0, skip: float = 0.4) -> Message:
    """Set a random subset of msg's fields (each but a `skip` share) to random values (in place)."""
    for field in msg.DESCRIPTOR.fields:
        if rng.random() < skip:
            continue
        if field.containing_oneof is not None and msg.WhichOneof(field.containing_oneof.name):
            continue  # one member of a oneof
        is_message = field.type == d.FieldDescriptor.TYPE_MESSAGE
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target = getattr(msg, field.name)
            value_field = field.message_type.fields_by_name["value"]
            for _ in range(rng.choice([0, 1, 3])):
                key = scalar(field.message_type.fields_by_name["key"], rng)
                if value_field.type == d.FieldDescriptor.TYPE_MESSAGE:
                    if depth < 3:
                        fill(target[key], rng, depth + 1, skip)
                else:
                    target[key] = scalar(value_field, rng)
        elif field.is_repeated:
            target = getattr(msg, field.name)
            for _ in range(rng.choice([0, 1, 3])):
                if is_message:
                    if depth < 3:
                        fill(target.add(), rng, depth + 1, skip)
                else:
                    target.append(scalar(field, rng))
        elif is_message:
            if depth < 3:
                fill(getattr(msg, field.name), rng, depth + 1, skip)
        else:
            setattr(msg, field.name, scalar(field, rng))
    return msg

"""Protobuf's wire format by hand: messages with one large bytes field
encoded in a single copy, and the primitives for messages encoded without
protobuf at all (kueue_client/submission.py).

Protobuf (upb) copies a megabyte of output or stdin three times to send it:
into the message when the field is set, into its encoder's buffer, and into
the bytes object it returns (a profile of the server during `kueue run cat`
had these at about 15% of its CPU). The wire format allows the fields of a
message in any order, so Outer{field: Inner{..., data}} can be written as
the encoded Inner without its data, followed by the data field, joined once;
any protobuf parser reads the same message. Streams whose serializer is
`serialize` accept such bytes as well as messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # this module is also for code that never imports protobuf (kueue_client/submission.py)
    from google.protobuf.message import Message

# Wire types.
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


def put_varint(value: int, out: bytearray) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def varint(value: int) -> bytes:
    out = bytearray()
    put_varint(value, out)
    return bytes(out)


def put_key(number: int, wire_type: int, out: bytearray) -> None:
    put_varint(number << 3 | wire_type, out)


def put_bytes(number: int, data: bytes, out: bytearray) -> None:
    """A length-delimited field: bytes, a string encoded, or a message."""
    put_key(number, LENGTH_DELIMITED, out)
    put_varint(len(data), out)
    out += data


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at data[pos:] and the position after it; ValueError if cut short or over 64 bits."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("a truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of an encoded message:
    an int for varints and fixed-size fields, the bytes of a length-delimited
    one; ValueError where the message is damaged."""
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == VARINT:
            value, pos = read_varint(data, pos)
        elif wire_type == LENGTH_DELIMITED:
            size, pos = read_varint(data, pos)
            if pos + size > len(data):
                raise ValueError("a truncated field")
            value, pos = data[pos : pos + size], pos + size
        elif wire_type in (FIXED64, FIXED32):
            size = 8 if wire_type == FIXED64 else 4
            if pos + size > len(data):
                raise ValueError("a truncated field")
            value, pos = int.from_bytes(data[pos : pos + size], "little"), pos + size
        else:
            raise ValueError(f"wire type {wire_type} is not known")
        yield number, wire_type, value


class BytesEnvelope:
    """Encodes Outer{field: Inner{<head fields>, data_field: data}}."""

    def __init__(self, outer: type[Message], field: str, data_field: str = "data") -> None:
        f = outer.DESCRIPTOR.fields_by_name[field]
        data = f.message_type.fields_by_name[data_field]
        if data.type != data.TYPE_BYTES:
            raise TypeError(f"{f.message_type.full_name}.{data_field} is not a bytes field")
        self._outer_key = varint(f.number << 3 | LENGTH_DELIMITED)
        self._data_key = varint(data.number << 3 | LENGTH_DELIMITED)

    def encode(self, head: Message, data: bytes | memoryview) -> bytes:
        """head: the inner message with its data field left empty."""
        inner = head.SerializeToString()
        data_size = varint(len(data))
        size = len(inner) + len(self._data_key) + len(data_size) + len(data)
        return b"".join((self._outer_key, varint(size), inner, self._data_key, data_size, data))


def serialize(msg: Message | bytes) -> bytes:
    """A gRPC serializer that passes bytes already encoded by a BytesEnvelope."""
    return msg if isinstance(msg, bytes) else msg.SerializeToString()


def batch(field_number: int, items: list[Message | bytes]) -> bytes:
    """Outer{field_number: Batch{messages: items}} for a repeated message
    field 1 of the batch, with items that may be encoded already; the items
    are not copied into a message first."""
    parts: list[bytes] = []
    item_key = varint(1 << 3 | LENGTH_DELIMITED)
    for item in items:
        body = item if isinstance(item, bytes) else item.SerializeToString()
        parts += (item_key, varint(len(body)), body)
    inner = b"".join(parts)
    return b"".join((varint(field_number << 3 | LENGTH_DELIMITED), varint(len(inner)), inner))


def size(item: Message | bytes) -> int:
    return len(item) if isinstance(item, bytes) else item.ByteSize()

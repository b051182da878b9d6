"""Messages with one large bytes field, encoded in a single copy.

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

from google.protobuf.message import Message

_LENGTH_DELIMITED = 2


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class BytesEnvelope:
    """Encodes Outer{field: Inner{<head fields>, data_field: data}}."""

    def __init__(self, outer: type[Message], field: str, data_field: str = "data") -> None:
        f = outer.DESCRIPTOR.fields_by_name[field]
        data = f.message_type.fields_by_name[data_field]
        if data.type != data.TYPE_BYTES:
            raise TypeError(f"{f.message_type.full_name}.{data_field} is not a bytes field")
        self._outer_key = varint(f.number << 3 | _LENGTH_DELIMITED)
        self._data_key = varint(data.number << 3 | _LENGTH_DELIMITED)

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
    item_key = varint(1 << 3 | _LENGTH_DELIMITED)
    for item in items:
        body = item if isinstance(item, bytes) else item.SerializeToString()
        parts += (item_key, varint(len(body)), body)
    inner = b"".join(parts)
    return b"".join((varint(field_number << 3 | _LENGTH_DELIMITED), varint(len(inner)), inner))


def size(item: Message | bytes) -> int:
    return len(item) if isinstance(item, bytes) else item.ByteSize()

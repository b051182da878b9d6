"""Protobuf Timestamps from epoch seconds (the way back, for display, is
kueue_client.formatting.seconds, which needs no protobuf)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(seconds: float | None) -> Timestamp | None:
    """A protobuf Timestamp for epoch seconds, None for None."""
    if seconds is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts

"""kueue.allocator: glibc malloc settings for the streaming processes."""

from __future__ import annotations

import platform

import pytest

from kueue import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tune_applies_once_on_glibc() -> None:
    assert allocator.tune() is True
    assert allocator.tune() is True  # again: nothing more to do, same answer


def test_a_1_mib_message_round_trip_still_works_after_tuning() -> None:
    # The settings change where buffers come from, never their contents.
    allocator.tune()
    from kueue.v1 import worker_service_pb2 as wpb

    data = bytes(range(256)) * 4096
    req = wpb.ConnectRequest()
    req.output.data = data
    assert wpb.ConnectRequest.FromString(req.SerializeToString()).output.data == data

"""kueue.rpc.peer_address: gRPC's peer strings as people write addresses."""

from __future__ import annotations

import pytest

from kueue.rpc import peer_address


@pytest.mark.parametrize(
    ("peer", "shown"),
    [
        ("ipv4:127.0.0.1:5000", "127.0.0.1:5000"),
        ("ipv6:%5B::1%5D:45576", "[::1]:45576"),
        ("ipv6:%5Bfe80::1%25eth0%5D:7", "[fe80::1%eth0]:7"),
        ("unix:/run/kueue.sock", "unix:/run/kueue.sock"),
        ("ipv4:", "ipv4:"),
        ("", ""),
    ],
)
def test_peer_address(peer: str, shown: str) -> None:
    assert peer_address(peer) == shown

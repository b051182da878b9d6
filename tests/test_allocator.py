"""kueue.allocator: glibc malloc settings for the streaming processes."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

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


# Eight threads that each allocate, then the count of malloc arenas that
# glibc's malloc_info reports.
ARENAS = """
import ctypes, sys, threading
from kueue import allocator
if sys.argv[1] == "tuned":
    assert allocator.tune()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    for _ in range(2000):
        libc.free(libc.malloc(4096))
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
out = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, out)
libc.fclose(out)
"""


def arenas(tmp_path: Path, how: str, env: dict[str, str]) -> int:
    report = tmp_path / f"malloc-{how}.xml"
    subprocess.run([sys.executable, "-c", ARENAS, how, str(report)], env=env, check=True, timeout=60)
    return report.read_text().count("<heap nr=")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_threads_share_two_arenas_unless_the_user_says_otherwise(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert arenas(tmp_path, "plain", env) > allocator.ARENA_MAX
    assert arenas(tmp_path, "tuned", env) <= allocator.ARENA_MAX
    # The user's own setting stands.
    assert arenas(tmp_path, "tuned", {**env, "MALLOC_ARENA_MAX": "6"}) > allocator.ARENA_MAX

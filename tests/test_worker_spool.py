"""Spool files on a real file system: unlinked at once, all-or-nothing writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kueue_worker.output_spool import SpoolDir, spool_path


def test_spool_files_are_unlinked_and_read_back(tmp_path: Path) -> None:
    spool = SpoolDir(spool_path(tmp_path, "w/1", hostname="h"))
    f = spool.open((3, 1), 1, 0)
    assert list(spool.path.iterdir()) == []  # nothing for a crash to leave behind
    f.write(b"hello ")
    f.write(b"world")
    assert f.read(0, 11) == b"hello world"
    assert f.read(6, 5) == b"world"
    f.remove()
    f.remove()  # twice is harmless


def test_a_failed_write_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    # A file size limit makes writes fail like a full disk; in a child, so the
    # limit does not touch the test process.
    script = f"""
import os, resource, signal
from pathlib import Path
from kueue_worker.output_spool import SpoolDir
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
f = SpoolDir(Path({str(tmp_path)!r})).open((1, 1), 1, 0)
resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.RLIM_INFINITY))
f.write(b"a" * 60)
try:
    f.write(b"b" * 60)
except OSError as exc:
    print("refused", exc.errno)
f.write(b"c" * 40)
assert f.read(0, 100) == b"a" * 60 + b"c" * 40, f.read(0, 100)
print("ok")
"""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["refused 27", "ok"]

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "cluster")
    try:
        yield c
    finally:
        c.close()
        # Shown by pytest only when the test failed.
        print("----- server log -----\n" + c.server_log()[-20000:])
        for name in sorted(p.stem[len("worker-") :] for p in c.root.glob("worker-*.log")):
            print(f"----- worker {name} log -----\n" + c.worker_log(name)[-10000:])

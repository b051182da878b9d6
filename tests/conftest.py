from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.cluster import Cluster

# CI draws the same examples at every run, so that a red run is one anybody
# can reproduce and a commit is never refused for an example it did not
# touch; runs elsewhere go on drawing new ones (and keep those that failed
# in .hypothesis/, to try first next time).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
    settings.load_profile("ci")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "cluster")
    try:
        yield c
    finally:
        c.close()
        print(c.logs())  # shown by pytest only when the test failed


@pytest.fixture
def ready(cluster: Cluster) -> Cluster:
    """A server and one worker, w1, connected."""
    cluster.start_server()
    cluster.start_worker("w1")
    cluster.wait_workers("w1")
    return cluster

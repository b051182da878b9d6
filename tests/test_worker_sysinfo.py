"""The machine probe, capacity and external-use arithmetic, and the stable worker id."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import psutil
import pytest

from kueue.config import WorkerSettings
from kueue.v1 import common_pb2
from kueue_worker import identity, shares, sysinfo
from kueue_worker.shares import Share, ShareError

MB = 1024 * 1024


def test_probe_describes_this_machine() -> None:
    info = sysinfo.probe()
    assert info.hostname == socket.gethostname()
    assert info.kernel == os.uname().release
    assert info.distribution
    assert info.cpu_cores >= 1
    assert info.cpu_frequency_mhz >= 0
    assert 0 < info.memory_available_mb <= info.memory_total_mb
    assert info.load_1 >= 0 and info.load_5 >= 0 and info.load_15 >= 0
    assert info.uptime_seconds > 0
    # Read the cheap way, they agree with psutil's readings.
    assert abs(info.uptime_seconds - (time.time() - psutil.boot_time())) < 5
    assert abs(sysinfo._available_mb() - psutil.virtual_memory().available // MB) < 256


def test_distribution_reads_pretty_name(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n')
    assert sysinfo.distribution(release) == "Debian GNU/Linux 12 (bookworm)"
    assert sysinfo.distribution(tmp_path / "missing")  # falls back to the OS name


def test_capacity_is_slots_cpus_and_ram() -> None:
    info = common_pb2.SystemInfo(cpu_cores=16, memory_total_mb=64000)
    cap = sysinfo.capacity(WorkerSettings(worker_max_parallel_jobs=7), info)
    assert cap == common_pb2.Resources(slots=7, cpus=16, ram_mb=64000)


def test_external_use_subtracts_what_our_jobs_account_for() -> None:
    info = common_pb2.SystemInfo(load_1=5.7, memory_total_mb=10000, memory_available_mb=4000)
    settings = WorkerSettings(dynamic_check_free_resources=True, dynamic_cpu_load_scale_factor=1.0)
    use = sysinfo.external_use(settings, info, reserved_cpus=2, jobs_rss_bytes=1500 * MB)
    assert use == common_pb2.Resources(cpus=3, ram_mb=4500)
    scaled = WorkerSettings(dynamic_check_free_resources=True, dynamic_cpu_load_scale_factor=0.5)
    assert sysinfo.external_use(scaled, info, reserved_cpus=0, jobs_rss_bytes=0).cpus == 2
    # Our jobs may use more than the load shows yet: never negative.
    busy = sysinfo.external_use(settings, info, reserved_cpus=10, jobs_rss_bytes=9000 * MB)
    assert (busy.cpus, busy.ram_mb) == (0, 0)


def test_external_use_is_zero_when_dynamic_checks_are_off() -> None:
    info = common_pb2.SystemInfo(load_1=50, memory_total_mb=10000, memory_available_mb=10)
    off = WorkerSettings(dynamic_check_free_resources=False)
    assert sysinfo.external_use(off, info, reserved_cpus=0, jobs_rss_bytes=0) == common_pb2.Resources()


def test_worker_id_is_stable_and_keyed_by_host_and_name(tmp_path: Path) -> None:
    first = identity.worker_id(tmp_path, "gpu", hostname="hostA")
    assert len(first) == 32 and int(first, 16) >= 0
    assert identity.worker_id(tmp_path, "gpu", hostname="hostA") == first
    assert identity.id_path(tmp_path, "gpu", "hostA") == tmp_path / "workers" / "hostA-gpu.id"
    # Same name on another machine sharing the home directory: another worker.
    assert identity.worker_id(tmp_path, "gpu", hostname="hostB") != first
    assert identity.worker_id(tmp_path, "cpu", hostname="hostA") != first
    assert identity.worker_id(tmp_path, "a/b", hostname="hostA") == identity.worker_id(
        tmp_path, "a/b", hostname="hostA"
    )


def test_worker_id_replaces_a_damaged_file(tmp_path: Path) -> None:
    path = identity.id_path(tmp_path, "w", "h")
    path.parent.mkdir(parents=True)
    path.write_text("garbage")
    new = identity.worker_id(tmp_path, "w", hostname="h")
    assert path.read_text().strip() == new
    assert identity.worker_id(tmp_path, "w", hostname="h") == new


def test_a_share_offers_its_part_of_slots_cpus_and_ram() -> None:
    info = common_pb2.SystemInfo(cpu_cores=16, memory_total_mb=64001)
    settings = WorkerSettings(worker_max_parallel_jobs=7)
    caps = [sysinfo.capacity(settings, info, Share(i, 3)) for i in (1, 2, 3)]
    assert [c.slots for c in caps] == [3, 2, 2]
    assert [c.cpus for c in caps] == [6, 5, 5]
    assert [c.ram_mb for c in caps] == [21334, 21334, 21333]


def test_a_share_counts_its_part_of_the_machines_load_and_memory() -> None:
    # Two processes of one worker: the load and memory of the other's jobs
    # show up in the machine's figures; each counts half of them.
    info = common_pb2.SystemInfo(cpu_cores=8, load_1=6.0, memory_total_mb=10000, memory_available_mb=4000)
    settings = WorkerSettings(dynamic_check_free_resources=True)
    use = sysinfo.external_use(settings, info, reserved_cpus=2, jobs_rss_bytes=1000 * MB, share=Share(2, 2))
    assert use == common_pb2.Resources(cpus=1, ram_mb=2000)
    whole = sysinfo.external_use(settings, info, reserved_cpus=2, jobs_rss_bytes=1000 * MB)
    assert whole == common_pb2.Resources(cpus=4, ram_mb=5000)


def test_shares_split_names_and_parse() -> None:
    for total in (0, 1, 2, 7, 10, 64):
        for count in (1, 2, 3, 8):
            assert sum(Share(i, count).part(total) for i in range(1, count + 1)) == total
    assert [Share(i, 3).worker_name("lab7") for i in (1, 2, 3)] == ["lab7", "lab7/2", "lab7/3"]
    assert Share.parse("2/3") == Share(2, 3) and str(Share(2, 3)) == "2/3"
    for bad in ("0/2", "3/2", "1", "a/b", "1/0", "-1/2"):
        with pytest.raises(ShareError, match="not a process number I/N"):
            Share.parse(bad)
    # One process per CPU at most, and always one.
    assert [shares.fitting(asked, 2) for asked in (1, 2, 3, 8)] == [1, 2, 2, 2]
    assert shares.fitting(4, 1) == 1 and shares.fitting(4, 0) == 1

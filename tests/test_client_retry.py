"""`kueue retry`: which submissions queue ended jobs again (pure), and the
verb end to end on a real cluster."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from kueue.v1 import common_pb2
from kueue_client import retry
from tests.cluster import Cluster


def job(id: int, command: str, env: dict[str, str], **spec: object) -> common_pb2.Job:
    return common_pb2.Job(
        id=id,
        state=common_pb2.JOB_STATE_FAILED,
        spec=common_pb2.JobSpec(command=[command], cwd="/work", env=env, user="ann", **spec),
    )


def merged(spec: common_pb2.JobSpec, instance: dict[str, str] | None) -> dict[str, str]:
    """A job's environment as the server makes it: the spec's, updated by its instance's."""
    return {**spec.env, **(instance or {})}


def test_an_array_goes_again_in_one_submission_each_member_with_its_own_variables() -> None:
    base = {"HOME": "/home/ann", "PATH": "/bin"}
    jobs = [job(i, "./sim.sh", {**base, "KUEUE_ARRAY_ID": str(i)}) for i in (2, 4, 7)]
    jobs.append(job(9, "./other.sh", base, stdin_pipe=True))
    calls = retry.submissions(jobs, "bob", "ws3")
    assert len(calls) == 2
    (array, instances), (single, none) = calls
    assert dict(array.env) == base and list(array.command) == ["./sim.sh"]
    assert instances == [{"KUEUE_ARRAY_ID": "2"}, {"KUEUE_ARRAY_ID": "4"}, {"KUEUE_ARRAY_ID": "7"}]
    assert [merged(array, i) for i in instances] == [dict(j.spec.env) for j in jobs[:3]]
    assert none is None and list(single.command) == ["./other.sh"] and dict(single.env) == base
    # Queued by whoever asks, and nobody is attached to feed its input.
    assert {(s.user, s.submit_host) for s in (array, single)} == {("bob", "ws3")}
    assert not single.stdin_pipe
    # The jobs as the server listed them are left as they were.
    assert jobs[0].spec.user == "ann" and jobs[3].spec.stdin_pipe


def test_only_consecutive_alike_jobs_share_a_submission_so_new_ids_follow_the_old_order() -> None:
    jobs = [job(1, "a", {"X": "1"}), job(2, "b", {"X": "1"}), job(3, "a", {"X": "2"})]
    calls = retry.submissions(jobs, "bob", "ws3")
    assert [(list(s.command), dict(s.env), i) for s, i in calls] == [
        (["a"], {"X": "1"}, None),
        (["b"], {"X": "1"}, None),
        (["a"], {"X": "2"}, None),
    ]


def test_a_large_array_is_split_within_the_servers_bounds() -> None:
    jobs = [job(i, "./sim.sh", {"KUEUE_ARRAY_ID": str(i)}) for i in range(1, retry.MAX_JOBS_PER_CALL + 3)]
    calls = retry.submissions(jobs, "bob", "ws3")
    counts = [len(i) if i is not None else 1 for _, i in calls]
    assert counts == [retry.MAX_JOBS_PER_CALL, 2]
    envs = [merged(s, e) for s, i in calls for e in (i or [None])]
    assert envs == [dict(j.spec.env) for j in jobs]


def test_an_array_member_alone_keeps_its_variable_as_its_own() -> None:
    member = job(2, "./sim.sh", {"HOME": "/h", "KUEUE_ARRAY_ID": "2"})
    ((spec, instances),) = retry.submissions([member], "bob", "ws3")
    assert dict(spec.env) == {"HOME": "/h"} and instances == [{"KUEUE_ARRAY_ID": "2"}]
    # Listed without environments, the new job still shows that it repeats the old one.
    listed = job(5, "./sim.sh", {"KUEUE_ARRAY_ID": "2"})
    assert retry.not_repeated([member], [member, listed]) == []
    plain = job(3, "./once.sh", {"HOME": "/h"})
    assert retry.submissions([plain], "bob", "ws3")[0][1] is None


def test_every_failure_goes_again_once_its_latest_failure_taken() -> None:
    env = {"KUEUE_ARRAY_ID": "2"}
    failed = job(2, "./sim.sh", env)
    ok = job(3, "./sim.sh", {"KUEUE_ARRAY_ID": "3"})
    by_hand = job(4, "./other.sh", {}, stdout_path="out")
    again = job(6, "./sim.sh", env)  # 2 queued again, by someone else, and failed again
    again.spec.user = "bob"
    candidates = [failed, by_hand, again]
    assert retry.not_repeated(candidates, [failed, ok, by_hand, again]) == [by_hand, again]
    # The same command with other output paths is another job.
    moved = job(7, "./other.sh", {})
    assert retry.not_repeated([by_hand], [by_hand, moved]) == [by_hand]


def test_retry_queues_failed_jobs_again_as_they_were(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    cluster.start_worker("w1")
    cluster.wait_workers("w1")
    # Members 2 and 4 fail the first time only; each says who it is and where.
    script = (
        'echo "$KUEUE_ARRAY_ID $(pwd) $MY_SETTING"; '
        "case $KUEUE_ARRAY_ID in 2|4) test -e flag$KUEUE_ARRAY_ID || { touch flag$KUEUE_ARRAY_ID; exit 3; };; esac"
    )
    env = {"MY_SETTING": "kept"}
    first = cluster.kueue("cmd", "--array", "1-4", script, cwd=tmp_path, env=env).stdout.split()
    assert cluster.kueue("wait", *first, check=False).returncode == 3

    # A dry run names them and queues nothing.
    preview = cluster.kueue("retry", "-f", "-n").stdout.splitlines()
    assert preview == [f"{first[1]}\t{script}", f"{first[3]}\t{script}"]
    assert json.loads(cluster.kueue("ls", "--json").stdout)["matching"] == 4

    again = cluster.kueue("retry", "-f", "-w", cwd="/")
    new_ids, codes = again.stdout.split()[:2], again.stdout.split()[2:]
    assert again.returncode == 0 and codes == ["0", "0"]
    assert [int(i) for i in new_ids] == [5, 6]
    logs = [cluster.kueue("log", i).stdout.strip() for i in new_ids]
    assert logs == [f"2 {tmp_path} kept", f"4 {tmp_path} kept"]

    # By id, a job that succeeded runs again too; the failed ones are not listed again.
    (once_more,) = cluster.kueue("retry", first[0]).stdout.split()
    cluster.kueue("wait", once_more)
    assert cluster.kueue("log", once_more).stdout.strip() == f"1 {tmp_path} kept"
    assert cluster.kueue("retry", "-f", check=False).stderr.strip() == "kueue: no failed jobs to queue again"


def test_retry_leaves_active_and_unknown_jobs_alone_with_one_line_each(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_server()
    (pending,) = cluster.kueue("cmd", "true", cwd=tmp_path).stdout.split()
    result = cluster.kueue("retry", pending, "999", check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"kueue: job {pending} is pending: only a job that has ended can be queued again "
        f"(kueue rm -k {pending} stops it)",
        "kueue: no job 999",
    ]
    usage = cluster.kueue("retry", check=False)
    assert usage.returncode == 2 and "give the ids of the jobs" in usage.stderr
    listed = cluster.kueue("ls", "-n", "0").stdout
    assert len([line for line in listed.splitlines() if "true" in line]) == 1
    assert isinstance(usage, subprocess.CompletedProcess)

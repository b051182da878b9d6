"""The scheduling core with workers run as several processes (Register.machine):
each process has its own slots and a share of the CPUs and RAM it starts held
jobs within, while a job may take the whole machine. Driven directly, no I/O."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from kueue.v1 import common_pb2
from kueue_server.model import Amount, State
from kueue_server.scheduler import Limits, Scheduler

MACHINE = Amount(0, 16, 64000)


def spec(cpus: int = 1, ram: int = 0) -> common_pb2.JobSpec:
    return common_pb2.JobSpec(
        command=["true"], cwd="/tmp", resources=common_pb2.Resources(slots=1, cpus=cpus, ram_mb=ram)
    )


def connect_machine(
    s: Scheduler, count: int = 2, slots: int = 2, prefetch: int = 0, only: int | None = None
) -> list[str]:
    """`count` processes of one 16-CPU machine, each with `slots` slots and
    an equal share; all connected, or process `only` (from 0)."""
    ids = [f"m/{i + 1}" for i in range(count)]
    for i, wid in enumerate(ids):
        if only is None or i == only:
            share = Amount(slots, MACHINE.cpus // count, MACHINE.ram_mb // count)
            s.connect_worker(
                wid,
                wid,
                share,
                common_pb2.SystemInfo(),
                "",
                (),
                0.0,
                prefetch=prefetch,
                machine="m",
                machine_capacity=MACHINE,
            )
    return ids


def submit(s: Scheduler, n: int = 1, cpus: int = 1, ram: int = 0) -> list[int]:
    sp = spec(cpus, ram)
    assert s.validate(sp) == []
    return [j.id for j in s.submit(1, sp, [None] * n, 0.0)]


def assigned(s: Scheduler) -> list[tuple[str, int]]:
    s.dispatch(0.0)
    return [(a.worker_id, a.job.id) for a in s.take_effects().assign]


def test_a_job_bigger_than_a_share_runs_and_the_machine_is_counted_whole() -> None:
    s = Scheduler(Limits())
    connect_machine(s)
    big = submit(s, cpus=12)
    four, eight = submit(s, cpus=4), submit(s, cpus=8)
    got = assigned(s)
    # The 12-CPU job goes to one process, the 4-CPU job to the other; the
    # 8-CPU job finds 16 - 12 - 4 = 0 CPUs free on the machine.
    assert sorted(j for _, j in got) == [big[0], four[0]]
    assert {w for w, _ in got} == {"m/1", "m/2"}
    assert s.jobs[eight[0]].state is State.PENDING
    for w in s.workers.values():
        assert w.free().cpus == 0
    s.finished(s.jobs[big[0]].worker_id, big[0], 1, 0, 0, 1.0, 0, "", 1.0)
    assert [j for _, j in assigned(s)] == eight


def test_a_job_bigger_than_the_machine_is_warned_about_and_a_share_is_not_the_limit() -> None:
    s = Scheduler(Limits())
    connect_machine(s)
    assert s.validate(spec(cpus=16)) == []
    (warning,) = s.validate(spec(cpus=17))
    assert "could ever fit 17 cpus" in warning and "16 cpus" in warning


def test_the_oldest_job_the_machine_can_run_keeps_newer_ones_off_it() -> None:
    s = Scheduler(Limits())
    connect_machine(s, prefetch=4)
    first = submit(s, 2, cpus=1)
    assert len(assigned(s)) == 2
    whole = submit(s, cpus=16)
    later = submit(s, 3, cpus=1)
    # Neither offered nor held: the 16-CPU job came first and waits for the machine.
    assert assigned(s) == []
    for job_id in first:
        s.finished(s.jobs[job_id].worker_id, job_id, 1, 0, 0, 1.0, 0, "", 1.0)
    got = assigned(s)
    assert [j for _, j in got] == whole + later
    # Only the process it went to holds the rest: it starts them once the
    # whole machine's job is over, the other could start them now.
    assert {w for w, _ in got} == {s.jobs[whole[0]].worker_id}
    assert all(s.jobs[j].prefetched for j in later)


def test_a_process_holds_jobs_only_where_its_start_cannot_overcommit_the_machine() -> None:
    s = Scheduler(Limits())
    connect_machine(s, prefetch=4)
    big = submit(s, cpus=12)
    small = submit(s, 6, cpus=4)
    got = dict((j, w) for w, j in assigned(s))
    big_on = got[big[0]]
    other = "m/2" if big_on == "m/1" else "m/1"
    # The other process runs one 4-CPU job and may hold none: started
    # within its share of 8, it would take the machine to 20 CPUs. The
    # process running the 12-CPU job may hold up to its prefetch: it starts
    # them only once that job is gone (12 is beyond its share), and then
    # within its share.
    assert got[small[0]] == other and not s.jobs[small[0]].prefetched
    held = [j for j in small[1:] if j in got]
    assert [got[j] for j in held] == [big_on] * 4
    assert all(s.jobs[j].prefetched for j in held)


def test_a_disconnected_process_loaded_from_the_store_still_counts_on_its_machine() -> None:
    s = Scheduler(Limits())
    connect_machine(s)
    big = submit(s, cpus=12)
    ((on, _),) = assigned(s)
    s.started(on, big[0], 1, 0.0)
    workers, jobs = list(s.workers.values()), list(s.jobs.values())
    for w in workers:
        w.jobs.clear()
        w.reserved = Amount()
    # A new server: both loaded, only the idle process reconnects.
    again = Scheduler(Limits())
    again.load(jobs, workers, 0.0)
    other = "m/2" if on == "m/1" else "m/1"
    connect_machine(again, only=["m/1", "m/2"].index(other))
    submit(again, cpus=8)
    assert assigned(again) == []


# What a process does with what it is offered, as kueue_worker's Attempts
# does: it starts a job at once, or the oldest it holds when a slot frees,
# if a slot is free and the job fits its share (or it runs nothing).
events = st.lists(
    st.tuples(
        st.sampled_from(["submit", "dispatch", "finish", "start", "connect"]),
        st.integers(0, 2),  # process index
        st.integers(0, 40),  # job pick
        st.sampled_from([1, 1, 1, 2, 3, 6, 8, 12, 14, 16]),  # cpus
    ),
    max_size=150,
)


def scenario(text: str) -> list[tuple[str, int, int, int]]:
    """Events written short: "submit:6" (CPUs), "connect:1", "finish:0" and
    "start:0" (process index), "dispatch"."""
    evts = []
    for step in text.split():
        kind, _, n = step.partition(":")
        number = int(n or 1)
        evts.append((kind, 0, 0, number) if kind == "submit" else (kind, number, 0, 1))
    return evts


@settings(max_examples=300, deadline=None)
@given(events, st.integers(2, 3), st.integers(0, 3))
# A full process holds a job that fits its share; its sibling connects and
# is offered a big one; the first then starts what it holds.
@example(
    scenario("submit:1 submit:1 dispatch submit:6 dispatch connect:1 submit:14 dispatch finish:0 start:0"),
    2,
    1,
)
# A process runs most of the machine; its sibling, full, would hold a job
# that it could start within its share when one of its jobs ends.
@example(
    scenario(
        "submit:14 dispatch connect:1 submit:1 submit:1 dispatch submit:6 submit:6 dispatch finish:1 start:1"
    ),
    2,
    1,
)
def test_what_the_processes_start_never_exceeds_the_machine(
    evts: list[tuple[str, int, int, int]], count: int, prefetch: int
) -> None:
    s = Scheduler(Limits(offer_timeout=1e9))
    # The others connect later (event "connect"): a process then finds its
    # siblings with jobs running and held.
    ids = connect_machine(s, count=count, slots=2, prefetch=prefetch, only=0)
    share = MACHINE.cpus // count
    running: dict[str, dict[int, int]] = {w: {} for w in ids}
    waiting: dict[str, list[int]] = {w: [] for w in ids}

    def may_start(wid: str, cpus: int) -> bool:
        mine = running[wid]
        return len(mine) < 2 and (not mine or sum(mine.values()) + cpus <= share)

    def start(wid: str, job_id: int) -> None:
        running[wid][job_id] = s.jobs[job_id].shape.cpus
        s.started(wid, job_id, s.jobs[job_id].attempt, 0.0)

    for kind, w, pick, cpus in evts:
        wid = ids[w % count]
        if kind == "connect":
            if wid not in s.workers:
                connect_machine(s, count=count, slots=2, prefetch=prefetch, only=w % count)
        elif kind == "submit":
            s.submit(1, spec(cpus), [None], 0.0)
        elif kind == "dispatch":
            s.dispatch(0.0)
            for a in s.take_effects().assign:
                job = a.job
                if not waiting[a.worker_id] and may_start(a.worker_id, job.shape.cpus):
                    start(a.worker_id, job.id)
                else:
                    waiting[a.worker_id].append(job.id)
                    s.assignment_reply(a.worker_id, job.id, job.attempt, True, "", False, 0.0, queued=True)
        elif kind == "start":
            queue = waiting[wid]
            while queue and may_start(wid, s.jobs[queue[0]].shape.cpus):
                start(wid, queue.pop(0))
        elif kind == "finish" and running[wid]:
            mine = sorted(running[wid])
            job_id = mine[pick % len(mine)]
            del running[wid][job_id]
            s.finished(wid, job_id, s.jobs[job_id].attempt, 0, 0, 1.0, 0, "", 0.0)
        s.take_effects()
        assert sum(sum(r.values()) for r in running.values()) <= MACHINE.cpus
        for wid in ids:
            # The server's reservations cover what the process runs.
            if wid in s.workers:
                assert sum(running[wid].values()) <= s.workers[wid].reserved.cpus


def test_what_a_full_process_holds_counts_against_its_siblings_offers() -> None:
    s = Scheduler(Limits())
    first = connect_machine(s, prefetch=2, only=0)[0]
    ones = submit(s, 2, cpus=1)
    six = submit(s, cpus=6)
    got = assigned(s)
    assert [j for _, j in got] == ones + six and s.jobs[six[0]].prefetched
    connect_machine(s, prefetch=2, only=1)
    # m/1 starts the 6-CPU job when one of its 1-CPU jobs ends (7 of its 8):
    # the machine has 16 - 8 left for m/2, not 16 - 2.
    nine = submit(s, cpus=9)
    assert assigned(s) == []
    for job_id in ones:
        s.finished(first, job_id, 1, 0, 0, 1.0, 0, "", 1.0)
    s.started(first, six[0], 1, 1.0)
    assert assigned(s) == [("m/2", nine[0])]

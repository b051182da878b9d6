#!/usr/bin/env python3
"""Where the spawning is done decides how close a worker gets to the plain
pool: a design experiment for item 1 (throughput), not a benchmark of kueue.

N `true` on 2 slots, with W us of busy Python per job standing for the
worker's bookkeeping (messages, ledger, logs: about 500 us today), eight ways,
each spawning `true` with the worker's own kueue_worker.spawn:

  pool     the plain pool of item 1 (2 threads of subprocess.run), no W
  single   one loop watches pidfds, spawns the next job when it reaps one and
           does W per job: kueue's worker today
  threads  a thread per slot spawns and waits for its own child (as the
           pool's threads do); the main thread does W per reported end
  loop+threads  the same, each end reported to an asyncio loop
           (call_soon_threadsafe), which does W per end
  handoff  threads per slot too, but the loop hands each its next job
           after the bookkeeping of the last end (no chaining on the thread)
  runners  a process per slot spawns and waits for its own child; the main
           process does W per end reported over a pipe
  single_io  single, with the worker's other work per job besides its
           Python: two output pipes read to their end, the exit seen through
           a pidfd, all in one epoll; W split before the spawn and at the end
  feed     runners as the worker would have to run them: the loop makes each
           job's output pipes and sends the write ends with the job over a
           Unix socket (one job queued at each runner behind its running
           one, so the runner starts it the moment the last one ends), the
           runner reports each start and end, the loop reads the output as
           single_io does; W split as there

A spawn's vfork waits until the child has exec'ed. From one loop, the child
mostly lands on the other core, which then has to be woken, and so does the
loop's own core when the child is done with it; a thread or process woken by
its own child's exit runs on the core that child just left, and the next
child starts there. See README, Performance.

W here is pure computation. The worker's loop makes some 40 system calls a
job, each of which lets a waiting thread take the GIL: built into the
worker (session 12, not kept), slot threads cost 0.3 ms of CPU a job in GIL
handoffs and made it slower, which this experiment cannot show. The process
designs share no GIL; a spawn helper process was tried in the worker and
lost to its wake-ups (README, Performance).

    python bench/spawn_designs.py [--jobs N] [--work-us W] [--rounds R] [--designs single_io,feed]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import queue
import select
import socket
import statistics
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.throughput import SLOTS, pool_rate
from kueue_worker import spawn

_RESULT = struct.Struct("ii")
_ENV = spawn.Environ.of(os.environ)


def _spawn_true() -> int:
    """`true` as kueue's worker spawns it (kueue_worker.spawn)."""
    null = spawn.devnull()
    pid, _ = spawn.spawn(["true"], cwd="/", env=_ENV, stdin=null, stdout=null, stderr=null)
    return pid


def _busy(seconds: float) -> None:
    """Python work that holds the GIL for `seconds` of this thread's CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def _shares(n: int) -> list[int]:
    return [n // SLOTS + (1 if i < n % SLOTS else 0) for i in range(SLOTS)]


@contextlib.contextmanager
def _threads(target: Callable[..., None], arguments: list[tuple[object, ...]]) -> Iterator[None]:
    """A thread per tuple of arguments, running while the block does, joined after it."""
    started = [threading.Thread(target=target, args=args) for args in arguments]
    for t in started:
        t.start()
    try:
        yield
    finally:
        for t in started:
            t.join()


def pool(n: int, work: float) -> None:
    pool_rate(n)


def single(n: int, work: float) -> None:
    epoll = select.epoll()
    pids: dict[int, int] = {}
    started = done = 0

    def start() -> None:
        nonlocal started
        pid = _spawn_true()
        fd = os.pidfd_open(pid)
        epoll.register(fd, select.EPOLLIN)
        pids[fd] = pid
        started += 1
        _busy(work / 2)

    for _ in range(min(SLOTS, n)):
        start()
    while done < n:
        for fd, _ in epoll.poll():
            os.waitpid(pids.pop(fd), 0)
            os.close(fd)
            done += 1
            if started < n:
                start()
            _busy(work / 2)
    epoll.close()


def threads(n: int, work: float) -> None:
    ends: queue.SimpleQueue[int] = queue.SimpleQueue()

    def slot(count: int) -> None:
        for _ in range(count):
            _, status = os.waitpid(_spawn_true(), 0)
            ends.put(status)

    with _threads(slot, [(count,) for count in _shares(n)]):
        for _ in range(n):
            ends.get(timeout=60)
            _busy(work)


def loop_threads(n: int, work: float) -> None:
    """threads, with the ends reported to an asyncio loop (call_soon_threadsafe),
    as the worker's loop would learn of them."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        all_done = loop.create_future()
        done = 0

        def ended(status: int) -> None:
            nonlocal done
            _busy(work)
            done += 1
            if done == n:
                all_done.set_result(None)

        def slot(count: int) -> None:
            for _ in range(count):
                _, status = os.waitpid(_spawn_true(), 0)
                loop.call_soon_threadsafe(ended, status)

        with _threads(slot, [(count,) for count in _shares(n)]):
            await asyncio.wait_for(all_done, 60)

    asyncio.run(main())


def handoff(n: int, work: float) -> None:
    """A thread per slot spawns and waits, but the asyncio loop hands it each
    next job after the bookkeeping of the last end (session 9's thread)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        all_done = loop.create_future()
        inboxes: list[queue.SimpleQueue[bool]] = [queue.SimpleQueue() for _ in range(SLOTS)]
        started = done = 0

        def ended(k: int) -> None:
            nonlocal started, done
            _busy(work)
            done += 1
            if started < n:
                started += 1
                inboxes[k].put(True)
            if done == n:
                all_done.set_result(None)
                for inbox in inboxes:
                    inbox.put(False)

        def slot(k: int) -> None:
            while inboxes[k].get(timeout=60):
                os.waitpid(_spawn_true(), 0)
                loop.call_soon_threadsafe(ended, k)

        with _threads(slot, [(k,) for k in range(SLOTS)]):
            for k in range(min(SLOTS, n)):
                started += 1
                inboxes[k].put(True)
            await asyncio.wait_for(all_done, 60)

    asyncio.run(main())


def runners(n: int, work: float) -> None:
    read_end, write_end = os.pipe()
    children = []
    for count in _shares(n):
        pid = os.fork()
        if pid == 0:  # a runner: spawn, wait, report
            code = 0
            try:
                os.close(read_end)
                for _ in range(count):
                    child = _spawn_true()
                    _, status = os.waitpid(child, 0)
                    os.write(write_end, _RESULT.pack(child, status))
            except BaseException:
                code = 1
            os._exit(code)
        children.append(pid)
    os.close(write_end)
    pending = b""
    done = 0
    while done < n:
        data = os.read(read_end, 65536)
        if not data:
            raise RuntimeError(f"the runners reported {done} of {n} ends")
        pending += data
        while len(pending) >= _RESULT.size:
            pending = pending[_RESULT.size :]
            done += 1
            _busy(work)
    os.close(read_end)
    for pid in children:
        os.waitpid(pid, 0)


def _output_pipes() -> tuple[list[int], list[int]]:
    """A job's stdout and stderr pipes as the worker makes them: the read
    ends (non-blocking, ours) and the write ends (the child's)."""
    ours, theirs = [], []
    for _ in range(2):
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(read_end, False)
        ours.append(read_end)
        theirs.append(write_end)
    return ours, theirs


def _spawn_true_into(stdout: int, stderr: int) -> int:
    null = spawn.devnull()
    pid, _ = spawn.spawn(["true"], cwd="/", env=_ENV, stdin=null, stdout=stdout, stderr=stderr)
    return pid


class _Ends:
    """What single_io and feed follow of each job: its exit and its two
    output pipes, read to their end. W/2 of bookkeeping once all three are."""

    def __init__(self, epoll: select.epoll, work: float) -> None:
        self.epoll = epoll
        self.work = work
        self.readers: dict[int, int] = {}  # read end -> job
        self.left: dict[int, int] = {}  # job -> its exit and output ends not seen yet
        self.done = 0

    def watch(self, job: int, read_ends: list[int]) -> None:
        self.left[job] = 1 + len(read_ends)
        for fd in read_ends:
            self.epoll.register(fd, select.EPOLLIN)
            self.readers[fd] = job

    def read(self, fd: int) -> None:
        """fd is readable: read it; at its end, close it."""
        if os.read(fd, 65536):
            return
        os.close(fd)
        self.seen(self.readers.pop(fd))

    def seen(self, job: int) -> None:
        self.left[job] -= 1
        if not self.left[job]:
            del self.left[job]
            self.done += 1
            _busy(self.work / 2)


def single_io(n: int, work: float) -> None:
    """single, with what the worker's loop does per job besides its Python:
    two output pipes read to their end, and the exit seen through a pidfd,
    all in one epoll. W is split: half before the spawn, half at the end."""
    epoll = select.epoll()
    ends = _Ends(epoll, work)
    exits: dict[int, tuple[int, int]] = {}  # pidfd -> (pid, job)
    started = 0

    def start() -> None:
        nonlocal started
        _busy(work / 2)
        ours, theirs = _output_pipes()
        pid = _spawn_true_into(*theirs)
        for fd in theirs:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        epoll.register(pidfd, select.EPOLLIN)
        exits[pidfd] = (pid, started)
        ends.watch(started, ours)
        started += 1

    for _ in range(min(SLOTS, n)):
        start()
    while ends.done < n:
        for fd, _ in epoll.poll():
            if fd in exits:
                pid, job = exits.pop(fd)
                os.waitpid(pid, 0)
                os.close(fd)
                if started < n:
                    start()
                ends.seen(job)
            elif fd in ends.readers:
                ends.read(fd)
    epoll.close()


_REPORT = struct.Struct("iii")  # runner, child pid, wait status (-1: started)


def _runner(k: int, sock: socket.socket, report: int) -> None:
    """feed's runner: take jobs (their stdout and stderr ends come along),
    spawn each the moment the last one ended, report start and end."""
    queued: list[tuple[int, int]] = []
    while True:
        sock.setblocking(not queued)
        try:
            data, fds, _, _ = socket.recv_fds(sock, 64, 64)
        except BlockingIOError:
            pass
        else:
            if not data:
                return
            queued.append((fds[0], fds[1]))
            if len(queued) == 1:
                continue  # more may have come meanwhile
        stdout, stderr = queued.pop(0)
        child = _spawn_true_into(stdout, stderr)
        os.close(stdout)
        os.close(stderr)
        os.write(report, _REPORT.pack(k, child, -1))
        _, status = os.waitpid(child, 0)
        os.write(report, _REPORT.pack(k, child, status))


def feed(n: int, work: float) -> None:
    """A process per slot spawns and waits for its own child (as runners),
    but fed as the worker would have to feed it: the loop makes each job's
    output pipes and sends their write ends along with the job over a Unix
    socket, keeping one job queued at each runner ahead of its running one;
    the runner reports each start and end over a pipe. The loop reads the
    output to its end as single_io does. W is split as in single_io."""
    epoll = select.epoll()
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    socks: list[socket.socket] = []
    runners: list[int] = []
    for k in range(SLOTS):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                ours.close()
                os.close(read_end)
                _runner(k, theirs, write_end)
            except BaseException:
                code = 1
            os._exit(code)
        theirs.close()
        socks.append(ours)
        runners.append(pid)
    os.close(write_end)
    epoll.register(read_end, select.EPOLLIN)
    ends = _Ends(epoll, work)
    queued: list[list[int]] = [[] for _ in range(SLOTS)]  # jobs sent to each runner, not started
    running: list[int] = [-1] * SLOTS
    sent = 0
    pending = b""

    def send(k: int) -> None:
        nonlocal sent
        _busy(work / 2)
        ours, theirs = _output_pipes()
        socket.send_fds(socks[k], [b"j"], theirs)
        for fd in theirs:
            os.close(fd)
        ends.watch(sent, ours)
        queued[k].append(sent)
        sent += 1

    for k in range(SLOTS):
        for _ in range(2):  # one to run, one queued behind it
            if sent < n:
                send(k)
    while ends.done < n:
        for fd, _ in epoll.poll():
            if fd == read_end:
                data = os.read(read_end, 65536)
                if not data:
                    raise RuntimeError(f"the runners reported {ends.done} of {n} ends")
                pending += data
                while len(pending) >= _REPORT.size:
                    k, _, status = _REPORT.unpack_from(pending)
                    pending = pending[_REPORT.size :]
                    if status == -1:
                        running[k] = queued[k].pop(0)
                        continue
                    job = running[k]
                    if sent < n:
                        send(k)
                    ends.seen(job)
            elif fd in ends.readers:
                ends.read(fd)
    for sock in socks:
        sock.close()
    os.close(read_end)
    epoll.close()
    for pid in runners:
        os.waitpid(pid, 0)


DESIGNS: dict[str, Callable[[int, float], None]] = {
    "pool": pool,
    "single": single,
    "threads": threads,
    "loop+threads": loop_threads,
    "handoff": handoff,
    "runners": runners,
    "single_io": single_io,
    "feed": feed,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--work-us", type=float, default=500.0, help="busy Python per job (default 500)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--designs", default=",".join(DESIGNS), help="which, comma-separated (default: all; pool always runs)"
    )
    args = parser.parse_args(argv)
    chosen = {"pool", *args.designs.split(",")}
    unknown = chosen - DESIGNS.keys()
    if unknown:
        parser.error(f"unknown design(s): {', '.join(sorted(unknown))}; known: {', '.join(DESIGNS)}")
    if not hasattr(os, "pidfd_open"):
        print("needs Linux (pidfd_open)", file=sys.stderr)
        return 2
    rates: dict[str, list[float]] = {name: [] for name in DESIGNS if name in chosen}
    for r in range(args.rounds):
        for name in rates:
            design = DESIGNS[name]
            began = time.perf_counter()
            design(args.jobs, args.work_us / 1e6)
            rates[name].append(args.jobs / (time.perf_counter() - began))
        print(f"round {r + 1}: " + ", ".join(f"{name} {v[-1]:.0f}" for name, v in rates.items()), flush=True)
    print(f"{args.jobs} x true, {SLOTS} slots, {args.work_us:.0f} us of Python per job (medians, jobs/s):")
    for name, values in rates.items():
        ratio = statistics.median(v / p for v, p in zip(values, rates["pool"], strict=True))
        print(f"  {name:12} {statistics.median(values):7.0f}   {ratio:.2f} of the pool")
    return 0


if __name__ == "__main__":
    sys.exit(main())

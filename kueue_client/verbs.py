"""One function per `kueue` verb: (parsed arguments, context) -> exit status.

The table views are imported by the verbs that draw them, and
kueue_client.status (with it protobuf) by the verbs that read jobs: `cmd`
and `run` start faster without them, and `cmd` loads no protobuf at all
(kueue_client/submission.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from kueue_client import terminal
from kueue_client.context import Context
from kueue_client.errors import EXIT_USAGE, KueueError, UsageError
from kueue_client.formatting import plural
from kueue_client.spec import (
    array_instances,
    instance_chunks,
    job_spec,
    parse_resources,
    read_line_instances,
    spec_fields,
)

if TYPE_CHECKING:
    from kueue.v1 import common_pb2

# Lines of the terminal `kueue ls` leaves for other things than job rows:
# table header, two footer lines and the next prompt.
LS_RESERVED_LINES = 4


def _print_json(value: Any) -> None:
    import json  # here: `kueue cmd` and `run` start faster without it

    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _render(
    args: argparse.Namespace,
    as_json: Callable[[], Any],
    rich: Callable[[int], Any],
    text: Callable[[int], str],
) -> None:
    """One listing three ways: JSON when asked, rich on a terminal, plain text when piped."""
    if args.json:
        _print_json(as_json())
    elif terminal.use_rich():
        console = terminal.console()
        console.print(rich(console.width))
    else:
        sys.stdout.write(text(terminal.width()))


def _as_dict(message: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(message, preserving_proto_field_name=True)


def _command(args: argparse.Namespace, verb: str) -> list[str]:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError(f"no command given (usage: kueue {verb} [OPTIONS] CMD...)")
    return command


def cmd(args: argparse.Namespace, ctx: Context) -> int:
    command = _command(args, "cmd")
    # Input errors first: they must not wait for a config file or a server.
    global_resources = parse_resources(args.resource)
    instances = None
    if args.array is not None:
        instances = array_instances(args.array)
    elif args.each_line is not None:
        instances = read_line_instances(args.each_line)
    defaults = ctx.config.client_settings
    spec = spec_fields(
        command,
        slots=args.slots,
        cpus=defaults.job_default_cpus if args.cpus is None else args.cpus,
        ram_mb=defaults.job_default_ram_mb if args.ram is None else args.ram,
        global_resources=global_resources,
        stdout_path=args.stdout,
        stderr_path=args.stderr,
        use_worker_env=args.no_env,
    )
    from kueue_client.submission import Submitter

    job_ids: list[int] = []
    warned: set[str] = set()
    # Without protobuf (see submission.py). A large array in several calls,
    # each printing its ids as it lands: if a later call fails, what is
    # already queued has been said.
    with Submitter(ctx.config) as submitter:
        for chunk in instance_chunks(instances) if instances else [None]:
            resp = submitter.submit(spec, chunk)
            for message in resp.warnings:
                if message not in warned:
                    warned.add(message)
                    terminal.warn(message)
            for job_id in resp.job_ids:
                print(job_id)
            sys.stdout.flush()  # a script reading ids must get them before the wait
            job_ids += resp.job_ids
    if not args.wait:
        return 0
    from kueue_client.status import first_failure

    jobs = _wait(ctx, job_ids)
    _print_exit_statuses(jobs)
    return first_failure(jobs)


def _print_exit_statuses(jobs: Sequence[common_pb2.Job]) -> None:
    """cmd -w: each job's exit status; why, on stderr, for one that never ran
    (its status alone would look like the command's own failure)."""
    from kueue_client.status import exit_status

    for job in jobs:
        print(exit_status(job))
    _say_why_not_run(jobs)


def _say_why_not_run(jobs: Sequence[common_pb2.Job]) -> None:
    """On stderr, after what went to stdout: why each job that never ran did not."""
    from kueue_client.status import why_not_run

    sys.stdout.flush()
    for job in jobs:
        why = why_not_run(job)
        if why is not None:
            print(f"kueue: {why}", file=sys.stderr)


def run(args: argparse.Namespace, ctx: Context) -> int:
    command = _command(args, "run")
    global_resources = parse_resources(args.resource)
    defaults = ctx.config.client_settings
    spec = job_spec(
        command,
        slots=args.slots,
        cpus=defaults.job_default_cpus if args.cpus is None else args.cpus,
        ram_mb=defaults.job_default_ram_mb if args.ram is None else args.ram,
        global_resources=global_resources,
        use_worker_env=args.no_env,
    )
    result = ctx.client.attach(
        spec,
        stdin=0 if _is_open(0) and not args.no_stdin else None,
        stdout=1,
        stderr=2,
        kill_on_detach=args.kill_on_detach,
        status_line=not args.quiet and terminal.is_terminal(sys.stderr),
        forward_signals=True,
    )
    return result.exit_status


def _is_open(fd: int) -> bool:
    import os

    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def list_jobs(args: argparse.Namespace, ctx: Context) -> int:
    from kueue_client import views

    states = _state_filter(args)
    if args.watch:
        from kueue_client import live

        return live.ls_watch(args, ctx, states)
    if args.n is not None:
        limit = args.n
    elif args.json or not terminal.is_terminal():
        limit = 0
    else:
        limit = max(1, terminal.height() - LS_RESERVED_LINES)
    resp = ctx.client.list_jobs(states, limit=limit)
    if args.json:
        _print_json(views.jobs_json(resp))
    elif terminal.use_rich():
        console = terminal.console()
        console.print(views.jobs_rich(resp.jobs, resp.summary, resp.matching, width=console.width))
    else:
        sys.stdout.write(views.jobs_text(resp.jobs, resp.summary, resp.matching, width=terminal.width()))
    return 0


def show_job(args: argparse.Namespace, ctx: Context) -> int:
    from kueue_client import job_details

    resp = ctx.client.get_job(args.id, tail_bytes=args.tail)
    job = resp.job
    if args.json:
        _print_json(
            {
                "job": _as_dict(job),
                "stdout_tail": resp.stdout_tail.decode(errors="replace"),
                "stderr_tail": resp.stderr_tail.decode(errors="replace"),
            }
        )
        return 0
    rich = terminal.use_rich()

    def say(line: str) -> None:
        if rich:
            from rich.text import Text

            terminal.show(Text(line, style="dim"))
        else:
            print(line)

    if rich:
        terminal.show(job_details.job_details_rich(job))
    else:
        sys.stdout.write(job_details.job_details_text(job))
    tails = (
        ("stdout", job.spec.stdout_path, resp.stdout_tail, job.stdout_bytes),
        ("stderr", job.spec.stderr_path, resp.stderr_tail, job.stderr_bytes),
    )
    for name, path, tail, total in tails:
        if path or args.tail == 0:
            continue  # not captured: it is in a file on the worker
        say(job_details.output_tail_header(name, tail, total, job.output_truncated))
        if tail:
            # Written as is: it is the job's own output, escape codes included.
            sys.stdout.flush()
            sys.stdout.buffer.write(tail if tail.endswith(b"\n") else tail + b"\n")
            sys.stdout.buffer.flush()
    hint = job_details.log_hint(job)
    if hint:
        say(hint)
    return 0


def log(args: argparse.Namespace, ctx: Context) -> int:
    from kueue_client import output
    from kueue_client.status import exit_status, why_not_run

    streams = ["stdout", "stderr"] if args.both else ["stderr" if args.stderr else "stdout"]
    finished = output.print_output(ctx.client, args.id, streams, tail_lines=args.tail, follow=args.follow)
    if finished is not None and args.follow:
        why = why_not_run(finished)
        if why is not None:
            print(f"kueue: {why}", file=sys.stderr)  # no output, and no word why
        return exit_status(finished)
    return 0


def _wait(ctx: Context, ids: Sequence[int]) -> list[common_pb2.Job]:
    """Client.wait, with a progress bar on stderr when it is a terminal."""
    from kueue_client import progress

    if not progress.wanted():
        return ctx.client.wait(ids)
    with progress.WaitProgress(ids) as bar:
        return ctx.client.wait(ids, on_change=bar.on_change)


def wait_job(args: argparse.Namespace, ctx: Context) -> int:
    from kueue_client.status import failed_to_start, first_failure, job_status

    jobs = _wait(ctx, args.ids)
    for job in jobs:
        print(f"{job.id}: {job_status(job)[0]}")
    # "failed to start" alone does not say why (a canceled job's line does).
    _say_why_not_run([job for job in jobs if failed_to_start(job)])
    return first_failure(jobs)


def remove_job(args: argparse.Namespace, ctx: Context) -> int:
    from kueue_client.status import FINAL_STATES, job_status

    status = 0
    for job_id in dict.fromkeys(args.ids):
        try:
            job = ctx.client.cancel(job_id, kill=args.kill)
        except KueueError as exc:
            print(f"kueue: {exc}", file=sys.stderr)
            if exc.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "UNAUTHENTICATED"):
                return exc.exit_status  # the same for every id left: said once
            # Go on with the other ids; the first failure decides the status.
            status = status or exc.exit_status
            continue
        if job.kill_requested and job.state not in FINAL_STATES:
            print(f"job {job_id}: killing")
        else:
            print(f"job {job_id}: {job_status(job)[0]}")
    return status


RETRY_LIST_MARGIN = 1000


def retry(args: argparse.Namespace, ctx: Context) -> int:
    from kueue_client import retry as again
    from kueue_client.spec import submitter
    from kueue_client.status import FINAL_STATES, STATE_NAMES, first_failure

    wanted = [name for name in ("failed", "canceled") if getattr(args, name)]
    if not args.ids and not wanted:
        raise UsageError("give the ids of the jobs to queue again, or -f/-c for every failed/canceled one")
    status = 0
    jobs: dict[int, common_pb2.Job] = {}
    for job_id in dict.fromkeys(args.ids):
        try:
            job = ctx.client.get_job(job_id, tail_bytes=1).job
        except KueueError as exc:
            # Go on with the other ids; the first failure decides the status.
            print(f"kueue: {exc}", file=sys.stderr)
            status = status or exc.exit_status
            continue
        if job.state not in FINAL_STATES:
            print(
                f"kueue: job {job_id} is {STATE_NAMES[job.state]}: only a job that has ended can be "
                f"queued again (kueue rm -k {job_id} stops it)",
                file=sys.stderr,
            )
            status = status or EXIT_USAGE
            continue
        jobs[job_id] = job
    if wanted:
        listed = ctx.client.list_jobs(wanted, include_env=True).jobs
        if listed:
            # Every job since the oldest of them (ids only grow; a margin
            # for jobs submitted meanwhile), to leave out those queued again.
            newest = ctx.client.list_jobs(limit=1).jobs[-1].id
            span = newest - min(job.id for job in listed) + 1 + RETRY_LIST_MARGIN
            since = ctx.client.list_jobs(limit=span).jobs
            for job in again.not_repeated(listed, since):
                jobs.setdefault(job.id, job)
    if not jobs:
        if not status:
            print(f"kueue: no {' or '.join(wanted)} jobs to queue again", file=sys.stderr)
        return status
    if args.dry_run:
        from kueue_client.formatting import command_text

        for job in jobs.values():
            print(f"{job.id}\t{command_text(job.spec.command, job.spec.shell)}")
        return status
    new_ids: list[int] = []
    for spec, instances in again.submissions(list(jobs.values()), *submitter()):
        resp = ctx.client.submit(spec, instances)
        for message in resp.warnings:
            terminal.warn(message)
        new_ids += resp.job_ids
    for job_id in new_ids:
        print(job_id)
    sys.stdout.flush()  # a script reading ids must get them before the wait
    if not args.wait:
        return status
    ended = _wait(ctx, new_ids)
    _print_exit_statuses(ended)
    return status or first_failure(ended)


def clean_jobs(args: argparse.Namespace, ctx: Context) -> int:
    removed = ctx.client.clean(all=args.all)
    print(f"removed {plural(removed, 'job')}")
    return 0


def list_workers(args: argparse.Namespace, ctx: Context) -> int:
    from kueue_client import views

    if args.watch:
        from kueue_client import live

        return live.workers_watch(args, ctx)

    workers = ctx.client.list_workers(include_disconnected=args.all)
    _render(
        args,
        lambda: {"workers": [_as_dict(w) for w in workers]},
        lambda width: views.workers_rich(workers, width=width),
        lambda width: views.workers_text(workers, width=width),
    )
    return 0


def top(args: argparse.Namespace, ctx: Context) -> int:
    from kueue_client import live

    return live.top(args, ctx, _state_filter(args))


def _state_filter(args: argparse.Namespace) -> list[str]:
    """The states asked for by the flags of cli.state_filters (none: all)."""
    from kueue_client.status import STATE_NAMES

    return [name for name in STATE_NAMES.values() if getattr(args, name)]


def drain(args: argparse.Namespace, ctx: Context) -> int:
    def said(worker: common_pb2.Worker) -> str:
        return f"worker {worker.name} is drained: no new jobs; its {worker.running_jobs} running job(s) go on"

    return _each_worker(args.ids, ctx, True, said)


def undrain(args: argparse.Namespace, ctx: Context) -> int:
    def said(worker: common_pb2.Worker) -> str:
        return f"worker {worker.name} {'is still stopping by itself' if worker.draining else 'takes new jobs again'}"

    return _each_worker(args.ids, ctx, False, said)


def _each_worker(ids: list[str], ctx: Context, drain: bool, said: Callable[[common_pb2.Worker], str]) -> int:
    """Drain or undrain each worker in turn; the name of a worker run as
    several processes stands for all of them (NAME, NAME/2, ...), as an
    operator draining a machine means. One the server does not know is said
    so and skipped."""
    machines: dict[str, list[str]] = {}
    for worker in ctx.client.list_workers(include_disconnected=True):
        if worker.machine:
            machines.setdefault(worker.machine, []).append(worker.name)
    refs = [name for ref in ids for name in sorted(machines.get(ref, [ref]), key=_process_order)]
    status = 0
    for ref in dict.fromkeys(refs):
        try:
            worker = ctx.client.drain_worker(ref, drain)
        except KueueError as exc:
            if exc.code != "NOT_FOUND":
                raise
            print(f"kueue: {exc}", file=sys.stderr)
            status = max(status, exc.exit_status)
            continue
        print(said(worker))
    return status


def _process_order(name: str) -> tuple[int, str]:
    """NAME before NAME/2 before NAME/10."""
    base, _, index = name.rpartition("/")
    return (int(index), base) if base and index.isdigit() else (1, name)


def show_worker(args: argparse.Namespace, ctx: Context) -> int:
    from kueue_client import views

    resp = ctx.client.get_worker(args.id)
    _render(
        args,
        lambda: {"worker": _as_dict(resp.worker), "jobs": [_as_dict(j) for j in resp.jobs]},
        lambda width: views.worker_details_rich(resp, width=width),
        lambda width: views.worker_details_text(resp, width=width),
    )
    return 0


def list_resources(args: argparse.Namespace, ctx: Context) -> int:
    from kueue_client import views

    resources = ctx.client.list_resources()
    _render(
        args,
        lambda: {"resources": [_as_dict(r) for r in resources]},
        lambda width: views.resources_rich(resources, width=width),
        lambda width: views.resources_text(resources, width=width),
    )
    return 0


def up(args: argparse.Namespace, ctx: Context) -> int:
    from kueue_client import local_cluster

    return local_cluster.up(ctx)


def down(args: argparse.Namespace, ctx: Context) -> int:
    from kueue_client import local_cluster

    return local_cluster.down(ctx)


def install_units(args: argparse.Namespace, ctx: Context) -> int:
    from kueue_client import systemd_units

    config = ctx.config
    if config.path is None:
        raise KueueError("no config file for the units to use")
    both = not (args.server or args.worker)
    for line in systemd_units.install(
        config.path,
        config.worker_settings.kill_grace_seconds,
        server=both or args.server,
        worker=both or args.worker,
        force=args.force,
        drain_timeout=args.drain_timeout,
    ):
        print(line)
    return 0


def complete(args: argparse.Namespace, ctx: Context) -> int:
    from kueue_client import completion

    if args.ids:
        return completion.print_ids(args.ids, ctx)
    if not args.shell:
        raise UsageError("which shell? kueue complete bash|zsh|fish")
    from kueue_client.cli import build_parser

    sys.stdout.write(completion.script(args.shell, build_parser()))
    return 0

"""The `kueue` command: argument parsing and error reporting.

The verbs themselves live in kueue_client.verbs (loaded after parsing, so
`--help` and shell completion stay fast). Every expected failure ends as one
line `kueue: <message>` on stderr: exit status 2 for bad input, 1 otherwise,
130 after Ctrl-C. `kueue run` exits with its job's status instead (255 when
the server cannot be reached).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import kueue
from kueue_client.errors import KueueError, UsageError
from kueue_client.formatting import is_utf8

if TYPE_CHECKING:
    from kueue_client.context import Context

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a C program killed by it would


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage: errors stay one line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        # Unknown flags are only found once the verb's parser is done; point
        # at that verb's help, not the top-level one.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            verb = getattr(parsed, "verb", None)
            where = f"{self.prog} {verb}" if verb else self.prog
            raise UsageError(f"unrecognized arguments: {' '.join(extras)} (see {where} --help)")
        return parsed


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def state_filters(p: argparse.ArgumentParser) -> None:
    """The job state filters of `ls` (and of `top`'s job table)."""
    for short, long in (
        ("-p", "pending"),
        ("-o", "offered"),
        ("-r", "running"),
        ("-s", "succeeded"),
        ("-f", "failed"),
        ("-c", "canceled"),
    ):
        p.add_argument(short, f"--{long}", action="store_true", help=f"{long} jobs (filters combine)")


# Job ids are SQLite rowids; counts travel as protobuf uint32 fields.
MAX_JOB_ID = 2**63 - 1
MAX_COUNT = kueue.UINT32_MAX
_DIGITS = re.compile(r"[0-9]+")


def job_id(text: str) -> int:
    digits = text.strip().removeprefix("#")
    # ASCII digits only: int() would also take "1_000", "+5" and other scripts' digits.
    if not _DIGITS.fullmatch(digits) or not 1 <= int(digits) <= MAX_JOB_ID:
        raise argparse.ArgumentTypeError(f"not a job id: '{text}'")
    return int(digits)


def count(text: str) -> int:
    digits = text.strip()
    if digits.startswith("-") and _DIGITS.fullmatch(digits[1:]):
        raise argparse.ArgumentTypeError(f"must not be negative: '{text}'")
    if not _DIGITS.fullmatch(digits):
        raise argparse.ArgumentTypeError(f"not a whole number: '{text}'")
    value = int(digits)
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"too large: '{text}' (at most {MAX_COUNT})")
    return value


def worker_ref(text: str) -> str:
    """A worker's id or name, which the server knows as UTF-8."""
    if not is_utf8(text):
        raise argparse.ArgumentTypeError(f"no worker is named {text!r}: it is not UTF-8")
    return text


def add_resource_flags(p: argparse.ArgumentParser) -> None:
    """What a job asks for: shared by `cmd` and `run`."""
    p.add_argument("-j", "--slots", type=count, default=1, metavar="SLOTS", help="job slots (default 1)")
    p.add_argument(
        "-c", "--cpus", type=count, metavar="CPUS", help="cpus (default: client_settings.job_default_cpus)"
    )
    p.add_argument(
        "-r",
        "--ram",
        type=count,
        metavar="RAM_MB",
        help="RAM in MiB (default: client_settings.job_default_ram_mb)",
    )
    p.add_argument(
        "--resource",
        action="append",
        default=[],
        metavar="NAME[=N]",
        help="global resource (license) the job needs, N default 1; repeatable",
    )


class _Unbuilt:
    """Stands for the parser of a verb build_parser() leaves out: takes its
    arguments and groups, and keeps nothing."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_mutually_exclusive_group(self, **kwargs: Any) -> _Unbuilt:
        return self

    def set_defaults(self, **kwargs: Any) -> None:
        pass


def verb_named(argv: Sequence[str]) -> str | None:
    """The word in the verb's place of a command line, unless something
    before it but --config asks for the parser as a whole (--help, --version,
    an unknown option)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config":
            i += 2
        elif arg.startswith("--config="):
            i += 1
        elif arg.startswith("-"):
            return None
        else:
            return arg
    return None


def build_parser(only_verb: str | None = None) -> ArgumentParser:
    """The whole command line's parser; with `only_verb` (a verb or alias) one
    that knows that verb alone, as main() takes it for a command line that
    names one: making every verb's parser cost each `kueue cmd` about 6 ms.
    A word that is no verb gets the whole parser (and its error)."""
    # --config is accepted before and after the verb; SUPPRESS keeps the
    # verb's copy from overwriting one given before it.
    common = ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help=kueue.CONFIG_OPTION_HELP,
    )
    parser = ArgumentParser(
        prog="kueue",
        formatter_class=_Formatter,
        description="Queue commands to run on the workers of a Kueue cluster.",
        epilog="examples:\n"
        "  kueue up                       start a server and a worker on this machine\n"
        "  kueue cmd -c 4 ./train.py      queue a job (prints its id)\n"
        "  kueue ls                       recent jobs\n"
        "  kueue VERB --help              help on one verb",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=kueue.CONFIG_OPTION_HELP,
    )
    parser.add_argument("--version", action="version", version=f"kueue {kueue.__version__}")
    verbs = parser.add_subparsers(title="verbs", metavar="VERB", dest="verb")

    built = False

    def verb(
        name: str, aliases: Sequence[str], help: str, example: str, ids: str = "", notes: str = ""
    ) -> Any:
        nonlocal built
        if only_verb is not None and only_verb != name and only_verb not in aliases:
            return _Unbuilt()
        built = True
        label = "examples:" if "\n" in example else "example:"
        epilog = f"{label}\n  " + example.replace("\n", "\n  ") + (f"\n\n{notes}" if notes else "")
        sub = verbs.add_parser(
            name,
            aliases=list(aliases),
            help=help,
            description=help[0].upper() + help[1:] + ".",
            epilog=epilog,
            formatter_class=_Formatter,
            parents=[common],
        )
        sub.set_defaults(handler=name.replace("-", "_"), complete_ids=ids)
        return sub

    # ---- cmd
    p = verb(
        "cmd",
        [],
        "queue a command to run in the current directory on some worker; prints the job id",
        "kueue cmd -c 4 -r 8000 python train.py --epochs 10\n"
        'kueue cmd "make && ./run > log"              one argument with shell syntax: run by /bin/sh -c\n'
        "kueue cmd --array 1-100 ./sim.sh             sim.sh reads $KUEUE_ARRAY_ID\n"
        "kueue cmd --each-line inputs.txt ./conv.sh   conv.sh reads $KUEUE_ENTRY\n"
        "kueue cmd -w ./check.sh && echo passed       wait, exit with the job's exit code",
        notes="The job runs in this directory, with this environment (less host-local\n"
        "variables such as DISPLAY or SSH_*), on a worker where the directory exists.",
    )
    add_resource_flags(p)
    p.add_argument(
        "-o",
        "--stdout",
        metavar="PATH",
        default="",
        help="write stdout to PATH on the worker (null: discard)",
    )
    p.add_argument(
        "-e",
        "--stderr",
        metavar="PATH",
        default="",
        help="write stderr to PATH on the worker (null: discard)",
    )
    p.add_argument(
        "-w",
        "--wait",
        action="store_true",
        help="wait for the job(s), print the exit code(s) and exit with it",
    )
    p.add_argument("--no-env", action="store_true", help="use the worker's environment instead of this one")
    many = p.add_mutually_exclusive_group()
    many.add_argument(
        "--array", metavar="START-END[:STEP]", help="one job per index, given to the job as $KUEUE_ARRAY_ID"
    )
    many.add_argument(
        "--each-line",
        metavar="FILE",
        help="one job per non-empty line of FILE (-: stdin), given to the job as $KUEUE_ENTRY",
    )
    p.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="CMD...", help="the command and its arguments"
    )

    # ---- run
    p = verb(
        "run",
        [],
        "run a command on a free worker as if it ran here: stdin, stdout, stderr, signals and exit code",
        "kueue run -c 4 make -j4 test\n"
        "gunzip < big.gz | kueue run ./filter > out.txt\n"
        "seq 200 | xargs -P 8 -I{} kueue run ./sim.sh {}    8 at a time, on free workers",
        notes="Waits for a worker (on a terminal a status line says so), runs CMD in this\n"
        "directory with this environment, streams stdin to it and its output back, and\n"
        "exits with its exit code (128+N if killed by signal N). Ctrl-C, SIGTERM,\n"
        "SIGHUP and SIGQUIT go to the job; a second Ctrl-C within 2 s kills it. If the\n"
        "worker is lost, the job starts again elsewhere (stdin is replayed). If this\n"
        "command dies, the job goes on (kueue log -f ID) unless --kill-on-detach.\n"
        "Exit 126/127 when CMD cannot be executed/found, 255 when the server is lost.\n"
        "Like ssh, it reads ahead of the job from its stdin (up to 4 MiB): in a loop\n"
        "reading the same input (while read x; do kueue run ...; done < list) give -n.",
    )
    add_resource_flags(p)
    p.add_argument("--no-env", action="store_true", help="use the worker's environment instead of this one")
    p.add_argument("-q", "--quiet", action="store_true", help="no status line while waiting for a worker")
    p.add_argument(
        "-n",
        "--no-stdin",
        action="store_true",
        help="the job's stdin is /dev/null and ours is left unread, as ssh -n (inside `while read`)",
    )
    p.add_argument(
        "--kill-on-detach",
        action="store_true",
        help="kill the job if this command dies or loses the server (default: it goes on)",
    )
    p.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="CMD...", help="the command and its arguments"
    )

    # ---- list-jobs
    p = verb(
        "list-jobs",
        ["ls"],
        "list the most recent jobs with counts per state and an ETA",
        "kueue ls -r -p        running and pending jobs\nkueue ls -n 0 --json  all jobs as JSON\n"
        "kueue ls -w           the table kept current until q or Ctrl-C",
        notes="JSON is the protobuf JSON mapping with the field names of\n"
        "protos/kueue/v1/common.proto (Job, JobSummary); 64-bit numbers such as\n"
        "ids are strings, fields at their default value are left out.",
    )
    p.add_argument(
        "-n",
        type=count,
        metavar="N",
        help="show the N most recent (default: as many as fit the terminal, all when piped; 0: all)",
    )
    state_filters(p)
    p.add_argument("--json", action="store_true", help='print {"jobs": [...], "summary": {...}} as JSON')
    p.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help="keep the table current on the terminal (q or Ctrl-C leaves)",
    )

    # ---- show-job
    p = verb(
        "show-job",
        ["show"],
        "show every field of a job and the tail of its captured output",
        "kueue show 42",
        ids="jobs",
    )
    p.add_argument("id", type=job_id, metavar="ID")
    p.add_argument(
        "--tail",
        type=count,
        default=4096,
        metavar="BYTES",
        help="bytes of stdout/stderr to show (default 4096)",
    )
    p.add_argument("--json", action="store_true", help="print as JSON")

    # ---- log
    p = verb(
        "log",
        ["output"],
        "print the captured output of a job",
        "kueue log -f 42              follow it like tail -f\n"
        "kueue log --both --tail 20 42  the last 20 lines of stdout and of stderr",
        ids="jobs",
    )
    p.add_argument("id", type=job_id, metavar="ID")
    p.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing until the job has ended (waits for a pending one), exit with its exit code",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    which.add_argument("--both", action="store_true", help="stdout to stdout and stderr to stderr")
    p.add_argument("-n", "--tail", type=count, metavar="N", help="only the last N lines")

    # ---- wait-job
    p = verb(
        "wait-job",
        ["wait"],
        "wait until jobs have finished or were canceled; exit with the exit code (first failing one)",
        "kueue wait 42 43 && echo all succeeded",
        ids="jobs",
    )
    p.add_argument("ids", type=job_id, nargs="+", metavar="ID")

    # ---- remove-job
    p = verb(
        "remove-job",
        ["rm"],
        "cancel jobs; a running one only with --kill",
        "kueue rm 42\nkueue rm -k 43      (stops the running process on its worker)",
        ids="jobs",
    )
    p.add_argument("ids", type=job_id, nargs="+", metavar="ID")
    p.add_argument("-k", "--kill", action="store_true", help="also kill running jobs")

    # ---- retry
    p = verb(
        "retry",
        [],
        "queue jobs that have ended again: the same command, directory, environment and resources; "
        "prints the new ids",
        "kueue retry 42            run job 42 again\n"
        "kueue retry -f            every failed job, an array's members with their $KUEUE_ARRAY_ID\n"
        "kueue retry -f -w         ... and wait for them, as kueue cmd -w\n"
        "kueue retry -f -n         which jobs that would be, queueing nothing",
        ids="jobs",
        notes="Jobs still pending or running are left alone (kueue rm -k ID stops one).",
    )
    p.add_argument("ids", type=job_id, nargs="*", metavar="ID")
    p.add_argument(
        "-f", "--failed", action="store_true", help="every failed job, but none a later job repeats"
    )
    p.add_argument(
        "-c", "--canceled", action="store_true", help="every canceled job, but none a later job repeats"
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "-w",
        "--wait",
        action="store_true",
        help="wait for the new jobs, print their exit codes and exit with the first failing one",
    )
    what.add_argument(
        "-n",
        "--dry-run",
        action="store_true",
        help="list the jobs that would be queued again (id and command) and queue nothing",
    )

    # ---- clean-jobs
    p = verb(
        "clean-jobs",
        ["clean"],
        "forget succeeded and canceled jobs; with --all failed ones too",
        "kueue clean -a",
    )
    p.add_argument("-a", "--all", action="store_true", help="also forget failed jobs")

    # ---- workers
    p = verb(
        "list-workers",
        ["workers"],
        "list the workers with their load",
        "kueue workers -a\nkueue workers -w     the table kept current until q or Ctrl-C",
    )
    p.add_argument("-a", "--all", action="store_true", help="include disconnected workers")
    p.add_argument("--json", action="store_true", help='print {"workers": [...]} as JSON')
    p.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help="keep the table current on the terminal, with each worker's state (q or Ctrl-C leaves)",
    )

    p = verb(
        "top",
        [],
        "workers, the newest jobs and the counts with an ETA on one screen, kept current",
        "kueue top\nkueue top -r -p     only the running and pending jobs",
        notes="q or Ctrl-C leaves. Lists the connected workers and those lost while they\n"
        "still hold jobs (-a: every remembered worker).",
    )
    p.add_argument("-a", "--all", action="store_true", help="also list disconnected workers")
    state_filters(p)

    p = verb(
        "show-worker",
        [],
        "show one worker (by id or name) and the jobs it runs",
        "kueue show-worker node17",
        ids="workers",
    )
    p.add_argument("id", type=worker_ref, metavar="ID")
    p.add_argument("--json", action="store_true", help="print as JSON")

    for name, what in (("drain", "stop offering new jobs to workers; their running jobs go on"),
                       ("undrain", "offer new jobs to drained workers again")):  # fmt: skip
        p = verb(name, [], what, f"kueue {name} node17 node18", ids="workers")
        p.add_argument(
            "ids",
            type=worker_ref,
            nargs="+",
            metavar="WORKER",
            help="worker id or name; the name of a worker run as several processes stands for all of them",
        )

    p = verb("list-resources", ["resources"], "list the global resources: used/total", "kueue resources")
    p.add_argument("--json", action="store_true", help='print {"resources": [...]} as JSON')

    # ---- local cluster
    verb(
        "up",
        [],
        "start a kueue_server and a kueue_worker on this machine, in the background",
        "kueue up && kueue cmd echo hello",
    )
    verb("down", [], "stop what `kueue up` started", "kueue down")
    p = verb(
        "install-units",
        [],
        "write systemd user units for kueue_server and kueue_worker to ~/.config/systemd/user",
        "kueue install-units --worker && systemctl --user enable --now kueue-worker",
        notes="The units run this Python with this config file. Then:\n"
        "  systemctl --user daemon-reload\n"
        "  systemctl --user enable --now kueue-server kueue-worker\n"
        "  loginctl enable-linger $USER   keep them running when you log out",
    )
    only = p.add_mutually_exclusive_group()
    only.add_argument("--server", action="store_true", help="only kueue-server.service")
    only.add_argument("--worker", action="store_true", help="only kueue-worker.service")
    p.add_argument("--force", action="store_true", help="overwrite units that exist with other content")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="on stop, how long the worker lets its jobs finish before handing them back "
        "(default 60; 0: wait for them, however long)",
    )

    # ---- completion
    p = verb(
        "complete",
        [],
        "print a shell completion script",
        'eval "$(kueue complete bash)"          in ~/.bashrc\n'
        "kueue complete zsh > ~/.zfunc/_kueue   (with fpath+=~/.zfunc)\n"
        "kueue complete fish > ~/.config/fish/completions/kueue.fish",
    )
    p.add_argument(
        "shell", nargs="?", choices=["bash", "zsh", "fish"], metavar="SHELL", help="bash, zsh or fish"
    )
    # Used by the completion scripts themselves to complete ids.
    p.add_argument("--ids", choices=["jobs", "workers"], help=argparse.SUPPRESS)
    return parser if built else build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    context: Context | None = None
    try:
        # Inside: a Ctrl-C while it imports (tens of ms) is an interrupt
        # like any other, not a traceback.
        from kueue_client.context import Context

        argv = sys.argv[1:] if argv is None else argv
        parser = build_parser(verb_named(argv))
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help and --version
            return exc.code if isinstance(exc.code, int) else 0
        if not args.verb:
            parser.print_help()
            return 0
        from kueue_client import verbs

        context = Context(args.config)
        return getattr(verbs, args.handler)(args, context)
    except KueueError as exc:
        _report(str(exc))
        return exc.exit_status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `kueue ls | head`: the reader left; say nothing, and keep Python from
        # complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        if exc.errno not in _OUTPUT_ERRORS:
            raise
        # `kueue ls > file` on a full disk: one line, not a traceback.
        _report(f"cannot write the output: {exc.strerror}")
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        if context is not None:
            context.close()


def run() -> NoReturn:
    """The `kueue` program: main(), then out at once.

    A normal interpreter exit after a gRPC call spends about 100 ms tearing
    down modules and grpc's threads, a third of what `kueue cmd` costs; the
    work is done and flushed by then, and no exit handlers of ours need to run.
    """
    try:
        _open_closed_stdio()
        code = main()
    except KeyboardInterrupt:  # before main's own handling, or after it
        code = EXIT_INTERRUPTED
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = code or EXIT_BROKEN_PIPE
    except OSError as exc:
        _report(f"cannot write the output: {exc.strerror}")
        code = code or 1
    except ValueError:
        pass
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)


# Writing our output failed for a reason of the place it goes.
_OUTPUT_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def _open_closed_stdio() -> None:
    """/dev/null on any of descriptors 0-2 this process was started without
    (`kueue run CMD >&-`): otherwise the first socket or epoll opened takes
    that number, and the job's output would be written into it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    # Python leaves sys.stdout (or stdin, stderr) None for a descriptor closed at its start.
    for name, fd, mode in (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115


def _report(message: str) -> None:
    with contextlib.suppress(OSError):  # stderr closed: nowhere left to say it
        print(f"kueue: {message}", file=sys.stderr)


__all__ = ["build_parser", "main", "run"]

#!/usr/bin/env node
// kueue-ts: an example CLI on the TypeScript client (submit, list, watch,
// output). It reads the same config file as `kueue`; flags override it.

import { readFileSync } from "node:fs";
import { toJson } from "@bufbuild/protobuf";
import { KueueClient, WATCH_RECONNECT_MS, type WatchOptions, isFinal, jobSpec } from "./client.js";
import { type ClientConfig, DEFAULTS, loadConfig, resolveConfigPath, validate } from "./config.js";
import { EXIT_USAGE, KueueError } from "./errors.js";
import { type Job, JobState, OutputStream, StartFailure } from "./gen/kueue/v1/common_pb.js";
import { ListJobsResponseSchema, type WatchJobsResponse } from "./gen/kueue/v1/job_service_pb.js";

const USAGE = `usage: kueue-ts [GLOBAL OPTIONS] VERB [ARGS]

verbs:
  submit [-c CPUS] [-r RAM_MB] [--wait] CMD [ARG...]
        queue CMD to run in this directory with this environment; print its id.
        --wait: wait for it, print its output, exit as \`kueue wait\` does: its exit
        code, 128+N for signal N, 127/126 if it could not be found/executed
  list [-n LIMIT] [--json]
        the most recent jobs (all without -n)
  watch ID...
        print each state change until every job has ended; exit with the first
        non-zero status, as submit --wait does (1 for a job canceled, 2 for
        no such job). A server that goes away meanwhile (a restart) is waited
        for, up to ${WATCH_RECONNECT_MS / 1000} s, as the jobs keep running
  output [--stderr] ID
        the captured stdout (or stderr) of a job

global options (override the config file):
  --config PATH        config file (default: $KUEUE_CONFIG or ~/.config/kueue/config.toml)
  --server HOST:PORT   the server's address
  --secret-file PATH   a file holding the shared secret (also: $KUEUE_SHARED_SECRET)
  --tls-ca PEM         connect with TLS, trusting this CA
  --tls-cert PEM --tls-key PEM   a client certificate for mutual TLS
  -h, --help           this text (also after a verb); reads no config file`;

interface Global {
  config?: string;
  server?: string;
  /** --server, checked as it is read: a typo there is the user's, not the config file's. */
  address?: { name: string; port: number };
  secretFile?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/** A verb with its options and arguments, checked; it runs once there is a client. */
type Run = (client: KueueClient) => Promise<number>;

/** What a -h or --help among the options asks for instead of a Run. */
const HELP = "help";
type Help = typeof HELP;

function usage(message: string): KueueError {
  return new KueueError(`${message} (kueue-ts --help for usage)`, EXIT_USAGE);
}

function isHelp(arg: string): boolean {
  return arg === "-h" || arg === "--help";
}

/**
 * The value of the option at args[i] ("--flag value" or "--flag=value");
 * `what` says what belongs there. An option in its place counts as missing:
 * "-c --wait" means a forgotten value, not a CPU count of "--wait".
 */
function optionValue(args: string[], i: number, what: string): { flag: string; value: string; next: number } {
  const arg = args[i]!;
  const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
  const flag = eq < 0 ? arg : arg.slice(0, eq);
  const value = eq < 0 ? args[i + 1] : arg.slice(eq + 1);
  if (value === undefined || value === "" || /^-[^\d]/.test(value)) {
    throw usage(`${flag} needs a value: ${what}`);
  }
  return { flag, value, next: eq < 0 ? i + 1 : i };
}

/** Options before the verb, and the rest; HELP for a -h or --help among them. */
function parseGlobal(argv: string[]): { global: Global; rest: string[] } | Help {
  const global: Global = {};
  const keys: Record<string, [Exclude<keyof Global, "address">, string]> = {
    "--config": ["config", "the path of a config file"],
    "--server": ["server", "the server's address, HOST:PORT"],
    "--secret-file": ["secretFile", "the path of a file holding the shared secret"],
    "--tls-ca": ["tlsCa", "the PEM file of the CA that signed the server's certificate"],
    "--tls-cert": ["tlsCert", "the PEM file of the client certificate"],
    "--tls-key": ["tlsKey", "the PEM file of the client certificate's key"],
  };
  let i = 0;
  for (; i < argv.length && argv[i]!.startsWith("-"); i++) {
    if (isHelp(argv[i]!)) return HELP;
    const known = keys[argv[i]!.split("=", 1)[0]!];
    if (!known) throw usage(`unknown option ${argv[i]!.split("=", 1)[0]}`);
    const { value, next } = optionValue(argv, i, known[1]);
    global[known[0]] = value;
    i = next;
  }
  if (global.server) global.address = serverAddress(global.server);
  return { global, rest: argv.slice(i) };
}

/** HOST:PORT (HOST may be a bracketed IPv6 address). */
function serverAddress(text: string): { name: string; port: number } {
  const match = /^(.*):(\d+)$/.exec(text);
  if (!match) throw usage(`--server must be HOST:PORT, not ${text}`);
  const port = Number(match[2]);
  if (port < 1 || port > 65535) throw usage(`--server: the port must be between 1 and 65535, not ${match[2]}`);
  return { name: match[1]!.replace(/^\[(.*)\]$/, "$1"), port };
}

/** The settings: the config file's, overridden by the global options (already checked). */
function configFrom(global: Global): ClientConfig {
  const path = resolveConfigPath(global.config);
  const file = loadConfig(path);
  if (!file && global.config) throw new KueueError(`${path}: no such config file`, EXIT_USAGE);
  const config: ClientConfig = file ? { ...file } : { ...DEFAULTS };
  if (global.address) {
    config.serverName = global.address.name;
    config.serverPort = global.address.port;
  }
  const secret = global.secretFile
    ? readSecret(global.secretFile)
    : (process.env.KUEUE_SHARED_SECRET ?? undefined);
  if (secret) {
    config.sharedSecret = secret;
    config.secretSource = global.secretFile ? `--secret-file ${global.secretFile}` : "KUEUE_SHARED_SECRET";
  }
  if (global.tlsCa) config.tlsCa = global.tlsCa;
  if (global.tlsCert) config.tlsClientCert = global.tlsCert;
  if (global.tlsKey) config.tlsClientKey = global.tlsKey;
  if (!file && !(global.server && secret)) {
    throw new KueueError(
      `${path}: no such config file; run kueue (or kueue_server) once to create it, ` +
        `or pass --server HOST:PORT and --secret-file PATH`,
      EXIT_USAGE,
    );
  }
  validate(config);
  return config;
}

function readSecret(path: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (err) {
    throw new KueueError(`--secret-file ${path}: cannot read it: ${(err as Error).message}`, EXIT_USAGE);
  }
}

/** The whole-number value of the option at args[i], and the index of its last word. */
function intOption(args: string[], i: number, what: string): { value: number; next: number } {
  const { flag, value, next } = optionValue(args, i, what);
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw usage(`${flag} needs a whole number, not ${value}`);
  return { value: n, next };
}

function jobId(text: string): bigint {
  if (!/^\d+$/.test(text)) throw usage(`not a job id: ${text}`);
  return BigInt(text);
}

function stateName(state: JobState): string {
  return (JobState[state] ?? String(state)).toLowerCase();
}

function describe(job: Job): string {
  const where = job.workerName ? ` on ${job.workerName}` : "";
  switch (job.state) {
    case JobState.OFFERED:
    case JobState.RUNNING:
      return `${stateName(job.state)}${where} (attempt ${job.attempt})`;
    case JobState.SUCCEEDED:
    case JobState.FAILED:
      return (
        `${stateName(job.state)}` +
        (job.exitCode !== undefined ? ` with exit code ${job.exitCode}` : job.signal ? ` by signal ${job.signal}` : "") +
        (job.comment ? ` (${job.comment})` : "")
      );
    default:
      return stateName(job.state) + (job.comment ? ` (${job.comment})` : "");
  }
}

/** As `kueue wait` exits (and a shell): the exit code, 128+N for signal N, 127 or 126 where it could not start. */
function exitStatus(job: Job | undefined): number {
  if (!job) return 1;
  if (job.state === JobState.SUCCEEDED) return 0;
  if (job.state !== JobState.FAILED) return 1;
  if (job.signal) return 128 + job.signal;
  if (job.exitCode !== undefined) return job.exitCode & 0xff || 1;
  if (job.startFailure === StartFailure.NOT_FOUND) return 127;
  if (job.startFailure === StartFailure.NOT_EXECUTABLE) return 126;
  return 1;
}

/** Says on stderr, once per outage, that a watch is waiting for a lost server. */
function reconnectNotices(client: KueueClient): WatchOptions {
  return {
    onLost: () =>
      console.error(
        `kueue-ts: the kueue server at ${client.address} is unreachable (stopped or restarting?); ` +
          `retrying for up to ${WATCH_RECONNECT_MS / 1000} s (the jobs keep running on their workers)`,
      ),
    onBack: () => console.error(`kueue-ts: the kueue server at ${client.address} is back; watching on`),
  };
}

/** The line `watch` prints for one change, and the job it is about. */
function changeLine(change: WatchJobsResponse): { id: bigint; line: string } | undefined {
  if (change.removed) {
    return { id: change.removedId, line: `job ${change.removedId}: does not exist (never did, or was cleaned)` };
  }
  return change.job && { id: change.job.id, line: `job ${change.job.id}: ${describe(change.job)}` };
}

async function watch(client: KueueClient, ids: bigint[]): Promise<number> {
  // A reconnected watch reports the jobs afresh: print a line only when it says something new.
  const shown = new Map<bigint, string>();
  const onChange = (change: WatchJobsResponse) => {
    const news = changeLine(change);
    if (!news || shown.get(news.id) === news.line) return;
    shown.set(news.id, news.line);
    console.log(news.line);
  };
  const last = await client.waitForJobs(ids, onChange, reconnectNotices(client));
  for (const id of ids) {
    const job = last.get(id);
    // No such job: bad input (2), as for `output` and the Python client.
    const status = job === undefined ? 2 : exitStatus(job);
    if (status !== 0) return status;
  }
  return 0;
}

function parseWatch(args: string[]): Run | Help {
  if (args.some(isHelp)) return HELP;
  if (args.length === 0) throw usage("watch needs job ids");
  const ids = args.map(jobId);
  return (client) => watch(client, ids);
}

function parseSubmit(args: string[]): Run | Help {
  // Unset until the config file, read after the command line, gives its defaults.
  let cpus: number | undefined;
  let ramMb: number | undefined;
  let wait = false;
  let i = 0;
  for (; i < args.length && args[i]!.startsWith("-"); i++) {
    const arg = args[i]!;
    if (arg === "--") {
      i++;
      break;
    } else if (isHelp(arg)) return HELP;
    else if (arg === "-c" || arg.split("=", 1)[0] === "--cpus") {
      ({ value: cpus, next: i } = intOption(args, i, "the number of CPUs the job needs, e.g. -c 4"));
    } else if (arg === "-r" || arg.split("=", 1)[0] === "--ram-mb") {
      ({ value: ramMb, next: i } = intOption(args, i, "the RAM the job needs in MB, e.g. -r 2048"));
    } else if (arg === "--wait") wait = true;
    else throw usage(`unknown option for submit: ${arg}`);
  }
  const command = args.slice(i);
  if (command.length === 0) throw usage("submit needs a command");
  return (client) =>
    submit(client, command, {
      cpus: cpus ?? client.config.jobDefaultCpus,
      ramMb: ramMb ?? client.config.jobDefaultRamMb,
      wait,
    });
}

async function submit(
  client: KueueClient,
  command: string[],
  { cpus, ramMb, wait }: { cpus: number; ramMb: number; wait: boolean },
): Promise<number> {
  const { id, warnings } = await client.submit(jobSpec(command, { cpus, ramMb }));
  for (const warning of warnings) console.error(`kueue-ts: warning: ${warning}`);
  if (!wait) {
    console.log(String(id));
    return 0;
  }
  console.error(`kueue-ts: queued as job ${id}`);
  const job = (await client.waitForJobs([id], undefined, reconnectNotices(client))).get(id);
  if (job && isFinal(job)) {
    process.stdout.write(await client.readOutput(id, OutputStream.STDOUT));
    process.stderr.write(await client.readOutput(id, OutputStream.STDERR));
  }
  return exitStatus(job);
}

function parseList(args: string[]): Run | Help {
  let limit = 0;
  let json = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (isHelp(arg)) return HELP;
    if (arg === "-n" || arg.split("=", 1)[0] === "--limit") {
      ({ value: limit, next: i } = intOption(args, i, "how many of the most recent jobs to list, e.g. -n 20"));
    } else if (arg === "--json") json = true;
    else throw usage(`unknown argument for list: ${arg}`);
  }
  return (client) => list(client, limit, json);
}

async function list(client: KueueClient, limit: number, json: boolean): Promise<number> {
  const reply = await client.listJobs(limit);
  if (json) {
    console.log(JSON.stringify(toJson(ListJobsResponseSchema, reply, { useProtoFieldName: true }), null, 2));
    return 0;
  }
  console.log(["id", "state", "worker", "exit", "command"].join("\t"));
  for (const job of reply.jobs) {
    const exit = job.exitCode !== undefined ? String(job.exitCode) : "";
    const command = job.spec?.command.join(" ") ?? "";
    console.log([String(job.id), stateName(job.state), job.workerName, exit, command].join("\t"));
  }
  return 0;
}

function parseOutput(args: string[]): Run | Help {
  if (args.some(isHelp)) return HELP;
  const stream = args.includes("--stderr") ? OutputStream.STDERR : OutputStream.STDOUT;
  const ids = args.filter((a) => a !== "--stderr");
  if (ids.length !== 1 || ids[0]!.startsWith("-")) throw usage("output needs one job id");
  const id = jobId(ids[0]!);
  return (client) => output(client, id, stream);
}

async function output(client: KueueClient, id: bigint, stream: OutputStream): Promise<number> {
  process.stdout.write(await client.readOutput(id, stream));
  return 0;
}

const VERBS: Record<string, (args: string[]) => Run | Help> = {
  submit: parseSubmit,
  list: parseList,
  watch: parseWatch,
  output: parseOutput,
};

/**
 * The whole command line, checked before the config file is read: a typo
 * in it is reported as such even when the config file is broken too, and
 * --help needs no config file at all.
 */
function parseCommandLine(argv: string[]): { global: Global; run: Run } | Help {
  const parsed = parseGlobal(argv);
  if (parsed === HELP) return HELP;
  const [verb, ...args] = parsed.rest;
  // Own keys only: "constructor" is no verb.
  const parse = verb !== undefined && Object.hasOwn(VERBS, verb) ? VERBS[verb] : undefined;
  if (!parse) throw usage(verb === undefined ? "no verb given" : `unknown verb ${verb}`);
  const run = parse(args);
  return run === HELP ? HELP : { global: parsed.global, run };
}

export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0) {
    console.log(USAGE);
    return EXIT_USAGE;
  }
  const command = parseCommandLine(argv);
  if (command === HELP) {
    console.log(USAGE);
    return 0;
  }
  // Every verb talks to the server: only now is the config file needed.
  const client = new KueueClient(configFrom(command.global));
  try {
    return await command.run(client);
  } finally {
    client.close();
  }
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (err: unknown) => {
    if (err instanceof KueueError) {
      console.error(`kueue-ts: ${err.message}`);
      process.exitCode = err.exitStatus;
    } else {
      console.error(`kueue-ts: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      process.exitCode = 1;
    }
  },
);

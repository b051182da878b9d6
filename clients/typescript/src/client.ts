// A Kueue client over plain gRPC (HTTP/2, with or without TLS), on the stubs
// generated from protos/ by protoc-gen-es (src/gen/, `buf generate`).

import { readFileSync } from "node:fs";
import { hostname, userInfo } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { create, equals, type MessageInitShape } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { authInterceptor } from "./auth.js";
import { expandHome, type ClientConfig } from "./config.js";
import { type ErrorContext, explain, isConnectionLoss, KueueError, oneLine } from "./errors.js";
import { ClusterService } from "./gen/kueue/v1/cluster_service_pb.js";
import {
  type Job,
  JobSchema,
  type JobSpec,
  JobSpecSchema,
  JobState,
  OutputStream,
} from "./gen/kueue/v1/common_pb.js";
import { JobService, type ListJobsResponse, type WatchJobsResponse } from "./gen/kueue/v1/job_service_pb.js";

export const FINAL_STATES: ReadonlySet<JobState> = new Set([
  JobState.SUCCEEDED,
  JobState.FAILED,
  JobState.CANCELED,
]);

export function isFinal(job: Job): boolean {
  return FINAL_STATES.has(job.state);
}

/** Unary calls fail after this long; streams (watch, output) have no deadline. */
const UNARY_TIMEOUT_MS = 60_000;

/**
 * How long a watch keeps reconnecting after the server went away (as the
 * Python client's `kueue wait`): a restart must not end a long watch, a
 * server gone for good must.
 */
export const WATCH_RECONNECT_MS = 120_000;
// Backoff between reconnection attempts: a restarted server is noticed
// within seconds, a missing one is not hammered.
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 5_000;

export interface WatchOptions {
  /** Called once each time the server is lost mid-watch, before the retries begin. */
  onLost?: (reason: KueueError) => void;
  /** Called when the server answers again after onLost. */
  onBack?: () => void;
  /** How long to keep reconnecting to a lost server (default WATCH_RECONNECT_MS). */
  reconnectMs?: number;
}

function readPem(path: string, key: string, where: string): Buffer {
  try {
    return readFileSync(expandHome(path));
  } catch (err) {
    throw new KueueError(`${where}: ${key} = "${path}": cannot read it: ${(err as Error).message}`);
  }
}

export class KueueClient {
  /** host:port, as shown in messages. */
  readonly address: string;
  readonly jobs: Client<typeof JobService>;
  readonly cluster: Client<typeof ClusterService>;
  private readonly session: Http2SessionManager;
  /** The server has answered a call of this client: later resets are a lost server, not set-up trouble. */
  private answered = false;

  constructor(readonly config: ClientConfig) {
    const host = config.serverName.includes(":") && !config.serverName.startsWith("[")
      ? `[${config.serverName}]`
      : config.serverName;
    this.address = `${host}:${config.serverPort}`;
    const where = config.path ?? "the command line";
    const tls = config.tlsCa
      ? {
          ca: readPem(config.tlsCa, "tls_ca", where),
          ...(config.tlsClientCert
            ? {
                cert: readPem(config.tlsClientCert, "tls_client_cert", where),
                key: readPem(config.tlsClientKey, "tls_client_key", where),
              }
            : {}),
        }
      : undefined;
    // Plain gRPC over HTTP/2: h2c with prior knowledge, or TLS with ALPN h2.
    const baseUrl = `${tls ? "https" : "http"}://${this.address}`;
    this.session = new Http2SessionManager(baseUrl, { pingIntervalMs: 20_000 }, tls ?? {});
    const transport = createGrpcTransport({
      baseUrl,
      sessionManager: this.session,
      interceptors: [authInterceptor(config.sharedSecret), this.noteAnswers()],
    });
    this.jobs = createClient(JobService, transport);
    this.cluster = createClient(ClusterService, transport);
  }

  /** Marks the client as answered once a call gets the server's response headers. */
  private noteAnswers(): Interceptor {
    return (next) => async (req) => {
      const res = await next(req);
      this.answered = true;
      return res;
    };
  }

  private errorContext(): ErrorContext {
    return { configPath: this.config.path, secretSource: this.config.secretSource, answered: this.answered };
  }

  /** Runs one call, turning its failure into a one-line KueueError. */
  private async call<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (err) {
      throw explain(err, this.address, this.errorContext());
    }
  }

  /** Queues one job; returns its id and the server's warnings. */
  async submit(spec: JobSpec): Promise<{ id: bigint; warnings: string[] }> {
    const reply = await this.call(() => this.jobs.submitJobs({ spec }, { timeoutMs: UNARY_TIMEOUT_MS }));
    const id = reply.jobIds[0];
    if (id === undefined) throw new KueueError("the server accepted the job but returned no id");
    return { id, warnings: reply.warnings };
  }

  /** The most recent `limit` jobs (0: all), oldest first. */
  async listJobs(limit = 0): Promise<ListJobsResponse> {
    return this.call(() => this.jobs.listJobs({ limit }, { timeoutMs: UNARY_TIMEOUT_MS }));
  }

  /**
   * Follows the jobs until every one has ended (or is gone); calls onChange
   * for each state the server reports. Returns the last state of each job,
   * undefined for a job that does not exist (never did, or was cleaned).
   *
   * If the server goes away after it has answered (a restart), the watch
   * reconnects with a backoff for up to options.reconnectMs, since the jobs
   * keep running on their workers; a server never reached fails at once.
   */
  async waitForJobs(
    ids: bigint[],
    onChange: (change: WatchJobsResponse) => void = () => {},
    options: WatchOptions = {},
  ): Promise<Map<bigint, Job | undefined>> {
    const last = new Map<bigint, Job | undefined>();
    const settled = (id: bigint) => last.has(id) && (last.get(id) === undefined || isFinal(last.get(id)!));
    const reconnectMs = options.reconnectMs ?? WATCH_RECONNECT_MS;
    let lostSince: number | undefined;
    let delay = RETRY_FIRST_MS;
    for (;;) {
      // Checked first: a watch of no ids at all would follow every job.
      if (ids.every(settled)) return last;
      try {
        for await (const change of this.jobs.watchJobs({ ids: ids.filter((id) => !settled(id)) })) {
          if (lostSince !== undefined) options.onBack?.();
          lostSince = undefined;
          delay = RETRY_FIRST_MS;
          if (record(last, change)) onChange(change);
          if (ids.every(settled)) return last; // leaving the loop cancels the stream
        }
        throw new KueueError("the server ended the watch before the jobs ended");
      } catch (err) {
        if (!this.answered || !isConnectionLoss(err)) throw explain(err, this.address, this.errorContext());
        const now = Date.now();
        if (lostSince === undefined) {
          lostSince = now;
          options.onLost?.(explain(err, this.address, this.errorContext()));
        } else if (now - lostSince > reconnectMs) {
          const why = oneLine(err instanceof ConnectError ? err.rawMessage : String(err));
          throw new KueueError(
            `lost the kueue server at ${this.address} for ${Math.round(reconnectMs / 1000)} s while watching; ` +
              `the jobs may still run (see kueue-ts list): ${why}`,
          );
        }
      }
      await sleep(delay);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  /** Captured output (all of what the server keeps) of the job's current or last attempt. */
  async readOutput(id: bigint, stream: OutputStream = OutputStream.STDOUT): Promise<Buffer> {
    return this.call(async () => {
      const chunks: Uint8Array[] = [];
      for await (const reply of this.jobs.readOutput({ id, streams: [stream] })) {
        chunks.push(reply.data);
      }
      return Buffer.concat(chunks);
    });
  }

  /** Server name and version: a cheap check that the address and secret are right. */
  async serverInfo() {
    return this.call(() => this.cluster.getServerInfo({}, { timeoutMs: UNARY_TIMEOUT_MS }));
  }

  /** Closes the HTTP/2 connection. */
  close(): void {
    this.session.abort();
  }
}

/**
 * Notes one change of a watch in `last`; false when it tells nothing new (a
 * reconnected watch first repeats the states already seen).
 */
function record(last: Map<bigint, Job | undefined>, change: WatchJobsResponse): boolean {
  if (change.removed) {
    const known = last.has(change.removedId) && last.get(change.removedId) === undefined;
    last.set(change.removedId, undefined);
    return !known;
  }
  const job = change.job;
  if (!job) return false;
  const before = last.get(job.id);
  last.set(job.id, job);
  return before === undefined || !equals(JobSchema, before, job);
}

// Host-local variables are not sent with a job (the same lists as the Python
// client's kueue_client/spec.py): they would mislead a process on another machine.
const HOST_LOCAL_VARIABLES = new Set([
  "HOSTNAME", "DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "TERM_SESSION_ID", "WINDOWID",
  "XDG_RUNTIME_DIR", "XDG_SEAT", "XDG_VTNR", "DBUS_SESSION_BUS_ADDRESS", "SESSION_MANAGER",
]);
const HOST_LOCAL_PREFIXES = ["SSH_", "TMUX", "XDG_SESSION_"];
const SHELL_SYNTAX = /[\s|&;<>()$`\\"'*?[\]#~{}!]/;

export interface JobOptions {
  cpus?: number;
  ramMb?: number;
  slots?: number;
  cwd?: string;
  env?: Record<string, string>;
}

/**
 * A job that runs `command` as if typed here: in this directory, with this
 * environment (minus host-local variables); a single argument with shell
 * syntax runs through /bin/sh -c.
 */
export function jobSpec(command: string[], options: JobOptions = {}): JobSpec {
  if (command.length === 0 || !command[0]!.trim()) throw new KueueError("no command given", 2);
  const cwd = options.cwd ?? process.cwd();
  const source = options.env ?? (process.env as Record<string, string>);
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(source)) {
    if (value === undefined || HOST_LOCAL_VARIABLES.has(key)) continue;
    if (HOST_LOCAL_PREFIXES.some((prefix) => key.startsWith(prefix))) continue;
    env[key] = value;
  }
  env.PWD = cwd;
  const init: MessageInitShape<typeof JobSpecSchema> = {
    command,
    shell: command.length === 1 && SHELL_SYNTAX.test(command[0]!),
    cwd,
    env,
    resources: { slots: options.slots ?? 1, cpus: options.cpus ?? 1, ramMb: BigInt(options.ramMb ?? 512) },
    user: userInfo().username,
    submitHost: hostname(),
  };
  return create(JobSpecSchema, init);
}

// A Kueue client over plain gRPC (HTTP/2, with or without TLS), on the stubs
// generated from protos/ by protoc-gen-es (src/gen/, `buf generate`).

import { readFileSync } from "node:fs";
import { hostname, userInfo } from "node:os";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { authInterceptor } from "./auth.js";
import { expandHome, type ClientConfig } from "./config.js";
import { explain, KueueError } from "./errors.js";
import { ClusterService } from "./gen/kueue/v1/cluster_service_pb.js";
import { type Job, type JobSpec, JobSpecSchema, JobState, OutputStream } from "./gen/kueue/v1/common_pb.js";
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
      interceptors: [authInterceptor(config.sharedSecret)],
    });
    this.jobs = createClient(JobService, transport);
    this.cluster = createClient(ClusterService, transport);
  }

  /** Runs one call, turning its failure into a one-line KueueError. */
  private async call<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (err) {
      throw explain(err, this.address, this.config.path);
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
   */
  async waitForJobs(
    ids: bigint[],
    onChange: (change: WatchJobsResponse) => void = () => {},
  ): Promise<Map<bigint, Job | undefined>> {
    const last = new Map<bigint, Job | undefined>();
    const done = () => ids.every((id) => last.has(id) && (last.get(id) === undefined || isFinal(last.get(id)!)));
    return this.call(async () => {
      for await (const change of this.jobs.watchJobs({ ids })) {
        onChange(change);
        if (change.removed) last.set(change.removedId, undefined);
        else if (change.job) last.set(change.job.id, change.job);
        if (done()) break; // leaving the loop cancels the stream
      }
      if (!done()) throw new KueueError("the server ended the watch before the jobs ended");
      return last;
    });
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

// Failures a user can act on, as one line each (like the Python `kueue` CLI).

import { Code, ConnectError } from "@connectrpc/connect";

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export class KueueError extends Error {
  constructor(
    message: string,
    readonly exitStatus: number = EXIT_FAILURE,
    readonly code?: string,
  ) {
    super(message);
    this.name = "KueueError";
  }
}

/** What explain() needs to know besides the error, to point at the right setting. */
export interface ErrorContext {
  /** The config file the settings came from; undefined when they all came from flags. */
  configPath?: string;
  /**
   * Where the shared secret came from when not the config file, as a user
   * names it ("KUEUE_SHARED_SECRET", "--secret-file PATH").
   */
  secretSource?: string;
  /**
   * The server has answered this client before: a dropped connection is then
   * a server that went away (a restart), not a TLS mismatch at set-up.
   */
  answered?: boolean;
}

/** The detail the server gives a watching stream when it shuts down (kueue/status_details.py). */
const SERVER_STOPPING = "the kueue server is stopping";
const TLS_WORDS = /certificate|self[- ]signed|\bSSL\b|\bTLS\b/i;
// What OpenSSL says when the other end does not speak TLS at all.
const NOT_TLS = /wrong version number|packet length too long|unknown protocol/i;
// A connection that broke under a call (connect-node reports these as
// Canceled, Aborted, Internal or Unavailable, depending on where it noticed).
const DROPPED = new RegExp(
  [
    "http/2 stream closed",
    "ECONNRESET",
    "EPIPE",
    "socket hang up",
    "GOAWAY",
    "session (closed|error)",
    "stream (has been )?destroyed",
    "ERR_HTTP2_(STREAM|SESSION|INVALID|GOAWAY)",
    "ERR_STREAM_(DESTROYED|PREMATURE_CLOSE|WRITE_AFTER_END)",
  ].join("|"),
  "i",
);
const TRANSPORT_CODES = [Code.Aborted, Code.Canceled, Code.Internal, Code.Unavailable, Code.Unknown];

export function oneLine(text: string): string {
  return text.split(/\s+/).filter(Boolean).join(" ");
}

/** The error's message with the Node.js error codes of its causes (ECONNRESET, ...). */
function signature(err: ConnectError): string {
  const codes: string[] = [];
  for (let cause: unknown = err.cause; cause instanceof Error && codes.length < 8; cause = cause.cause) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === "string") codes.push(code);
  }
  return [err.rawMessage, ...codes].join(" ");
}

/**
 * The connection to the server broke, or the server is not there (yet):
 * what a client that was already talking to it can wait out, as opposed to
 * a refusal (authentication, bad input) or a TLS failure.
 */
export function isConnectionLoss(err: unknown): boolean {
  if (!(err instanceof ConnectError)) return false;
  const text = signature(err);
  if (TLS_WORDS.test(text)) return false;
  return err.code === Code.Unavailable || (TRANSPORT_CODES.includes(err.code) && DROPPED.test(text));
}

function authFailure(details: string, name: string, context: ErrorContext): KueueError {
  const where = context.configPath ?? "the config file";
  // Name the source the secret really came from: pointing at the config
  // file while the environment overrides it sends the user to the wrong place.
  const check = context.secretSource
    ? `check ${context.secretSource}` +
      (context.configPath ? ", which is used instead of the config file's shared_secret" : "")
    : `check common_settings.shared_secret in ${where}`;
  return new KueueError(
    `authentication failed: the shared secret does not match the server's (${check})` +
      (details && !details.includes("does not match") ? `: ${details}` : ""),
    EXIT_FAILURE,
    name,
  );
}

/**
 * Translates an error from a call into a KueueError saying what to do.
 * `context` may also be just the config file's path.
 */
export function explain(err: unknown, address: string, context: ErrorContext | string = {}): KueueError {
  if (err instanceof KueueError) return err;
  const ctx: ErrorContext = typeof context === "string" ? { configPath: context } : context;
  const where = ctx.configPath ?? "the config file";
  if (!(err instanceof ConnectError)) {
    return new KueueError(oneLine(err instanceof Error ? err.message : String(err)));
  }
  const details = oneLine(err.rawMessage);
  const name = Code[err.code];
  const transportTrouble = TRANSPORT_CODES.includes(err.code);
  if (transportTrouble && NOT_TLS.test(details) && TLS_WORDS.test(details)) {
    return new KueueError(
      `TLS with the kueue server at ${address} failed: it does not answer in TLS (${details}); ` +
        `if it runs without TLS, remove tls_ca (or --tls-ca) from ${where}`,
      EXIT_FAILURE,
      name,
    );
  }
  if (transportTrouble && TLS_WORDS.test(details)) {
    return new KueueError(
      `TLS with the kueue server at ${address} failed: ${details} (tls_ca must be the CA that signed ` +
        `the server's certificate; see ${where})`,
      EXIT_FAILURE,
      name,
    );
  }
  const dropped = transportTrouble && DROPPED.test(signature(err));
  if (dropped && ctx.answered) {
    return new KueueError(
      `lost the connection to the kueue server at ${address} (did it stop or restart? ask again once it is back)`,
      EXIT_FAILURE,
      name,
    );
  }
  if (dropped) {
    // The port answers but drops us before the server ever answered: in
    // practice a TLS mismatch.
    return new KueueError(
      `the kueue server at ${address} closed the connection during set-up: it may use TLS ` +
        `(set common_settings.tls_ca, or --tls-ca) or require a client certificate ` +
        `(tls_client_cert and tls_client_key, or --tls-cert and --tls-key) in ${where}`,
      EXIT_FAILURE,
      name,
    );
  }
  switch (err.code) {
    case Code.Unauthenticated:
      if (details.includes("clock skew")) {
        return new KueueError(`the server refused authentication: ${details}`, EXIT_FAILURE, name);
      }
      return authFailure(details, name, ctx);
    case Code.Unavailable:
      if (details === SERVER_STOPPING) {
        return new KueueError(
          `the kueue server at ${address} is stopping; jobs keep running on their workers ` +
            `(ask again once it is back)`,
          EXIT_FAILURE,
          name,
        );
      }
      // Refused or unroutable: a wrong address or a server that is down, not TLS.
      return new KueueError(
        `cannot reach the kueue server at ${address} (is kueue_server running? ` +
          `server_name/server_port are set in ${where}, or --server): ${details}`,
        EXIT_FAILURE,
        name,
      );
    case Code.DeadlineExceeded:
      return new KueueError(`the kueue server at ${address} did not answer in time`, EXIT_FAILURE, name);
    case Code.InvalidArgument:
    case Code.NotFound:
    case Code.FailedPrecondition:
      return new KueueError(details || name, EXIT_USAGE, name);
    default:
      return new KueueError(`the server answered ${name}: ${details}`, EXIT_FAILURE, name);
  }
}

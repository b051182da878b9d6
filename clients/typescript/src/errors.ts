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

function oneLine(text: string): string {
  return text.split(/\s+/).filter(Boolean).join(" ");
}

/** Translates an error from a call into a KueueError saying what to do. */
export function explain(err: unknown, address: string, configPath?: string): KueueError {
  if (err instanceof KueueError) return err;
  const where = configPath ?? "the config file (or --secret-file / KUEUE_SHARED_SECRET)";
  if (!(err instanceof ConnectError)) {
    return new KueueError(oneLine(err instanceof Error ? err.message : String(err)));
  }
  const details = oneLine(err.rawMessage);
  const name = Code[err.code];
  const transportTrouble = [Code.Canceled, Code.Internal, Code.Unavailable, Code.Unknown].includes(err.code);
  if (transportTrouble && /certificate|self[- ]signed|\bSSL\b|\bTLS\b/i.test(details)) {
    return new KueueError(
      `TLS with the kueue server at ${address} failed: ${details} (tls_ca must be the CA that signed ` +
        `the server's certificate; see ${where})`,
      EXIT_FAILURE,
      name,
    );
  }
  if (transportTrouble && /http\/2 stream closed|ECONNRESET|socket hang up|GOAWAY|session (closed|error)/i.test(details)) {
    // The port answers but drops us during set-up: in practice a TLS mismatch.
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
      return new KueueError(
        `authentication failed: the shared secret does not match the server's ` +
          `(check common_settings.shared_secret in ${where})` +
          (details && !details.includes("does not match") ? `: ${details}` : ""),
        EXIT_FAILURE,
        name,
      );
    case Code.Unavailable:
      return new KueueError(
        `cannot reach the kueue server at ${address} (is kueue_server running? does it use TLS? ` +
          `server_name/server_port/tls_ca are set in ${where}): ${details}`,
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

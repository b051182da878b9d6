// The x-kueue-auth scheme of protos/README.md ("Authentication"): every call
// carries "v1 <unix-seconds> <nonce> <mac>", where mac is the hex
// HMAC-SHA256 of "<method>\n<unix-seconds>\n<nonce>" under the shared secret.
// The secret itself never crosses the wire.

import { createHmac, randomBytes } from "node:crypto";
import type { Interceptor } from "@connectrpc/connect";

export const AUTH_HEADER = "x-kueue-auth";
export const SCHEME = "v1";

/** The MAC of one call: method is the full gRPC path, e.g. "/kueue.v1.JobService/ListJobs". */
export function mac(secret: string, method: string, timestamp: string, nonce: string): string {
  return createHmac("sha256", Buffer.from(secret, "utf8"))
    .update(Buffer.from(`${method}\n${timestamp}\n${nonce}`, "utf8"))
    .digest("hex");
}

/** A fresh token for one call; never reuse one (the server refuses replays). */
export function makeToken(
  secret: string,
  method: string,
  nowSeconds: number = Date.now() / 1000,
  nonce: string = randomBytes(16).toString("hex"),
): string {
  const timestamp = String(Math.floor(nowSeconds));
  return `${SCHEME} ${timestamp} ${nonce} ${mac(secret, method, timestamp, nonce)}`;
}

/** Adds a new token to every call made through a transport, streams included. */
export function authInterceptor(secret: string): Interceptor {
  return (next) => async (req) => {
    req.header.set(AUTH_HEADER, makeToken(secret, `/${req.service.typeName}/${req.method.name}`));
    return await next(req);
  };
}

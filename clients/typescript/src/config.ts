// Reads the config file every Kueue program shares
// (~/.config/kueue/config.toml; see README.md "Configuration"). Only what a
// client needs is read; other sections and keys are left to the server and
// workers.

import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { parse } from "smol-toml";
import { EXIT_USAGE, KueueError } from "./errors.js";

export interface ClientConfig {
  /** Where it was read from; undefined when everything came from flags. */
  path?: string;
  /**
   * Where sharedSecret came from when not the config file, as a user names
   * it ("KUEUE_SHARED_SECRET", "--secret-file PATH"): error messages point there.
   */
  secretSource?: string;
  serverName: string;
  serverPort: number;
  sharedSecret: string;
  /** PEM file paths; tlsCa empty means plaintext. */
  tlsCa: string;
  tlsClientCert: string;
  tlsClientKey: string;
  jobDefaultCpus: number;
  jobDefaultRamMb: number;
}

export const DEFAULTS: ClientConfig = {
  serverName: "localhost",
  serverPort: 11236,
  sharedSecret: "",
  tlsCa: "",
  tlsClientCert: "",
  tlsClientKey: "",
  jobDefaultCpus: 1,
  jobDefaultRamMb: 512,
};

export function expandHome(path: string): string {
  return path === "~" || path.startsWith("~/") ? join(homedir(), path.slice(1)) : path;
}

/** --config PATH, else $KUEUE_CONFIG, else $XDG_CONFIG_HOME/kueue/config.toml (~/.config). */
export function resolveConfigPath(explicit?: string): string {
  if (explicit) return expandHome(explicit);
  if (process.env.KUEUE_CONFIG) return expandHome(process.env.KUEUE_CONFIG);
  const base = process.env.XDG_CONFIG_HOME || join(homedir(), ".config");
  return join(base, "kueue", "config.toml");
}

type Table = Record<string, unknown>;

function section(raw: Table, name: string, path: string): Table {
  const value = raw[name];
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new KueueError(`${path}: [${name}] must be a table (a section)`, EXIT_USAGE);
  }
  return value as Table;
}

function str(table: Table, sectionName: string, key: string, fallback: string, path: string): string {
  const value = table[key];
  if (value === undefined) return fallback;
  if (typeof value !== "string") {
    throw new KueueError(`${path}: ${sectionName}.${key} must be a string; fix the value or delete the line`, EXIT_USAGE);
  }
  return value;
}

function int(table: Table, sectionName: string, key: string, fallback: number, path: string): number {
  const value = table[key];
  if (value === undefined) return fallback;
  const n = typeof value === "bigint" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n)) {
    throw new KueueError(`${path}: ${sectionName}.${key} must be an integer; fix the value or delete the line`, EXIT_USAGE);
  }
  return n;
}

/** Parses config text; throws KueueError naming the file and key. */
export function parseConfig(text: string, path: string): ClientConfig {
  let raw: Table;
  try {
    raw = parse(text) as Table;
  } catch (err) {
    const why = (err instanceof Error ? err.message : String(err)).split("\n")[0];
    throw new KueueError(`${path}: not valid TOML: ${why}`, EXIT_USAGE);
  }
  const common = section(raw, "common_settings", path);
  const client = section(raw, "client_settings", path);
  const c = "common_settings";
  return {
    path,
    serverName: str(common, c, "server_name", DEFAULTS.serverName, path),
    serverPort: int(common, c, "server_port", DEFAULTS.serverPort, path),
    sharedSecret: str(common, c, "shared_secret", "", path),
    tlsCa: str(common, c, "tls_ca", "", path),
    tlsClientCert: str(common, c, "tls_client_cert", "", path),
    tlsClientKey: str(common, c, "tls_client_key", "", path),
    jobDefaultCpus: int(client, "client_settings", "job_default_cpus", DEFAULTS.jobDefaultCpus, path),
    jobDefaultRamMb: int(client, "client_settings", "job_default_ram_mb", DEFAULTS.jobDefaultRamMb, path),
  };
}

/** The config file, or undefined when it does not exist (flags may do instead). */
export function loadConfig(path: string): ClientConfig | undefined {
  if (!existsSync(path)) return undefined;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new KueueError(`${path}: cannot read the config file: ${(err as Error).message}`);
  }
  return parseConfig(text, path);
}

/** Checks what a client cannot do without. */
export function validate(config: ClientConfig): void {
  const where = config.path ?? "the command line";
  if (!config.sharedSecret) {
    throw new KueueError(
      `${where}: no shared secret; set common_settings.shared_secret (the cluster's, from ` +
        `~/.config/kueue/config.toml), or pass --secret-file PATH or KUEUE_SHARED_SECRET`,
      EXIT_USAGE,
    );
  }
  if (!Number.isInteger(config.serverPort) || config.serverPort < 1 || config.serverPort > 65535) {
    throw new KueueError(`${where}: server_port must be between 1 and 65535, not ${config.serverPort}`, EXIT_USAGE);
  }
  if (Boolean(config.tlsClientCert) !== Boolean(config.tlsClientKey)) {
    throw new KueueError(`${where}: set both tls_client_cert and tls_client_key, or neither`, EXIT_USAGE);
  }
}

// One line per event: logfmt (key=value) by default, or JSON. Under systemd (stderr is the journal,
// JOURNAL_STREAM matches) each line starts with a <N> priority prefix and carries no timestamp.
//
// Secrets are kept out by construction: tokens and the webhook secret are never passed to the
// logger. As a second line of defence, values equal to or containing a registered secret, and
// fields whose key names a secret, are replaced by "[REDACTED]".

import { fstatSync } from "node:fs";

export type LogLevel = "error" | "warn" | "notice" | "info" | "debug";
export type LogFormat = "logfmt" | "json";
export type LogFields = Record<string, unknown>;

/** syslog priorities, as journald reads them from a "<N>" line prefix. */
const PRIORITY: Record<LogLevel, number> = { error: 3, warn: 4, notice: 5, info: 6, debug: 7 };
const SECRET_KEY = /token|secret|password|passwd|authorization|credential/i;
const REDACTED = "[REDACTED]";

export interface LoggerOptions {
  /** Line format (default "logfmt"). */
  format?: LogFormat;
  /** Lowest level written (default "info"). */
  level?: LogLevel;
  /** Prefix lines with <N> priorities and drop timestamps (default: detected from JOURNAL_STREAM). */
  journald?: boolean;
  /** Secret values to redact wherever they appear. */
  redact?: string[];
  /** Where lines go (default: stderr). */
  write?: (line: string) => void;
  /** Clock for timestamps (default Date.now). */
  now?: () => number;
}

/** True when stderr is connected to the journal (systemd sets JOURNAL_STREAM=dev:inode). */
export function stderrIsJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  const js = env.JOURNAL_STREAM;
  if (!js) return false;
  const [dev, ino] = js.split(":");
  try {
    const st = fstatSync(2);
    return String(st.dev) === dev && String(st.ino) === ino;
  } catch {
    return false;
  }
}

function fieldValue(v: unknown): unknown {
  if (v instanceof Error) {
    let msg = v.message;
    for (let c = v.cause; c instanceof Error; c = c.cause) msg += `: ${c.message}`;
    return msg;
  }
  return v;
}

function logfmtValue(v: unknown): string {
  const s = typeof v === "string" ? v : v === undefined ? "" : typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
  if (s !== "" && !/[\s="\\]/.test(s) && /^[\x21-\x7e]+$/.test(s)) return s;
  return JSON.stringify(s);
}

export class Logger {
  private readonly format: LogFormat;
  private readonly min: number;
  private readonly journald: boolean;
  private readonly secrets: Set<string>;
  private readonly write: (line: string) => void;
  private readonly now: () => number;

  constructor(opts: LoggerOptions = {}, private readonly base: LogFields = {}, shared?: Set<string>) {
    this.format = opts.format ?? "logfmt";
    this.min = PRIORITY[opts.level ?? "info"];
    this.journald = opts.journald ?? stderrIsJournal();
    this.secrets = shared ?? new Set();
    for (const s of opts.redact ?? []) this.addSecret(s);
    this.write = opts.write ?? ((line) => process.stderr.write(`${line}\n`));
    this.now = opts.now ?? Date.now;
    this.opts = opts;
  }
  private readonly opts: LoggerOptions;

  /** Register a secret value (e.g. a token read from a file) so it can never appear in a line. */
  addSecret(secret: string): void {
    // Very short strings would redact ordinary words.
    if (secret.length >= 4) this.secrets.add(secret);
  }

  /** A logger adding `fields` to every line; shares the redact list. */
  child(fields: LogFields): Logger {
    return new Logger(this.opts, { ...this.base, ...fields }, this.secrets);
  }

  error(msg: string, fields?: LogFields): void {
    this.log("error", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.log("warn", msg, fields);
  }
  notice(msg: string, fields?: LogFields): void {
    this.log("notice", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.log("info", msg, fields);
  }
  debug(msg: string, fields?: LogFields): void {
    this.log("debug", msg, fields);
  }

  private scrub(key: string, v: unknown): unknown {
    if (SECRET_KEY.test(key)) return REDACTED;
    const value = fieldValue(v);
    if (this.secrets.size === 0) return value;
    let s = typeof value === "string" ? value : JSON.stringify(value);
    if (s === undefined) return value;
    let hit = false;
    for (const secret of this.secrets) {
      if (s.includes(secret)) {
        s = s.split(secret).join(REDACTED);
        hit = true;
      }
    }
    return hit ? s : value;
  }

  /** Whether lines of `level` are written: lets a caller skip building fields nobody reads. */
  enabled(level: LogLevel): boolean {
    return PRIORITY[level] <= this.min;
  }

  log(level: LogLevel, msg: string, fields: LogFields = {}): void {
    if (!this.enabled(level)) return;
    const entries: [string, unknown][] = [];
    if (!this.journald) entries.push(["ts", new Date(this.now()).toISOString()]);
    entries.push(["level", level], ["msg", this.scrub("msg", msg)]);
    for (const [k, v] of Object.entries({ ...this.base, ...fields })) {
      if (v !== undefined) entries.push([k, this.scrub(k, v)]);
    }
    const body =
      this.format === "json"
        ? JSON.stringify(Object.fromEntries(entries))
        : entries.map(([k, v]) => `${k}=${logfmtValue(v)}`).join(" ");
    // One event, one line: a newline inside a value was escaped above.
    this.write(this.journald ? `<${PRIORITY[level]}>${body}` : body);
  }
}

// Status over a unix socket (for `reconcile status`), and metrics/health over an optional TCP port.

import { lstat, mkdir, realpath, unlink } from "node:fs/promises";
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect } from "node:net";
import path from "node:path";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { StatusServerError } from "./errors.js";
import type { LoopStatus, RunRecord } from "./loop.js";

export const DEFAULT_STATUS_SOCKET = "/run/reconcile/reconcile.sock";

export { StatusServerError } from "./errors.js";

export interface RunningServer {
  /** Unix socket path or "host:port". */
  address: string;
  close(): Promise<void>;
}

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { "content-type": "application/json" });
  res.end(`${JSON.stringify(body, null, 2)}\n`);
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** True when something is accepting connections on the socket (another daemon). */
function socketAlive(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socketPath);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

export interface StatusServerOptions {
  /** Socket path (default /run/reconcile/reconcile.sock). A missing directory is created with mode 0700. */
  socketPath?: string;
  /** Produces the JSON document served at GET /status. */
  getStatus: () => unknown;
  /**
   * POST /suspend ({reason?}) and POST /resume: what `reconcile suspend|resume` ask. Only who can
   * open the socket can ask, and that is its owner (mode 0600, in a directory checked as below).
   */
  actions?: Record<DaemonAction, (body: Record<string, unknown>) => unknown>;
  /** Extra routes by exact path (GET /events: the datapath's events, daemon/events.ts). */
  routes?: Record<string, HttpHandler>;
}

export type DaemonAction = "suspend" | "resume";

/** Largest request body an action takes (a reason is a sentence). */
const ACTION_BODY_MAX = 4096;

const S_ISVTX = 0o1000;

/**
 * Make sure the socket's directory is one where nobody but us (and root) can put, replace or remove
 * a file, without ever changing a directory reconcile did not create (`--socket /tmp/r.sock` must
 * not chmod /tmp). A missing directory is created with mode 0700. An existing one must be a
 * directory owned by us or root; if group or others may write it, it must be sticky (like /tmp),
 * where others can add names but not remove or rename ours. Returns whether it is shared (sticky
 * and writable by others), in which case the socket is created with extra care.
 */
async function prepareSocketDir(socketPath: string): Promise<{ shared: boolean }> {
  const dir = path.dirname(socketPath);
  const uid = process.getuid?.() ?? 0;
  let created: string | undefined;
  try {
    await lstat(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw new StatusServerError(`socket directory ${dir}: cannot inspect it`, { cause: err });
    created = await mkdir(dir, { recursive: true, mode: 0o700 }).catch((e: unknown) => {
      throw new StatusServerError(`socket directory ${dir}: cannot create it`, { cause: e });
    });
  }
  // The directory as the kernel resolves it (/var/run → /run): what its mode and owner are.
  const real = await realpath(dir);
  const st = await lstat(real);
  if (!st.isDirectory()) throw new StatusServerError(`socket directory ${dir}: not a directory`);
  if (created !== undefined) {
    // Ours, made just now with 0700 (less the umask): anything else means someone raced us to it.
    if (st.uid !== uid || (st.mode & 0o077) !== 0) {
      throw new StatusServerError(`socket directory ${dir}: was created with owner ${st.uid} and mode ${octal(st.mode)} (expected owner ${uid}, mode 0700); refusing to use it`);
    }
    return { shared: false };
  }
  if (st.uid !== uid && st.uid !== 0) {
    throw new StatusServerError(
      `socket directory ${dir}: owned by uid ${st.uid} (expected uid ${uid} or root): its owner could replace the socket; choose a directory of this user, e.g. /run/reconcile`,
    );
  }
  const othersWrite = (st.mode & 0o022) !== 0;
  if (othersWrite && (st.mode & S_ISVTX) === 0) {
    throw new StatusServerError(
      `socket directory ${dir}: mode ${octal(st.mode)} lets group or others write it and it is not sticky (expected no group/other write, or the sticky bit): another user could replace the socket; reconcile does not change directories it did not create, choose another --socket (e.g. /run/reconcile/reconcile.sock)`,
    );
  }
  return { shared: othersWrite };
}

function octal(mode: number): string {
  return `0${(mode & 0o7777).toString(8).padStart(3, "0")}`;
}

/**
 * Serve GET /status on a unix socket with mode 0600. A stale socket left by a crashed run (ours:
 * same owner) is replaced; a live one (another daemon), one of another user, or any other file
 * is an error.
 *
 * In a shared sticky directory (--socket /tmp/r.sock) another user can create names but not remove
 * or rename ours: the socket is bound with umask 0177 (bind fails if a name appeared in between),
 * then checked with lstat (a socket, ours, mode 0600) without following anything; it is never
 * chmod'ed (chmod follows symlinks).
 */
export async function startStatusServer(opts: StatusServerOptions): Promise<RunningServer> {
  const socketPath = opts.socketPath ?? DEFAULT_STATUS_SOCKET;
  const uid = process.getuid?.() ?? 0;
  await prepareSocketDir(socketPath);
  try {
    const st = await lstat(socketPath);
    if (!st.isSocket()) throw new StatusServerError(`${socketPath}: exists and is not a socket; refusing to replace it`);
    if (st.uid !== uid) throw new StatusServerError(`${socketPath}: a socket of uid ${st.uid} (expected ${uid}); refusing to replace another user's socket`);
    if (await socketAlive(socketPath)) throw new StatusServerError(`${socketPath}: another reconcile daemon is listening on it`);
    await unlink(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://unix");
    const action = url.pathname.slice(1) as DaemonAction;
    if (opts.actions && Object.hasOwn(opts.actions, action)) {
      if (req.method !== "POST") return sendJson(res, 405, { error: "method not allowed" });
      return serveAction(req, res, opts.actions[action]);
    }
    const route = opts.routes?.[url.pathname];
    if (route) return route(req, res);
    if (url.pathname !== "/status") return sendJson(res, 404, { error: "not found" });
    if (req.method !== "GET") return sendJson(res, 405, { error: "method not allowed" });
    sendJson(res, 200, opts.getStatus());
  });
  // Create the socket as 0600 from the start (umask), then make sure of it (chmod).
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err) => reject(new StatusServerError(`listen on ${socketPath}`, { cause: err })));
      server.listen(socketPath, () => resolve());
    });
  } finally {
    process.umask(oldMask);
  }
  const bound = await lstat(socketPath).catch(() => undefined);
  if (bound === undefined || !bound.isSocket() || bound.uid !== uid || (bound.mode & 0o077) !== 0) {
    await closeServer(server);
    throw new StatusServerError(
      `${socketPath}: after bind it is ${bound === undefined ? "gone" : `${bound.isSocket() ? "a socket" : "not a socket"} of uid ${bound.uid}, mode ${octal(bound.mode)}`} (expected our socket with mode 0600); refusing to serve on it`,
    );
  }
  return {
    address: socketPath,
    close: async () => {
      await closeServer(server);
      // Remove the name only while it is still the socket we bound.
      const now = await lstat(socketPath).catch(() => undefined);
      if (now !== undefined && now.isSocket() && now.ino === bound.ino && now.dev === bound.dev) await unlink(socketPath).catch(() => {});
    },
  };
}

/** A JSON object body of at most ACTION_BODY_MAX bytes → the action → its result as JSON (500 with the error when it throws). */
function serveAction(req: IncomingMessage, res: ServerResponse, action: (body: Record<string, unknown>) => unknown): void {
  const chunks: Buffer[] = [];
  let size = 0;
  req.on("data", (c: Buffer) => {
    size += c.length;
    if (size > ACTION_BODY_MAX) {
      sendJson(res, 413, { error: `request body over ${ACTION_BODY_MAX} bytes` });
      req.destroy();
    } else chunks.push(c);
  });
  req.on("end", () => {
    if (res.headersSent) return;
    let body: unknown = {};
    try {
      const text = Buffer.concat(chunks).toString("utf8").trim();
      body = text ? JSON.parse(text) : {};
    } catch {
      return sendJson(res, 400, { error: "request body is not JSON" });
    }
    if (typeof body !== "object" || body === null || Array.isArray(body)) return sendJson(res, 400, { error: "request body must be a JSON object" });
    try {
      sendJson(res, 200, action(body as Record<string, unknown>));
    } catch (err) {
      sendJson(res, 500, { error: err instanceof Error ? err.message : String(err) });
    }
  });
}

/** Client side of `reconcile status`: GET /status over the socket. */
export function fetchStatus(socketPath: string = DEFAULT_STATUS_SOCKET, timeoutMs = 5000): Promise<unknown> {
  return requestJson(socketPath, "GET", "/status", undefined, timeoutMs);
}

/** Client side of `reconcile suspend|resume`: POST /suspend or /resume over the socket. */
export function requestAction(socketPath: string, action: DaemonAction, body: Record<string, unknown> = {}, timeoutMs = 5000): Promise<unknown> {
  return requestJson(socketPath, "POST", `/${action}`, body, timeoutMs);
}

/** What a refusal of the daemon says: the "error" of its JSON body, or the body as it is. */
export function refusalText(body: string): string {
  try {
    return String((JSON.parse(body) as { error?: unknown }).error ?? body.trim());
  } catch {
    return body.trim(); // not JSON
  }
}

function requestJson(socketPath: string, method: "GET" | "POST", path: string, body: unknown, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method, timeout: timeoutMs, headers: body === undefined ? {} : { "content-type": "application/json" } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        if (res.statusCode !== 200) return reject(new StatusServerError(`${method} ${path} on ${socketPath}: HTTP ${res.statusCode}: ${refusalText(text)}`));
        try {
          resolve(JSON.parse(text) as unknown);
        } catch (err) {
          reject(new StatusServerError(`${method} ${path} on ${socketPath}: not JSON`, { cause: err }));
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", (err) => reject(new StatusServerError(`cannot reach the daemon at ${socketPath} (is it running?)`, { cause: err })));
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** The daemon's Prometheus metrics, in their own registry. */
export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly duration = new Histogram({
    name: "reconcile_duration_seconds",
    help: "Duration of reconcile runs",
    labelNames: ["trigger", "result"],
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  private readonly applied = new Gauge({
    name: "reconcile_applied_revision_info",
    help: "The revision currently applied (value 1)",
    labelNames: ["revision"],
    registers: [this.registry],
  });
  private readonly drift = new Counter({
    name: "reconcile_drift_corrections_total",
    help: "Datapath entries found different from the desired state and corrected",
    registers: [this.registry],
  });
  private readonly errors = new Gauge({
    name: "reconcile_errors",
    help: "Objects currently in error",
    registers: [this.registry],
  });
  private readonly mapEntries = new Gauge({
    name: "reconcile_map_entries",
    help: "Entries in each BPF map",
    labelNames: ["map"],
    registers: [this.registry],
  });
  private readonly mapPressure = new Gauge({
    name: "reconcile_map_pressure",
    help: "Fill ratio of each BPF map (entries / max_entries)",
    labelNames: ["map"],
    registers: [this.registry],
  });
  private readonly foreign = new Gauge({
    name: "reconcile_foreign_programs",
    help: "Foreign tcx programs on the hooks of reconcile's programs, by position relative to reconcile's (before: it runs first and can bypass policy)",
    labelNames: ["device", "netns", "hook", "position"],
    registers: [this.registry],
  });
  private readonly suspendedGauge = new Gauge({
    name: "reconcile_suspended",
    help: "1 while the daemon is suspended (reconcile suspend): it plans and reports, and applies nothing",
    registers: [this.registry],
  });
  private readonly pending = new Gauge({
    name: "reconcile_pending_changes",
    help: "Changes the last suspended run planned and did not apply (0 when not suspended)",
    registers: [this.registry],
  });
  private readonly drops = new Counter({
    name: "reconcile_drops_total",
    help: "Packets the datapath dropped, as its events reported them (rate-limited in the kernel: see reconcile_events_suppressed_total)",
    labelNames: ["endpoint", "reason", "direction"],
    registers: [this.registry],
  });
  private readonly verdicts = new Counter({
    name: "reconcile_policy_verdicts_total",
    help: "Policy verdicts the datapath reported: deny (policy drops), allow (new flows, when verdict events are on), audit (would have been denied)",
    labelNames: ["endpoint", "verdict"],
    registers: [this.registry],
  });
  private readonly eventsLost = new Counter({
    name: "reconcile_events_lost_total",
    help: "Datapath events not reported because the ring buffer was full (the reader fell behind)",
    registers: [this.registry],
  });
  private readonly eventsSuppressed = new Counter({
    name: "reconcile_events_suppressed_total",
    help: "Datapath events not reported because the endpoint used up its rate (event_rate per CPU)",
    registers: [this.registry],
  });
  private budgetSeen = { suppressed: 0n, lost: 0n };
  private readonly gitFailures = new Counter({
    name: "reconcile_git_fetch_failures_total",
    help: "Git fetches that failed",
    registers: [this.registry],
  });

  /** Record a finished run (wire to the loop's onRun). */
  observeRun(run: RunRecord, status: LoopStatus): void {
    this.duration.observe({ trigger: run.trigger, result: run.result }, (run.finishedAt - run.startedAt) / 1000);
    if (run.result === "suspended") {
      this.pending.set(run.changes);
      return;
    }
    if (run.drift > 0) this.drift.inc(run.drift);
    this.errors.set(run.result === "invalid" ? this.currentErrors : run.errors.length);
    if (run.result !== "invalid") this.currentErrors = run.errors.length;
    if (status.appliedRevision !== null) {
      this.applied.reset();
      this.applied.set({ revision: status.appliedRevision }, 1);
    }
  }
  private currentErrors = 0;

  setMapEntries(map: string, entries: number): void {
    this.mapEntries.set({ map }, entries);
  }
  setMapPressure(map: string, ratio: number): void {
    this.mapPressure.set({ map }, ratio);
  }
  /** The foreign programs found on reconcile's hooks now (replaces the last set). */
  setForeignPrograms(programs: ReadonlyArray<{ device: string; netns?: string; hook: string; position: "before" | "after" }>): void {
    this.foreign.reset();
    for (const p of programs) this.foreign.inc({ device: p.device, netns: p.netns ?? "", hook: p.hook, position: p.position });
  }
  setSuspended(suspended: boolean, pendingChanges = 0): void {
    this.suspendedGauge.set(suspended ? 1 : 0);
    this.pending.set(suspended ? pendingChanges : 0);
  }
  countDrop(endpoint: string, reason: string, direction: string): void {
    this.drops.inc({ endpoint, reason, direction });
  }
  countVerdict(endpoint: string, verdict: "allow" | "deny" | "audit"): void {
    this.verdicts.inc({ endpoint, verdict });
  }
  /** The event_budget totals now: the counters grow by what they grew since the last reading (a
   *  total that went down is a map made afresh, whose totals count from zero). */
  setEventBudget(now: { suppressed: bigint; lost: bigint }): void {
    const grew = (was: bigint, is: bigint) => Number(is >= was ? is - was : is);
    this.eventsSuppressed.inc(grew(this.budgetSeen.suppressed, now.suppressed));
    this.eventsLost.inc(grew(this.budgetSeen.lost, now.lost));
    this.budgetSeen = { suppressed: now.suppressed, lost: now.lost };
  }
  gitFetchFailed(): void {
    this.gitFailures.inc();
  }
}

export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => void;

export interface MetricsServerOptions {
  /** "host:port", e.g. "127.0.0.1:9963" ("[::1]:9963" for IPv6). Port 0 picks a free one. */
  listen: string;
  metrics: DaemonMetrics;
  /** True once the first reconcile succeeded: /readyz answers 200 from then on. */
  isReady: () => boolean;
  /** Extra routes by exact path, e.g. { "/hooks/git": webhookHandler }. */
  routes?: Record<string, HttpHandler>;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(listen);
  if (!m) throw new StatusServerError(`listen address ${JSON.stringify(listen)}: expected host:port`);
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}

/** Serve /metrics, /healthz, /readyz (and extra routes) over TCP. */
export async function startMetricsServer(opts: MetricsServerOptions): Promise<RunningServer> {
  const { host, port } = parseListen(opts.listen);
  const server = createServer((req, res) => {
    const pathname = new URL(req.url ?? "/", "http://x").pathname;
    const extra = opts.routes?.[pathname];
    if (extra) return extra(req, res);
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET" }).end();
      return;
    }
    if (pathname === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (pathname === "/readyz") {
      const ready = opts.isReady();
      res.writeHead(ready ? 200 : 503, { "content-type": "text/plain" }).end(ready ? "ready\n" : "not ready: no successful reconcile yet\n");
    } else if (pathname === "/metrics") {
      opts.metrics.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": opts.metrics.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(`${String(err)}\n`),
      );
    } else {
      res.writeHead(404).end("not found\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) => reject(new StatusServerError(`listen on ${opts.listen}`, { cause: err })));
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  const bound = typeof addr === "object" && addr ? `${addr.family === "IPv6" ? `[${addr.address}]` : addr.address}:${addr.port}` : opts.listen;
  return { address: bound, close: () => closeServer(server) };
}

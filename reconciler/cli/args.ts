// argv (+ RECONCILE_* environment) → a typed command. No I/O besides reading the environment map
// passed in.

export class UsageError extends Error {
  override name = "UsageError";
}

export type OutputFormat = "text" | "json";

/** Settings shared by every command. Each may also come from RECONCILE_<NAME> (e.g. RECONCILE_SOURCE). */
export interface GlobalOptions {
  /** Manifest directory or git URL. */
  source?: string;
  /** Git branch, tag or full commit SHA. */
  ref?: string;
  /** Subdirectory of the source that holds the manifests. */
  path?: string;
  /** Node we reconcile for (default: the host name). */
  node?: string;
  output: OutputFormat;
  /** bpffs directory holding reconcile's pins. */
  bpffsRoot: string;
  /** Where git checkouts and other state live. */
  stateDir: string;
  /** --state-dir (or RECONCILE_STATE_DIR) was given: one-shot commands fetch git sources under it
   *  (else under the system's temporary directory). */
  stateDirGiven?: boolean;
  /** Periodic resync in milliseconds. */
  resyncIntervalMs: number;
  attachMode: "auto" | "tcx" | "tc";
  /** Where a fresh tcx attachment goes among foreign programs on the hook (existing ones stay put). */
  attachPosition: "first" | "last";
  enforcement: "default" | "always" | "never";
  /** Status socket path. */
  socket: string;
  /** Optional TCP address for /metrics, /healthz, /readyz. */
  listen?: string;
  /** Log line format. */
  logFormat: "logfmt" | "json";
  /** Lowest log level written. */
  logLevel: "error" | "warn" | "notice" | "info" | "debug";
  /** How often a git source fetches, in milliseconds. */
  gitIntervalMs: number;
  /** ssh allowed-signers file: only commits signed by one of these keys are applied (git sources). */
  verifySignatures?: string;
  /**
   * Apply a snapshot with no manifests at all even when the datapath in force has endpoints
   * (without it such a snapshot is refused: an unmounted or emptied source must not tear down).
   */
  allowEmpty: boolean;
  // Settings only the environment gives (secrets and their files stay out of argv and ps):
  /** RECONCILE_SOURCE_TYPE=git: a git source whose URL does not look like one. */
  sourceType?: "git";
  /** RECONCILE_GIT_TOKEN / RECONCILE_GIT_TOKEN_FILE: https token for the git source. */
  gitToken?: string;
  gitTokenFile?: string;
  /** RECONCILE_GIT_SSH_KEY_FILE: ssh private key for the git source. */
  gitSshKeyFile?: string;
  /** RECONCILE_WEBHOOK_SECRET_FILE: shared secret of the git push webhook. */
  webhookSecretFile?: string;
}

/** GlobalOptions that only an environment variable sets. */
const ENV_ONLY = {
  gitToken: "RECONCILE_GIT_TOKEN",
  gitTokenFile: "RECONCILE_GIT_TOKEN_FILE",
  gitSshKeyFile: "RECONCILE_GIT_SSH_KEY_FILE",
  webhookSecretFile: "RECONCILE_WEBHOOK_SECRET_FILE",
} as const;

export type Command =
  | { name: "run"; mode: "dry-run" | "once" | "daemon"; opts: GlobalOptions; plan?: { out?: string; apply?: string } }
  | { name: "validate"; opts: GlobalOptions }
  | { name: "explain"; opts: GlobalOptions; from: string; to: string; port: number; protocol: number; protocolName: string }
  | { name: "inspect"; opts: GlobalOptions; what: "endpoints" | "ipcache" | "policy" | "devices" | "links"; endpoint?: string }
  | { name: "diff"; opts: GlobalOptions; base: string; ref: string; allNodes: boolean; format: OutputFormat | "markdown" }
  | { name: "status"; opts: GlobalOptions }
  | { name: "teardown"; opts: GlobalOptions }
  | { name: "version"; opts: GlobalOptions }
  | { name: "help"; text: string };

interface FlagDef {
  /** Property of GlobalOptions (or a command-local name). */
  key: string;
  /** Takes a value (else boolean). */
  value: boolean;
  env?: string;
}

const FLAGS: Record<string, FlagDef> = {
  "--source": { key: "source", value: true, env: "RECONCILE_SOURCE" },
  "--ref": { key: "ref", value: true, env: "RECONCILE_REF" },
  "--path": { key: "path", value: true, env: "RECONCILE_PATH" },
  "--node": { key: "node", value: true, env: "RECONCILE_NODE" },
  "--output": { key: "output", value: true, env: "RECONCILE_OUTPUT" },
  "--bpffs-root": { key: "bpffsRoot", value: true, env: "RECONCILE_BPFFS_ROOT" },
  "--state-dir": { key: "stateDir", value: true, env: "RECONCILE_STATE_DIR" },
  "--resync-interval": { key: "resyncInterval", value: true, env: "RECONCILE_RESYNC_INTERVAL" },
  "--attach-mode": { key: "attachMode", value: true, env: "RECONCILE_ATTACH_MODE" },
  "--attach-position": { key: "attachPosition", value: true, env: "RECONCILE_ATTACH_POSITION" },
  "--enforcement": { key: "enforcement", value: true, env: "RECONCILE_ENFORCEMENT" },
  "--socket": { key: "socket", value: true, env: "RECONCILE_SOCKET" },
  "--listen": { key: "listen", value: true, env: "RECONCILE_LISTEN" },
  "--log-format": { key: "logFormat", value: true, env: "RECONCILE_LOG_FORMAT" },
  "--log-level": { key: "logLevel", value: true, env: "RECONCILE_LOG_LEVEL" },
  "--git-interval": { key: "gitInterval", value: true, env: "RECONCILE_GIT_INTERVAL" },
  "--verify-signatures": { key: "verifySignatures", value: true, env: "RECONCILE_GIT_ALLOWED_SIGNERS_FILE" },
  "--allow-empty": { key: "allowEmpty", value: false, env: "RECONCILE_ALLOW_EMPTY" },
  "--dry-run": { key: "dryRun", value: false },
  "--once": { key: "once", value: false },
  "--from": { key: "from", value: true },
  "--to": { key: "to", value: true },
  "--port": { key: "port", value: true },
  "--base": { key: "base", value: true },
  "--all-nodes": { key: "allNodes", value: false },
  "--out": { key: "out", value: true },
  "--plan": { key: "plan", value: true },
  "--help": { key: "help", value: false },
  "-h": { key: "help", value: false },
};

const SUBCOMMANDS = ["validate", "explain", "diff", "inspect", "status", "teardown", "version", "help"] as const;

export const USAGE = `Usage:
  reconcile [--source DIR|GIT-URL] [--ref BRANCH|TAG|SHA] [--path SUBDIR] [--node NAME]
            [--dry-run] [--once] [--output text|json] [--bpffs-root PATH] [--state-dir PATH]
            [--resync-interval 30s] [--attach-mode auto|tcx|tc] [--attach-position first|last]
            [--enforcement default|always|never] [--socket PATH] [--listen ADDR:PORT]
            [--log-format logfmt|json] [--log-level error|warn|notice|info|debug] [--git-interval 30s]
            [--verify-signatures ALLOWED-SIGNERS-FILE] [--allow-empty]
  reconcile validate --source ...              validate manifests only
  reconcile explain --source ... --from EP|IP|host --to EP|IP|host --port 80/TCP [--output json]
  reconcile diff [--source GIT-URL] --base REF|DIR --ref REF|DIR [--node NAME | --all-nodes]
                 [--output text|json|markdown]   plan and policy impact between two revisions,
                                                 from the manifests alone (no kernel, no root)
  reconcile --dry-run --out PLAN-FILE          save the plan (with the revision and observed state)
  reconcile --once --plan PLAN-FILE            apply exactly that plan; refused if either changed
  reconcile inspect endpoints|ipcache|policy ENDPOINT|devices|links [--output json]
  reconcile status [--output json]             ask the running daemon
  reconcile teardown                           remove everything reconcile owns
  reconcile version

One-shot commands (--dry-run, --once, validate, explain, diff) read a git source by a shallow
fetch of --ref into a private temporary directory (under --state-dir when given), removed
afterwards; its revision reads git:<sha>. Without --once or --dry-run, reconcile runs as a daemon. Every option may also be set as an
environment variable RECONCILE_<OPTION> (e.g. RECONCILE_SOURCE=/etc/reconcile/manifests).

Exit codes: 0 success and nothing to change, 2 --dry-run (or diff) found changes, 1 error.
`;

const PROTOCOLS: Record<string, number> = { TCP: 6, UDP: 17, SCTP: 132, ICMP: 1, ICMPV6: 58, ANY: 0 };

export function parseArgs(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, defaults: { node: string }): Command {
  const values: Record<string, string | boolean> = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.startsWith("--") && arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const def = FLAGS[flag];
    if (!def) {
      if (arg.startsWith("-")) throw new UsageError(`unknown option ${arg} (see reconcile --help)`);
      positional.push(arg);
      continue;
    }
    if (!def.value) {
      values[def.key] = true;
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined || (inline === undefined && value.startsWith("--"))) throw new UsageError(`option ${flag} needs a value`);
    values[def.key] = value;
  }
  for (const def of Object.values(FLAGS)) {
    if (def.env && values[def.key] === undefined && env[def.env] !== undefined && env[def.env] !== "") values[def.key] = env[def.env]!;
  }

  const sub = positional[0] as (typeof SUBCOMMANDS)[number] | undefined;
  if (values.help || sub === "help") return { name: "help", text: USAGE };
  if (sub !== undefined && !SUBCOMMANDS.includes(sub)) throw new UsageError(`unknown command "${sub}" (expected one of ${SUBCOMMANDS.join(", ")})`);

  // Markdown is diff's alone (a pull-request comment); the other commands print text or json.
  const markdown = sub === "diff" && values.output === "markdown";
  if (markdown) delete values.output;
  const opts = globalOptions(values, defaults);
  for (const [key, name] of Object.entries(ENV_ONLY) as Array<[keyof typeof ENV_ONLY, string]>) {
    if (env[name]) opts[key] = env[name];
  }
  if (env.RECONCILE_SOURCE_TYPE === "git") opts.sourceType = "git";
  else if (env.RECONCILE_SOURCE_TYPE && env.RECONCILE_SOURCE_TYPE !== "dir") throw new UsageError(`RECONCILE_SOURCE_TYPE: expected git or dir, got ${env.RECONCILE_SOURCE_TYPE}`);
  switch (sub) {
    case undefined: {
      if (values.dryRun && values.once) throw new UsageError("--dry-run and --once exclude each other");
      const mode = values.dryRun ? "dry-run" : values.once ? "once" : "daemon";
      requireSource(opts, "reconcile");
      if (values.out !== undefined && mode !== "dry-run") throw new UsageError("--out PLAN-FILE saves the plan of a --dry-run");
      if (values.plan !== undefined && mode !== "once") throw new UsageError("--plan PLAN-FILE is applied by --once");
      const plan = { ...(str(values.out) ? { out: str(values.out)! } : {}), ...(str(values.plan) ? { apply: str(values.plan)! } : {}) };
      return { name: "run", mode, opts, ...(plan.out || plan.apply ? { plan } : {}) };
    }
    case "validate":
      requireSource(opts, "validate");
      return { name: "validate", opts };
    case "explain": {
      requireSource(opts, "explain");
      const from = stringValue(values, "from", "explain needs --from EP|IP");
      const to = stringValue(values, "to", "explain needs --to EP|IP");
      const portText = stringValue(values, "port", "explain needs --port PORT/PROTOCOL (e.g. 80/TCP)");
      const { port, protocol, protocolName } = parsePort(portText);
      return { name: "explain", opts, from, to, port, protocol, protocolName };
    }
    case "diff": {
      const base = stringValue(values, "base", "diff needs --base REF|DIR (the revision in force, e.g. origin/main)");
      const ref = opts.ref;
      if (ref === undefined) throw new UsageError("diff needs --ref REF|DIR (the revision to preview, e.g. HEAD)");
      return { name: "diff", opts, base, ref, allNodes: values.allNodes === true, format: markdown ? "markdown" : opts.output };
    }
    case "inspect": {
      const what = positional[1];
      if (what !== "endpoints" && what !== "ipcache" && what !== "policy" && what !== "devices" && what !== "links") {
        throw new UsageError(`inspect needs one of endpoints, ipcache, policy ENDPOINT, devices, links (got ${what ?? "nothing"})`);
      }
      if (what === "policy" && !positional[2]) throw new UsageError("inspect policy needs an endpoint name");
      return { name: "inspect", opts, what, ...(positional[2] !== undefined ? { endpoint: positional[2] } : {}) };
    }
    case "status":
      return { name: "status", opts };
    case "teardown":
      return { name: "teardown", opts };
    case "version":
      return { name: "version", opts };
    default:
      throw new UsageError(`unknown command "${sub}"`);
  }
}

function globalOptions(values: Record<string, string | boolean>, defaults: { node: string }): GlobalOptions {
  const output = oneOf(values.output, ["text", "json"] as const, "--output", "text");
  const attachMode = oneOf(values.attachMode, ["auto", "tcx", "tc"] as const, "--attach-mode", "auto");
  const attachPosition = oneOf(values.attachPosition, ["first", "last"] as const, "--attach-position", "first");
  const enforcement = oneOf(values.enforcement, ["default", "always", "never"] as const, "--enforcement", "default");
  const logFormat = oneOf(values.logFormat, ["logfmt", "json"] as const, "--log-format", "logfmt");
  const logLevel = oneOf(values.logLevel, ["error", "warn", "notice", "info", "debug"] as const, "--log-level", "info");
  const opts: GlobalOptions = {
    output,
    bpffsRoot: str(values.bpffsRoot) ?? "/sys/fs/bpf/reconcile",
    stateDir: str(values.stateDir) ?? "/var/lib/reconcile",
    stateDirGiven: str(values.stateDir) !== undefined,
    resyncIntervalMs: parseDuration(str(values.resyncInterval) ?? "30s", "--resync-interval"),
    attachMode,
    attachPosition,
    enforcement,
    socket: str(values.socket) ?? "/run/reconcile/reconcile.sock",
    logFormat,
    logLevel,
    gitIntervalMs: parseDuration(str(values.gitInterval) ?? "30s", "--git-interval"),
    node: str(values.node) ?? defaults.node,
    allowEmpty: bool(values.allowEmpty, "--allow-empty (RECONCILE_ALLOW_EMPTY)"),
  };
  for (const key of ["source", "ref", "path", "listen", "verifySignatures"] as const) {
    const v = str(values[key]);
    if (v !== undefined) opts[key] = v;
  }
  return opts;
}

/** A switch: given on the command line (true), or from its environment variable as true/false, 1/0, yes/no. */
function bool(v: string | boolean | undefined, flag: string): boolean {
  if (v === undefined) return false;
  if (typeof v === "boolean") return v;
  const t = v.trim().toLowerCase();
  if (t === "true" || t === "1" || t === "yes") return true;
  if (t === "false" || t === "0" || t === "no") return false;
  throw new UsageError(`${flag}: expected true or false (or 1/0, yes/no), got ${v}`);
}

function str(v: string | boolean | undefined): string | undefined {
  return typeof v === "string" ? v : undefined;
}

function stringValue(values: Record<string, string | boolean>, key: string, message: string): string {
  const v = str(values[key]);
  if (v === undefined) throw new UsageError(message);
  return v;
}

function oneOf<T extends string>(v: string | boolean | undefined, allowed: readonly T[], flag: string, fallback: T): T {
  if (v === undefined) return fallback;
  if (typeof v === "string" && (allowed as readonly string[]).includes(v)) return v as T;
  throw new UsageError(`${flag}: expected one of ${allowed.join(", ")}, got ${String(v)}`);
}

function requireSource(opts: GlobalOptions, command: string): void {
  if (!opts.source) throw new UsageError(`${command} needs --source DIR|GIT-URL (or RECONCILE_SOURCE)`);
}

/** "30s", "500ms", "2m", "1h" → milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+)(ms|s|m|h)$/.exec(text.trim());
  if (!m) throw new UsageError(`${flag}: expected a duration like 30s, 500ms, 5m (got ${text})`);
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"];
  return n * unit;
}

/** "80/TCP" → port 80, protocol 6. A bare number means TCP. */
export function parsePort(text: string): { port: number; protocol: number; protocolName: string } {
  const m = /^(\d{1,5})(?:\/([A-Za-z0-9]+))?$/.exec(text);
  const port = m ? Number(m[1]) : NaN;
  const protocolName = (m?.[2] ?? "TCP").toUpperCase();
  const protocol = PROTOCOLS[protocolName];
  if (!m || port > 65535 || protocol === undefined) {
    throw new UsageError(`--port: expected PORT/PROTOCOL with PORT 0..65535 and PROTOCOL one of ${Object.keys(PROTOCOLS).join(", ")} (got ${text})`);
  }
  return { port, protocol, protocolName };
}

// argv (+ RECONCILE_* environment) → a typed command. No I/O besides reading the environment map
// passed in. commander reads argv (flags anywhere, per-command --help, `help CMD`); the flags, their
// variables and defaults are the table in flags.ts; the values are checked here.

import { Command as CommanderCommand, CommanderError, Option } from "commander";
import { MAX_EVENT_RATE } from "../datapath/desired.js";
import { DEFAULT_EVENT_RATE } from "../datapath/layouts.js";
import type { EventOptions } from "../plan/snapshot-to-desired.js";
import { FilterError, parseSide, parseVerdicts, type EventFilter } from "../monitor/filter.js";
import { ATTACH_MODES, ATTACH_POSITIONS, COMMAND_NAMES, COMMANDS, ENFORCEMENT_MODES, ENFORCEMENTS, FLAGS, flagsOf, INSPECT_SORTS, INSPECT_WHAT, LOG_FORMATS, LOG_LEVELS, MONITOR_VERDICTS, OUTPUTS, SHELLS, type CommandName, type FlagDef } from "./flags.js";

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
  /** --enforcement-mode: audit puts every endpoint in audit mode (docs/audit.md). */
  enforcementMode: "enforce" | "audit";
  /** --monitor-verdicts: policy verdict events every endpoint reports. */
  monitorVerdicts: "none" | "allow" | "deny" | "all";
  /** --event-rate: events per second per CPU per endpoint. */
  eventRate: number;
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
  /** --log-drops: the daemon logs each drop event (rate-limited). */
  logDrops: boolean;
  /** --expedite-attach: a batch of fresh tcx links expedites RCU grace periods (apply/kernel/rcu.ts). */
  expediteAttach: boolean;
  /** --no-progress: no progress lines on stderr (nor in the daemon's log for its first apply). */
  noProgress: boolean;
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
  | { name: "inspect"; opts: GlobalOptions; what: (typeof INSPECT_WHAT)[number]; endpoint?: string; sort?: (typeof INSPECT_SORTS)[number] }
  /**
   * `via`: daemon = the daemon's socket only (--socket given); ring = the pinned ring buffer
   * (--bpffs-root given without --socket); auto = the default socket if it answers, else the ring.
   */
  | { name: "monitor"; opts: GlobalOptions; via: "auto" | "daemon" | "ring"; filter: EventFilter; count?: number }
  | { name: "diff"; opts: GlobalOptions; base: string; ref: string; allNodes: boolean; format: OutputFormat | "markdown" }
  | { name: "status"; opts: GlobalOptions }
  | { name: "suspend"; opts: GlobalOptions; reason?: string }
  | { name: "resume"; opts: GlobalOptions }
  | { name: "teardown"; opts: GlobalOptions }
  | { name: "version"; opts: GlobalOptions }
  /** A completion script, or (shell "endpoints", what the scripts call) the endpoint names of --source. */
  | { name: "completion"; opts: GlobalOptions; shell: (typeof SHELLS)[number] | "endpoints" }
  | { name: "help"; text: string };

/** How a command's flags and arguments came out of argv (before the environment and the checks). */
interface Parsed {
  /** undefined: the bare `reconcile` (run). */
  sub: Exclude<CommandName, "run"> | undefined;
  values: Record<string, string | boolean>;
  positional: string[];
}

const PROTOCOLS: Record<string, number> = { TCP: 6, UDP: 17, SCTP: 132, ICMP: 1, ICMPV6: 58, ANY: 0 };

export function parseArgs(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, defaults: { node: string }): Command {
  const parsed = readArgv(argv);
  if ("help" in parsed) return { name: "help", text: parsed.help };
  const { sub, values, positional } = parsed;
  for (const def of Object.values(FLAGS)) {
    if (def.env && values[def.key] === undefined && env[def.env] !== undefined && env[def.env] !== "") values[def.key] = env[def.env]!;
  }

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
      const [what, endpoint] = positional;
      if (!(INSPECT_WHAT as readonly string[]).includes(what ?? "")) {
        throw new UsageError(`inspect needs one of endpoints, ipcache, policy ENDPOINT, devices, links (got ${what ?? "nothing"})${suggestion(what, INSPECT_WHAT)}`);
      }
      if (what === "policy" && !endpoint) throw new UsageError("inspect policy needs an endpoint name");
      const sort = values.sort === undefined ? undefined : oneOf(values.sort, INSPECT_SORTS, "--sort", "hits");
      if (sort && what !== "policy") throw new UsageError("--sort orders the entries of inspect policy ENDPOINT");
      return { name: "inspect", opts, what: what as (typeof INSPECT_WHAT)[number], ...(endpoint !== undefined ? { endpoint } : {}), ...(sort ? { sort } : {}) };
    }
    case "monitor":
      return { name: "monitor", opts, via: values.socket !== undefined ? "daemon" : values.bpffsRoot !== undefined ? "ring" : "auto", ...monitorFilter(values) };
    case "completion": {
      const [shell] = positional;
      if (shell === "endpoints" || (SHELLS as readonly string[]).includes(shell ?? "")) return { name: "completion", opts, shell: shell as (typeof SHELLS)[number] };
      throw new UsageError(`completion needs one of ${SHELLS.join(", ")} (got ${shell ?? "nothing"})${suggestion(shell, SHELLS)}`);
    }
    case "suspend": {
      const reason = str(values.reason);
      return { name: "suspend", opts, ...(reason !== undefined ? { reason } : {}) };
    }
    case "resume":
    case "status":
    case "teardown":
    case "version":
      return { name: sub, opts };
    default:
      throw new Error(`command ${String(sub satisfies never)} has no parser`);
  }
}

/**
 * argv → the command it names, its flags and its arguments, or the help text it asks for. Every
 * flag of the table is accepted by every command and anywhere on the line (as before commander);
 * a command's --help lists its own (flagsOf).
 */
function readArgv(argv: readonly string[]): Parsed | { help: string } {
  refuseFlagAsValue(argv);
  let parsed: Parsed | undefined;
  let out = "";
  let failedIn: CommandName = "run";
  const program = buildProgram({
    onCommand: (sub, cmd, args) => {
      parsed = { sub, values: valuesOf(cmd), positional: args.filter((a): a is string => typeof a === "string") };
    },
    write: (text) => (out += text),
    onError: (name) => (failedIn = name),
  });
  try {
    program.parse([...argv], { from: "user" });
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    if (err.exitCode === 0) return { help: out }; // --help, -h, help [command]
    if (err.code === "commander.help") {
      // `help NAME` of a command that does not exist
      const name = argv[argv.indexOf("help") + 1] ?? "";
      const known = COMMAND_NAMES.filter((c) => c !== "run");
      throw new UsageError(`unknown command "${name}"${suggestion(name, known)} (expected one of ${known.join(", ")})`);
    }
    throw new UsageError(usageMessage(err, failedIn));
  }
  return parsed!;
}

/** `--source --dry-run`: a flag where a value belongs is a mistake, not a value. */
function refuseFlagAsValue(argv: readonly string[]): void {
  argv.forEach((arg, i) => {
    const next = argv[i + 1];
    if (FLAGS[arg]?.value && (next === undefined || next.startsWith("--"))) throw new UsageError(`option ${arg} needs a value`);
  });
}

/**
 * Flag values by their key in the table, from the command and the program around it. A `--no-X`
 * switch is true when given: commander stores it as X=false, and X=true by default (not given,
 * so its environment variable may still set it).
 */
function valuesOf(cmd: CommanderCommand): Record<string, string | boolean> {
  const byAttribute = new Map(Object.entries(FLAGS).map(([flag, def]) => [new Option(flag).attributeName(), { key: def.key, negate: flag.startsWith("--no-") }]));
  const values: Record<string, string | boolean> = {};
  for (const [attr, v] of Object.entries(cmd.optsWithGlobals())) {
    const def = byAttribute.get(attr);
    if (def === undefined || (typeof v !== "string" && typeof v !== "boolean")) continue;
    if (!def.negate) values[def.key] = v;
    else if (cmd.getOptionValueSourceWithGlobals(attr) !== "default") values[def.key] = v === false;
  }
  return values;
}

/** Commander's error → ours, with the nearest flag or command where one is near. */
function usageMessage(err: CommanderError, command: CommandName): string {
  const text = err.message.replace(/^error: /, "").split("\n")[0]!;
  if (err.code === "commander.unknownOption") {
    const flag = /'([^']+)'/.exec(text)?.[1] ?? text;
    const flagName = flag.split("=")[0]!;
    return `unknown flag ${flagName}${suggestion(flagName, Object.keys(FLAGS))} (see reconcile${command === "run" ? "" : ` ${command}`} --help)`;
  }
  if (err.code === "commander.optionMissingArgument") return `option ${/'(--[a-z-]+)/.exec(text)?.[1] ?? text} needs a value`;
  return text;
}

interface ProgramHooks {
  /** The command argv names, with its commander object (for the flag values) and its arguments. */
  onCommand: (sub: Exclude<CommandName, "run"> | undefined, cmd: CommanderCommand, args: unknown[]) => void;
  /** Where help text goes. */
  write: (text: string) => void;
  /** Which command's parsing failed (for the hint in the message). */
  onError: (name: CommandName) => void;
}

/** The root program (run) and one subcommand per command, from the tables in flags.ts. */
function buildProgram({ onCommand, write, onError }: ProgramHooks): CommanderCommand {
  const root = configure(new CommanderCommand("reconcile"), "run", write, onError);
  // Every flag, anywhere on the line; only run's are listed in `reconcile --help`.
  for (const [flag, def] of Object.entries(FLAGS)) root.addOption(option(flag, def).hideHelp(!(def.commands ?? ["run"]).includes("run")));
  root.argument("[command]").action((command: string | undefined) => {
    const known = COMMAND_NAMES.filter((c) => c !== "run");
    if (command !== undefined) throw new UsageError(`unknown command "${command}"${suggestion(command, known)} (expected one of ${known.join(", ")})`);
    onCommand(undefined, root, []);
  });
  root.helpCommand("help [command]", "show the help of a command");
  root.addHelpText("after", `Every flag may also be set as its environment variable (shown beside it), e.g.\nRECONCILE_SOURCE=/etc/reconcile/manifests; a flag wins over its variable.\n\nExit codes: 0 success and nothing to change, 2 --dry-run found changes, 1 error.\n`);
  for (const name of COMMAND_NAMES) {
    if (name === "run") continue;
    const def = COMMANDS[name];
    const cmd = configure(root.command(name), name, write, onError).summary(def.summary);
    if (def.args) cmd.arguments(def.args);
    for (const [flag, f] of flagsOf(name)) cmd.addOption(option(flag, f));
    cmd.action((...args: unknown[]) => onCommand(name, cmd, args.slice(0, -2)));
  }
  return root;
}

/** What every command shares: the description, synopsis and examples, errors as exceptions, output captured. */
function configure(cmd: CommanderCommand, name: CommandName, write: (text: string) => void, onError: (name: CommandName) => void): CommanderCommand {
  const def = COMMANDS[name];
  cmd
    .description(def.details ? `${def.summary}.\n${def.details}` : `${def.summary}.`)
    .usage(def.usage)
    .helpOption("-h, --help", "show this help")
    .configureHelp({ helpWidth: 100, sortOptions: false })
    .configureOutput({ writeOut: write, writeErr: write, outputError: () => {} })
    .exitOverride((err) => {
      onError(name);
      throw err;
    })
    .addHelpText("after", `\nExamples:\n${def.examples.map((e) => `  reconcile ${e}`).join("\n")}\n`);
  if (name !== "run") cmd.helpCommand(false);
  return cmd;
}

/** A commander option for a table entry; its help names the default, the choices and the variable. */
function option(flag: string, def: FlagDef): Option {
  const extra = [
    def.choices ? `one of ${def.choices.join(", ")}` : "",
    def.default ? `default: ${def.default}` : "",
    def.env ? `env ${def.env}` : "",
  ].filter(Boolean);
  return new Option(def.value ? `${flag} <${def.arg ?? "VALUE"}>` : flag, `${def.help ?? ""}${extra.length ? ` (${extra.join("; ")})` : ""}`);
}

/** "; did you mean X?" for the candidate nearest to `word`, or "" when none is near. */
export function suggestion(word: string | undefined, candidates: readonly string[]): string {
  if (!word) return "";
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  // Near: at most a third of the word wrong, and never more than 3 edits.
  return best !== undefined && bestDistance <= Math.min(3, Math.max(1, Math.floor(word.length / 3))) ? `; did you mean ${best}?` : "";
}

/** Edits (insert, delete, substitute, swap two neighbours) that turn a into b. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

function globalOptions(values: Record<string, string | boolean>, defaults: { node: string }): GlobalOptions {
  const output = oneOf(values.output, OUTPUTS, "--output", "text");
  const attachMode = oneOf(values.attachMode, ATTACH_MODES, "--attach-mode", "auto");
  const attachPosition = oneOf(values.attachPosition, ATTACH_POSITIONS, "--attach-position", "first");
  const enforcement = oneOf(values.enforcement, ENFORCEMENTS, "--enforcement", "default");
  const enforcementMode = oneOf(values.enforcementMode, ENFORCEMENT_MODES, "--enforcement-mode", "enforce");
  const monitorVerdicts = oneOf(values.monitorVerdicts, MONITOR_VERDICTS, "--monitor-verdicts", "none");
  const logFormat = oneOf(values.logFormat, LOG_FORMATS, "--log-format", "logfmt");
  const logLevel = oneOf(values.logLevel, LOG_LEVELS, "--log-level", "info");
  const opts: GlobalOptions = {
    output,
    bpffsRoot: str(values.bpffsRoot) ?? "/sys/fs/bpf/reconcile",
    stateDir: str(values.stateDir) ?? "/var/lib/reconcile",
    stateDirGiven: str(values.stateDir) !== undefined,
    resyncIntervalMs: parseDuration(str(values.resyncInterval) ?? "30s", "--resync-interval"),
    attachMode,
    attachPosition,
    enforcement,
    enforcementMode,
    monitorVerdicts,
    eventRate: parseEventRate(str(values.eventRate)),
    socket: str(values.socket) ?? "/run/reconcile/reconcile.sock",
    logFormat,
    logLevel,
    gitIntervalMs: parseDuration(str(values.gitInterval) ?? "30s", "--git-interval"),
    node: str(values.node) ?? defaults.node,
    allowEmpty: bool(values.allowEmpty, "--allow-empty (RECONCILE_ALLOW_EMPTY)"),
    logDrops: bool(values.logDrops, "--log-drops (RECONCILE_LOG_DROPS)"),
    expediteAttach: bool(values.expediteAttach, "--expedite-attach (RECONCILE_EXPEDITE_ATTACH)"),
    noProgress: bool(values.noProgress, "--no-progress (RECONCILE_NO_PROGRESS)"),
  };
  for (const key of ["source", "ref", "path", "listen", "verifySignatures"] as const) {
    const v = str(values[key]);
    if (v !== undefined) opts[key] = v;
  }
  return opts;
}

/** monitor's filters and --count, checked here so that a bad one is a usage error before anything is read. */
function monitorFilter(values: Record<string, string | boolean>): { filter: EventFilter; count?: number } {
  const [endpoint, verdict, from, to, portText] = [values.endpoint, values.verdict, values.from, values.to, values.port].map(str);
  const filter: EventFilter = {};
  try {
    if (endpoint !== undefined) filter.endpoint = endpoint;
    if (verdict !== undefined) filter.verdicts = parseVerdicts(verdict);
    if (from !== undefined) filter.from = parseSide(from);
    if (to !== undefined) filter.to = parseSide(to);
  } catch (err) {
    if (err instanceof FilterError) throw new UsageError(err.message);
    throw err;
  }
  if (portText !== undefined) {
    const { port, protocol } = parsePort(portText);
    filter.port = { port, protocol };
  }
  const countText = str(values.count);
  if (countText === undefined) return { filter };
  const count = /^\d{1,9}$/.test(countText.trim()) ? Number(countText.trim()) : NaN;
  if (!(count >= 1)) throw new UsageError(`--count: expected a whole number of events, 1 or more, got ${countText}`);
  return { filter, count };
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
  throw new UsageError(`${flag}: expected one of ${allowed.join(", ")}, got ${String(v)}${suggestion(String(v), allowed)}`);
}

function requireSource(opts: GlobalOptions, command: string): void {
  if (!opts.source) throw new UsageError(`${command} needs --source DIR|GIT-URL (or RECONCILE_SOURCE)`);
}

/** The audit mode and event settings of the command line, for every compile (see EventOptions). */
export function eventSettings(opts: GlobalOptions): Required<EventOptions> {
  return { enforcementMode: opts.enforcementMode, monitorVerdicts: opts.monitorVerdicts, eventRate: opts.eventRate };
}

/** --event-rate: an integer 0..MAX_EVENT_RATE (default DEFAULT_EVENT_RATE). */
export function parseEventRate(text: string | undefined): number {
  if (text === undefined) return DEFAULT_EVENT_RATE;
  const n = /^\d{1,7}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!(n <= MAX_EVENT_RATE)) throw new UsageError(`--event-rate: expected an integer 0..${MAX_EVENT_RATE} (events per second per CPU per endpoint), got ${text}`);
  return n;
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

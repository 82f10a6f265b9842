// The command line as data: every flag (its environment variable, default and fixed choices) and
// every command (its synopsis, the flags its --help lists, examples). args.ts parses argv with it,
// completion.ts writes the shell scripts from it, and the README's command reference is its --help.

export const OUTPUTS = ["text", "json"] as const;
export const ATTACH_MODES = ["auto", "tcx", "tc"] as const;
export const ATTACH_POSITIONS = ["first", "last"] as const;
export const ENFORCEMENTS = ["default", "always", "never"] as const;
export const ENFORCEMENT_MODES = ["enforce", "audit"] as const;
export { MONITOR_VERDICTS } from "../datapath/desired.js";
import { MONITOR_VERDICTS } from "../datapath/desired.js";
export const LOG_FORMATS = ["logfmt", "json"] as const;
export const LOG_LEVELS = ["error", "warn", "notice", "info", "debug"] as const;
export const INSPECT_WHAT = ["endpoints", "ipcache", "policy", "devices", "links", "drops"] as const;
/** inspect policy --sort: hits puts the entries that matched the most packets first. */
export const INSPECT_SORTS = ["hits"] as const;
export const SHELLS = ["bash", "zsh", "fish"] as const;

/** Commands by name; "run" is the bare `reconcile` (daemon, --dry-run, --once). */
export const COMMAND_NAMES = ["run", "validate", "explain", "diff", "inspect", "monitor", "status", "suspend", "resume", "teardown", "version", "completion"] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

export interface FlagDef {
  /** Property of GlobalOptions (or a command-local name). */
  key: string;
  /** Takes a value (else boolean). */
  value: boolean;
  env?: string;
  /** How --help names the value, e.g. DIR|GIT-URL. */
  arg?: string;
  /** One line for --help. */
  help?: string;
  /** The default as --help shows it (the value itself is set in args.ts). */
  default?: string;
  /** The only values it takes (checked in args.ts, offered by shell completion). */
  choices?: readonly string[];
  /** Whose --help lists it (default: run). Every command accepts every flag, as it does every RECONCILE_* variable. */
  commands?: readonly CommandName[];
}

const SOURCE_USERS: readonly CommandName[] = ["run", "validate", "explain", "diff", "inspect"];
/** The flags that say where the manifests are: monitor takes its names from them too. */
const MANIFEST_USERS: readonly CommandName[] = [...SOURCE_USERS, "monitor"];
const KERNEL_USERS: readonly CommandName[] = ["run", "inspect", "monitor", "teardown"];
/** Commands that plan endpoint entries (the event settings are part of them). */
const EVENT_USERS: readonly CommandName[] = ["run", "diff", "inspect"];

export const FLAGS: Record<string, FlagDef> = {
  "--source": { key: "source", value: true, env: "RECONCILE_SOURCE", arg: "DIR|GIT-URL", help: "manifest directory or git URL", commands: MANIFEST_USERS },
  "--ref": { key: "ref", value: true, env: "RECONCILE_REF", arg: "REF", help: "git branch, tag or full commit SHA (a local --source must then be a git repository)", default: "the remote's default branch", commands: MANIFEST_USERS },
  "--path": { key: "path", value: true, env: "RECONCILE_PATH", arg: "SUBDIR", help: "subdirectory of the source that holds the manifests", default: "the whole source", commands: MANIFEST_USERS },
  "--node": { key: "node", value: true, env: "RECONCILE_NODE", arg: "NAME", help: "the node this host is", default: "the host name", commands: [...MANIFEST_USERS, "teardown"] },
  "--output": { key: "output", value: true, env: "RECONCILE_OUTPUT", arg: "FORMAT", help: "output format (diff also takes markdown)", default: "text", choices: [...OUTPUTS, "markdown"], commands: ["run", "validate", "explain", "diff", "inspect", "monitor", "status", "suspend", "resume", "teardown", "version"] },
  "--bpffs-root": { key: "bpffsRoot", value: true, env: "RECONCILE_BPFFS_ROOT", arg: "PATH", help: "bpffs directory of reconcile's pins", default: "/sys/fs/bpf/reconcile", commands: KERNEL_USERS },
  "--state-dir": { key: "stateDir", value: true, env: "RECONCILE_STATE_DIR", arg: "PATH", help: "git checkouts, the daemon's stored load results and other state (one-shot commands: where their temporary checkout goes)", default: "/var/lib/reconcile", commands: ["run", "validate", "explain", "diff"] },
  "--resync-interval": { key: "resyncInterval", value: true, env: "RECONCILE_RESYNC_INTERVAL", arg: "DURATION", help: "period of the drift resync", default: "30s" },
  "--attach-mode": { key: "attachMode", value: true, env: "RECONCILE_ATTACH_MODE", arg: "MODE", help: "tcx links, tc filters, or tcx where the kernel has it", default: "auto", choices: ATTACH_MODES, commands: KERNEL_USERS },
  "--attach-position": { key: "attachPosition", value: true, env: "RECONCILE_ATTACH_POSITION", arg: "POS", help: "where a fresh tcx attachment goes among foreign programs", default: "first", choices: ATTACH_POSITIONS },
  "--expedite-attach": { key: "expediteAttach", value: false, env: "RECONCILE_EXPEDITE_ATTACH", help: "set /sys/kernel/rcu_expedited (host-wide) while 16+ tcx links are made or removed: ms, not 8 ms a link", commands: ["run", "teardown"] },
  "--enforcement": { key: "enforcement", value: true, env: "RECONCILE_ENFORCEMENT", arg: "MODE", help: "policy enforcement mode", default: "default", choices: ENFORCEMENTS, commands: SOURCE_USERS },
  "--enforcement-mode": {
    key: "enforcementMode",
    value: true,
    env: "RECONCILE_ENFORCEMENT_MODE",
    arg: "MODE",
    help: "audit: policy drops nothing and reports what it would drop (AUDIT events), for every endpoint",
    default: "enforce",
    choices: ENFORCEMENT_MODES,
    commands: SOURCE_USERS,
  },
  "--monitor-verdicts": {
    key: "monitorVerdicts",
    value: true,
    env: "RECONCILE_MONITOR_VERDICTS",
    arg: "WHICH",
    help: "policy verdict events endpoints report besides drops: allowed new flows, denied packets, both",
    default: "none",
    choices: MONITOR_VERDICTS,
    commands: EVENT_USERS,
  },
  "--event-rate": { key: "eventRate", value: true, env: "RECONCILE_EVENT_RATE", arg: "N", help: "events per second per CPU each endpoint may report (0..1000000, 0 = none)", default: "1000", commands: EVENT_USERS },
  "--socket": { key: "socket", value: true, env: "RECONCILE_SOCKET", arg: "PATH", help: "the daemon's status socket", default: "/run/reconcile/reconcile.sock", commands: ["run", "monitor", "status", "suspend", "resume"] },
  "--listen": { key: "listen", value: true, env: "RECONCILE_LISTEN", arg: "ADDR:PORT", help: "TCP address for /metrics, /healthz, /readyz and the git webhook", default: "off" },
  "--log-format": { key: "logFormat", value: true, env: "RECONCILE_LOG_FORMAT", arg: "FORMAT", help: "daemon log line format", default: "logfmt", choices: LOG_FORMATS },
  "--log-level": { key: "logLevel", value: true, env: "RECONCILE_LOG_LEVEL", arg: "LEVEL", help: "lowest level logged", default: "info", choices: LOG_LEVELS },
  "--git-interval": { key: "gitInterval", value: true, env: "RECONCILE_GIT_INTERVAL", arg: "DURATION", help: "how often a git source fetches", default: "30s" },
  "--verify-signatures": { key: "verifySignatures", value: true, env: "RECONCILE_GIT_ALLOWED_SIGNERS_FILE", arg: "FILE", help: "ssh allowed-signers file: git sources read and apply only commits signed by its keys", default: "off", commands: MANIFEST_USERS },
  "--allow-empty": { key: "allowEmpty", value: false, env: "RECONCILE_ALLOW_EMPTY", help: "apply a snapshot without manifests even while endpoints are in force" },
  "--log-drops": { key: "logDrops", value: false, env: "RECONCILE_LOG_DROPS", help: "log each drop the datapath reports as a structured line (at most 10 a second, the rest counted)" },
  "--dry-run": { key: "dryRun", value: false, help: "print the plan and exit (2 when it has changes)" },
  "--once": { key: "once", value: false, help: "apply once and exit" },
  "--no-progress": { key: "noProgress", value: false, env: "RECONCILE_NO_PROGRESS", help: "no progress lines on stderr (--once, teardown) nor in the daemon's log (its first apply)", commands: ["run", "teardown"] },
  "--from": { key: "from", value: true, arg: "EP|IP|host", help: "source of the flow: endpoint name, IP address or host (monitor: also a CIDR)", commands: ["explain", "monitor"] },
  "--to": { key: "to", value: true, arg: "EP|IP|host", help: "destination of the flow", commands: ["explain", "monitor"] },
  "--endpoint": { key: "endpoint", value: true, arg: "NAME", help: "only the events of this endpoint", commands: ["monitor"] },
  "--verdict": { key: "verdict", value: true, arg: "LIST", help: "only these events, comma-separated: drop, allow, deny (verdict events), audit", commands: ["monitor"] },
  "--count": { key: "count", value: true, arg: "N", help: "stop after N events shown", default: "no limit", commands: ["monitor"] },
  "--sort": { key: "sort", value: true, arg: "ORDER", help: "inspect policy: hits lists the entries that matched the most packets first", choices: INSPECT_SORTS, commands: ["inspect"] },
  "--reason": { key: "reason", value: true, arg: "TEXT", help: "why, shown in status and the log", commands: ["suspend"] },
  "--base": { key: "base", value: true, arg: "REF|DIR", help: "the revision in force: a directory, or a git ref of --source", commands: ["diff"] },
  "--all-nodes": { key: "allNodes", value: false, help: "preview every node the manifests name (Node manifests, endpoints' spec.node)", commands: ["diff"] },
  "--out": { key: "out", value: true, arg: "PLAN-FILE", help: "with --dry-run: save the plan, its revision and the observed state's digest" },
  "--plan": { key: "plan", value: true, arg: "PLAN-FILE", help: "with --once: apply exactly that saved plan; refused if the revision or the datapath changed" },
  "--port": { key: "port", value: true, arg: "PORT[/PROTO]", help: "destination port; PROTO is TCP, UDP, SCTP, ICMP, ICMPV6 or ANY (a bare port means TCP)", commands: ["explain", "monitor"] },
};

export interface CommandDef {
  /** One line: what it does (the command list of `reconcile --help`). */
  summary: string;
  /** The synopsis after `reconcile` (and the command's name). */
  usage: string;
  /** Positional arguments as commander declares them, e.g. "[what] [endpoint]". */
  args?: string;
  /** More than the summary, for its own --help. */
  details?: string;
  /** Command lines (after `reconcile `) that show it in use. */
  examples: string[];
}

/** A command's entry: its summary, synopsis and examples, and what some commands have besides. */
function command(summary: string, usage: string, examples: string[], more: Pick<CommandDef, "args" | "details"> = {}): CommandDef {
  return { summary, usage, ...more, examples };
}

export const COMMANDS: Record<CommandName, CommandDef> = {
  run: command(
    "reconcile the datapath with the manifests: a daemon, or once (--once), or a preview (--dry-run)",
    "[--source DIR|GIT-URL] [--dry-run | --once] [options]",
    ["--source examples/seed --dry-run", "--source examples/seed --once --output json", "--source https://git.example.org/net.git --ref main --listen 127.0.0.1:9963", "validate --source examples/seed"],
    { details: "Without --once or --dry-run, reconcile runs as a daemon." },
  ),
  validate: command("validate and compile the manifests (no kernel, no privileges)", "--source DIR [options]", ["validate --source examples/seed", "validate --source . --output json"]),
  explain: command(
    "say whether the manifests allow one flow, and which rule decides",
    "--source DIR --from EP|IP|host --to EP|IP|host --port PORT[/PROTO] [options]",
    ["explain --source examples/seed --from app2 --to app1 --port 80/TCP", "explain --source examples/seed --from 10.11.90.17 --to app1 --port 81 --output json"],
  ),
  diff: command(
    "plan and policy impact between two revisions, from the manifests alone (no kernel, no root)",
    "[--source GIT-URL] --base REF|DIR --ref REF|DIR [--node NAME | --all-nodes] [--output text|json|markdown]",
    ["diff --base examples/seed --ref ../seed-next", "diff --source . --base origin/main --ref HEAD --all-nodes --output markdown"],
    { details: "Exit code 0: no change, 2: changes, 1: error. A side that is a directory is read as one; anything else is a git ref of --source." },
  ),
  inspect: command(
    "show what the kernel holds now (with --source: names and provenance)",
    "endpoints|ipcache|devices|links|drops | policy ENDPOINT [--sort hits] [options]",
    ["inspect endpoints", "inspect policy app1 --source examples/seed --sort hits", "inspect drops --source examples/seed", "inspect links --output json"],
    { args: "[what] [endpoint]" },
  ),
  monitor: command(
    "print the datapath's drops, verdicts and audits as they happen, with the deciding rule",
    "[--socket PATH | --bpffs-root PATH [--source DIR]] [--endpoint NAME] [--verdict LIST] [--from X] [--to X] [--port PORT[/PROTO]] [--output text|json] [--count N]",
    ["monitor", "monitor --verdict drop --endpoint app1", "monitor --output json --port 80/TCP --from app3", "monitor --bpffs-root /sys/fs/bpf/reconcile --source examples/seed --count 10"],
    {
      details:
        "Reads the events through the running daemon (its --socket) when it answers, with names from the revision in force;\n" +
        "without a daemon (or with --bpffs-root and no --socket) it reads the pinned ring buffer itself, with names from --source\n" +
        "(numbers only without it). Only one reader should own the ring: while the daemon runs, go through it.\n" +
        "Ctrl-C stops it and prints a summary (shown, read, suppressed and lost events) on stderr. docs/monitor.md has the fields.",
    },
  ),
  status: command("ask the running daemon what it applied and how its last run went", "[options]", ["status", "status --output json --socket /run/reconcile/reconcile.sock"]),
  suspend: command("pause the daemon's applying (it still fetches, observes and reports drift)", "[--reason TEXT] [options]", ["suspend --reason 'NIC firmware upgrade'", "suspend --socket /run/reconcile/reconcile.sock"], {
    details: "The suspension is recorded under the pin root and survives a restart of the daemon.",
  }),
  resume: command("end a suspension: the daemon applies what is pending at once", "[options]", ["resume", "resume --output json"]),
  teardown: command("remove everything reconcile owns from this host", "[options]", ["teardown", "teardown --bpffs-root /sys/fs/bpf/reconcile-test"]),
  version: command("print the version, the kernel's features and the programs this binary carries", "[options]", ["version", "version --output json"]),
  completion: command(
    "print a shell completion script",
    "bash|zsh|fish",
    ["completion bash > /etc/bash_completion.d/reconcile", 'completion zsh > "${fpath[1]}/_reconcile"', "completion fish > ~/.config/fish/completions/reconcile.fish"],
    { args: "[shell]", details: "Install it with, e.g.: reconcile completion bash > /etc/bash_completion.d/reconcile" },
  ),
};

/** The flags whose --help entry belongs to `command`. */
export function flagsOf(command: CommandName): Array<[string, FlagDef]> {
  return Object.entries(FLAGS).filter(([, def]) => (def.commands ?? ["run"]).includes(command));
}

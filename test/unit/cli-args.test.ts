import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { parseArgs, parseDuration, parsePort, suggestion, UsageError } from "../../reconciler/cli/args.js";
import { COMMAND_NAMES, COMMANDS, FLAGS, flagsOf } from "../../reconciler/cli/flags.js";
import { withReference } from "../../tools/cli-reference.js";

const defaults = { node: "host-a" };

test("dry run with flags, defaults and environment fallback", () => {
  const c = parseArgs(["--dry-run", "--source", "examples/seed", "--output=json"], { RECONCILE_NODE: "n7", RECONCILE_RESYNC_INTERVAL: "2m" }, defaults);
  assert.equal(c.name, "run");
  if (c.name !== "run") return;
  assert.equal(c.mode, "dry-run");
  assert.equal(c.opts.source, "examples/seed");
  assert.equal(c.opts.output, "json");
  assert.equal(c.opts.node, "n7");
  assert.equal(c.opts.resyncIntervalMs, 120_000);
  assert.equal(c.opts.bpffsRoot, "/sys/fs/bpf/reconcile");
  assert.equal(c.opts.attachMode, "auto");
});

test("flags win over the environment; no flags means daemon mode", () => {
  const c = parseArgs(["--source", "/a"], { RECONCILE_SOURCE: "/b" }, defaults);
  assert.equal(c.name === "run" && c.mode, "daemon");
  assert.equal(c.name === "run" && c.opts.source, "/a");
  assert.equal(c.name === "run" && c.opts.node, "host-a");
});

test("explain parses endpoints and PORT/PROTOCOL", () => {
  const c = parseArgs(["explain", "--source", "s", "--from", "app2", "--to", "app1", "--port", "80/tcp"], {}, defaults);
  assert.deepEqual(c.name === "explain" && [c.from, c.to, c.port, c.protocol, c.protocolName], ["app2", "app1", 80, 6, "TCP"]);
});

test("usage errors say what was expected", () => {
  assert.throws(() => parseArgs(["--bogus"], {}, defaults), UsageError);
  assert.throws(() => parseArgs(["--dry-run"], {}, defaults), /needs --source/);
  assert.throws(() => parseArgs(["--source", "s", "--output", "xml"], {}, defaults), /--output: expected one of text, json, got xml/);
  assert.throws(() => parseArgs(["--source", "s", "--dry-run", "--once"], {}, defaults), /exclude each other/);
  assert.throws(() => parseArgs(["frobnicate"], {}, defaults), /unknown command "frobnicate"/);
  assert.throws(() => parseArgs(["inspect", "policy"], {}, defaults), /needs an endpoint name/);
  assert.throws(() => parseArgs(["--source"], {}, defaults), /needs a value/);
  assert.throws(() => parsePort("http"), /expected PORT\/PROTOCOL/);
  assert.throws(() => parsePort("70000/TCP"), /expected PORT\/PROTOCOL/);
  assert.throws(() => parseDuration("10 minutes", "--resync-interval"), /expected a duration/);
});

test("help is available everywhere", () => {
  assert.equal(parseArgs(["--help"], {}, defaults).name, "help");
  assert.equal(parseArgs(["explain", "--help"], {}, defaults).name, "help");
  assert.equal(parseArgs(["help"], {}, defaults).name, "help");
});

test("--verify-signatures takes the allowed-signers file, also from RECONCILE_GIT_ALLOWED_SIGNERS_FILE", () => {
  const flag = parseArgs(["--source", "https://example.org/r.git", "--verify-signatures", "/etc/reconcile/allowed"], {}, defaults);
  assert.equal(flag.name === "run" && flag.opts.verifySignatures, "/etc/reconcile/allowed");
  const env = parseArgs(["--source", "s"], { RECONCILE_GIT_ALLOWED_SIGNERS_FILE: "/x" }, defaults);
  assert.equal(env.name === "run" && env.opts.verifySignatures, "/x");
  const none = parseArgs(["--source", "s"], {}, defaults);
  assert.equal(none.name, "run");
  assert.equal(none.name === "run" ? none.opts.verifySignatures : "not a run", undefined);
});

test("--allow-empty: off by default, on as a flag or from RECONCILE_ALLOW_EMPTY; a bad value is a usage error", () => {
  const opts = (argv: string[], env: Record<string, string> = {}) => {
    const c = parseArgs(["--once", "--source", "s", ...argv], env, defaults);
    assert.equal(c.name, "run");
    return (c as Extract<typeof c, { name: "run" }>).opts;
  };
  assert.equal(opts([]).allowEmpty, false);
  assert.equal(opts(["--allow-empty"]).allowEmpty, true);
  for (const v of ["true", "1", "yes", "TRUE"]) assert.equal(opts([], { RECONCILE_ALLOW_EMPTY: v }).allowEmpty, true, v);
  for (const v of ["false", "0", "no", ""]) assert.equal(opts([], { RECONCILE_ALLOW_EMPTY: v }).allowEmpty, false, v);
  assert.equal(opts(["--allow-empty"], { RECONCILE_ALLOW_EMPTY: "false" }).allowEmpty, true, "the flag wins");
  assert.throws(() => opts([], { RECONCILE_ALLOW_EMPTY: "maybe" }), /--allow-empty \(RECONCILE_ALLOW_EMPTY\): expected true or false .*got maybe/);
});

const helpOf = (argv: string[]) => {
  const c = parseArgs(argv, {}, defaults);
  assert.equal(c.name, "help", argv.join(" "));
  return (c as Extract<typeof c, { name: "help" }>).text;
};

test("every command has its own --help: synopsis, its flags with defaults and variables, examples; help CMD prints the same", () => {
  for (const name of COMMAND_NAMES) {
    const argv = name === "run" ? [] : [name];
    const text = helpOf([...argv, "--help"]);
    assert.match(text, new RegExp(`^Usage: reconcile${name === "run" ? "" : ` ${name}`} `), name);
    assert.ok(text.includes(COMMANDS[name].summary), `${name}: summary`);
    for (const example of COMMANDS[name].examples) assert.ok(text.includes(`  reconcile ${example}\n`), `${name}: example ${example}`);
    for (const [flag, def] of flagsOf(name)) {
      const line = text.split("\n").findIndex((l) => l.trimStart().startsWith(`${flag}${def.value ? " <" : ""}`));
      assert.ok(line >= 0, `${name}: lists ${flag}`);
      // The entry (it may wrap) names the default and the variable.
      const entry = text.split("\n").slice(line, line + 3).join(" ").replace(/\s+/g, " ");
      if (def.default) assert.ok(entry.includes(`default: ${def.default}`), `${name} ${flag}: default in ${entry}`);
      if (def.env) assert.ok(entry.includes(`env ${def.env}`), `${name} ${flag}: variable in ${entry}`);
    }
    assert.equal(helpOf([...argv, "-h"]), text, `${name}: -h`);
    if (name !== "run") assert.equal(helpOf(["help", name]), text, `help ${name}`);
  }
  assert.equal(helpOf(["help"]), helpOf(["--help"]));
  // A command's help lists its own flags, not every daemon setting.
  const explain = helpOf(["explain", "--help"]);
  assert.match(explain, /--from <EP\|IP\|host>/);
  assert.doesNotMatch(explain, /--resync-interval/);
  assert.doesNotMatch(helpOf(["--help"]), /--from/);
  assert.match(helpOf(["--help"]), /Exit codes: 0 success and nothing to change, 2 --dry-run found changes, 1 error/);
  // The one-shot commands read git sources as the daemon does, signature check included.
  for (const argv of [["validate"], ["explain"], ["diff"], []]) {
    const text = helpOf([...argv, "--help"]);
    assert.match(text, /--verify-signatures <FILE> +ssh allowed-signers file/, `reconcile ${argv.join(" ")} --help`);
    assert.match(text, /--ref <REF> /, `reconcile ${argv.join(" ")} --help`);
  }
});

test("a mistyped flag, command or value gets the nearest one suggested", () => {
  assert.throws(() => parseArgs(["explain", "--sourc", "s"], {}, defaults), /^UsageError: unknown flag --sourc; did you mean --source\? \(see reconcile explain --help\)$/);
  assert.throws(() => parseArgs(["--dry-rn"], {}, defaults), /unknown flag --dry-rn; did you mean --dry-run\?/);
  assert.throws(() => parseArgs(["--attach-mod=tc"], {}, defaults), /unknown flag --attach-mod; did you mean --attach-mode\?/);
  assert.throws(() => parseArgs(["--frobnicate"], {}, defaults), /^UsageError: unknown flag --frobnicate \(see reconcile --help\)$/);
  assert.throws(() => parseArgs(["expalin"], {}, defaults), /unknown command "expalin"; did you mean explain\?/);
  assert.throws(() => parseArgs(["help", "inspetc"], {}, defaults), /unknown command "inspetc"; did you mean inspect\?/);
  assert.throws(() => parseArgs(["--source", "s", "--output", "jsno"], {}, defaults), /--output: expected one of text, json, got jsno; did you mean json\?/);
  assert.throws(() => parseArgs(["inspect", "ipcahce"], {}, defaults), /got ipcahce\); did you mean ipcache\?/);
  assert.throws(() => parseArgs(["--source", "s", "--enforcement", "sometimes"], {}, defaults), /got sometimes$/);
  assert.equal(suggestion("zzz", ["validate", "explain"]), "");
});

test("every flag of the table is accepted by every command and anywhere on the line, as before", () => {
  const c = parseArgs(["--source", "s", "explain", "--from", "app2", "--to=app1", "--port", "81/udp", "--node", "n1"], {}, defaults);
  assert.deepEqual(c.name === "explain" && [c.opts.source, c.from, c.to, c.port, c.protocolName, c.opts.node], ["s", "app2", "app1", 81, "UDP", "n1"]);
  const s = parseArgs(["status", "--socket", "/run/x.sock", "--bpffs-root", "/sys/fs/bpf/t"], {}, defaults);
  assert.deepEqual(s.name === "status" && [s.opts.socket, s.opts.bpffsRoot], ["/run/x.sock", "/sys/fs/bpf/t"]);
  const i = parseArgs(["inspect", "policy", "app1", "--output", "json"], {}, defaults);
  assert.deepEqual(i.name === "inspect" && [i.what, i.endpoint, i.opts.output], ["policy", "app1", "json"]);
  const all = parseArgs(
    ["--source", "s", "--once", "--ref", "main", "--path", "p", "--state-dir", "/st", "--resync-interval", "5s", "--attach-mode", "tc", "--attach-position", "last",
      "--enforcement", "always", "--listen", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug", "--git-interval", "1m", "--verify-signatures", "/a", "--allow-empty"],
    {},
    defaults,
  );
  assert.equal(all.name === "run" && all.mode, "once");
  if (all.name !== "run") return;
  const o = all.opts;
  assert.deepEqual(
    [o.ref, o.path, o.stateDir, o.resyncIntervalMs, o.attachMode, o.attachPosition, o.enforcement, o.listen, o.logFormat, o.logLevel, o.gitIntervalMs, o.verifySignatures, o.allowEmpty],
    ["main", "p", "/st", 5000, "tc", "last", "always", "127.0.0.1:0", "json", "debug", 60_000, "/a", true],
  );
  assert.throws(() => parseArgs(["--source", "--dry-run"], {}, defaults), /option --source needs a value/);
});

test("every variable of the table sets its flag", () => {
  for (const [flag, def] of Object.entries(FLAGS)) {
    if (!def.env) continue;
    const value = def.choices?.[1] ?? (def.value ? (/interval/.test(flag) ? "7s" : flag === "--event-rate" ? "250" : "/v") : "true");
    const c = parseArgs(["--once", "--source", "s"], { [def.env]: value }, defaults);
    assert.equal(c.name, "run");
    const opts = (c as Extract<typeof c, { name: "run" }>).opts as unknown as Record<string, unknown>;
    const got = opts[def.key] ?? opts[`${def.key}Ms`];
    const want = def.key === "source" ? "s" : /interval/.test(flag) ? 7000 : flag === "--event-rate" ? 250 : def.value ? value : true;
    assert.equal(got, want, `${def.env} → ${flag}`);
  }
});

test("README's command reference is the --help of every command, and its flag table names every flag with its variable", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  assert.equal(readme, withReference(readme), "README is stale: run node --import tsx tools/cli-reference.ts");
  for (const [flag, def] of Object.entries(FLAGS)) {
    const row = readme.split("\n").find((l) => l.startsWith("| ") && l.includes(`\`${flag}\``));
    assert.ok(row, `README's flag table has ${flag}`);
    if (def.env) assert.ok(row.includes(`\`${def.env}\``), `${flag}: ${def.env} in ${row}`);
  }
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { parseArgs, parseDuration, parsePort, UsageError } from "../../reconciler/cli/args.js";

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

// Audit mode and event settings on the compile side (issue 13, docs/audit.md): the
// reconcile.io/enforcement annotation and label, which entries and directions are audited, the
// endpoint entries' verdict flags and event rate, the plan rows, explain, and the flags.
import { test } from "node:test";
import assert from "node:assert/strict";
import { formatProblem, loadSnapshot } from "../../reconciler/manifest/load.js";
import type { Model } from "../../reconciler/manifest/model.js";
import { compile } from "../../reconciler/policy/compile.js";
import { compileIncremental } from "../../reconciler/policy/incremental.js";
import { explain, policyVerdict } from "../../reconciler/policy/explain.js";
import type { CompileOptions, EndpointPolicy } from "../../reconciler/policy/types.js";
import { compileModel, type PipelineOptions } from "../../reconciler/plan/snapshot-to-desired.js";
import { diff } from "../../reconciler/plan/diff.js";
import { describe, planDocument, renderPlanText } from "../../reconciler/plan/render.js";
import { emptyState, type EndpointEntry } from "../../reconciler/datapath/state.js";
import { decodeEndpointInfo, encodeEndpointInfo, ENDPOINT_INFO, EP_AUDIT_EGRESS, EP_AUDIT_INGRESS, EP_VERDICT_ALLOW, EP_VERDICT_DENY } from "../../reconciler/datapath/layouts.js";
import { parseArgs } from "../../reconciler/cli/args.js";
import { completionScript } from "../../reconciler/cli/completion.js";

const TCP = 6;
const OPTS: CompileOptions = { node: "n1", enforcement: "default" };
const PIPE: PipelineOptions = { node: "n1", enforcement: "default", attachMode: "tcx" };

function load(files: Record<string, string>): { model?: Model; problems: string[] } {
  const r = loadSnapshot({ revision: "rev1", files: Object.entries(files).map(([path, content]) => ({ path, content })) });
  return { ...(r.model ? { model: r.model } : {}), problems: r.problems.filter((p) => p.severity === "error").map(formatProblem) };
}

function loadOk(files: Record<string, string>): Model {
  const r = load(files);
  assert.deepEqual(r.problems, []);
  return r.model!;
}

const endpointYaml = (name: string, ip: string, annotations = ""): string =>
  `apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: ${name}\n${annotations}  labels:\n    id: ${name}\nspec:\n  ipv4: ${ip}\n  interface:\n    name: lxc-${name}\n`;
const ENDPOINTS = [endpointYaml("app1", "10.0.0.1"), endpointYaml("app2", "10.0.0.2"), endpointYaml("app3", "10.0.0.3")].join("---\n");
const AUDIT_ANNOTATION = "  annotations:\n    reconcile.io/enforcement: audit\n";

/** A Rule selecting app1: `sections` is its spec after the endpointSelector. */
const ruleYaml = (name: string, sections: string, annotations = ""): string =>
  `apiVersion: reconcile/v1\nkind: Rule\nmetadata:\n  name: ${name}\n${annotations}spec:\n  endpointSelector:\n    matchLabels:\n      id: app1\n${sections}`;
const ALLOW_APP2_80 = "  ingress:\n    - fromEndpoints: [{matchLabels: {id: app2}}]\n      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n";
const DENY_APP3_ALL = "  ingressDeny:\n    - fromEndpoints: [{matchLabels: {id: app3}}]\n";
const DENY_APP3_443 = "  ingressDeny:\n    - fromEndpoints: [{matchLabels: {id: app3}}]\n      toPorts: [{ports: [{port: \"443\", protocol: TCP}]}]\n";
const DENY_APP2_22 = "  ingressDeny:\n    - fromEndpoints: [{matchLabels: {id: app2}}]\n      toPorts: [{ports: [{port: \"22\", protocol: TCP}]}]\n";

function policyOf(model: Model, name: string, opts: CompileOptions = OPTS): EndpointPolicy {
  return compile(model, opts).endpoints.find((p) => p.endpoint === name)!;
}

/** "ingress deny 36895 TCP/80 audit" per entry, for comparing. */
function rows(p: EndpointPolicy): string[] {
  return p.entries.map((e) => `${e.direction} ${e.decision} ${e.identity} ${e.protocol}/${e.port}/${e.portPrefixLen}${e.audit ? " audit" : ""}`);
}

// ---- manifests ----

test("reconcile.io/enforcement: audit on an Endpoint and on a Rule's metadata; enforce is the default written out", () => {
  const m = loadOk({
    "eps.yaml": [endpointYaml("app1", "10.0.0.1", AUDIT_ANNOTATION), endpointYaml("app2", "10.0.0.2", "  annotations:\n    reconcile.io/enforcement: enforce\n")].join("---\n"),
    "r.yaml": [ruleYaml("audited", DENY_APP3_ALL, AUDIT_ANNOTATION), ruleYaml("plain", ALLOW_APP2_80)].join("---\n"),
  });
  assert.deepEqual(m.endpoints.map((e) => [e.name, e.audit === true]), [["app1", true], ["app2", false]]);
  assert.deepEqual(m.rules.map((r) => [r.name, r.audit === true]), [["audited", true], ["plain", false]]);
});

test("a bad enforcement mode is an error at its file:line with the field, expected and got", () => {
  const bad = "  annotations:\n    reconcile.io/enforcement: permissive\n";
  assert.deepEqual(load({ "eps.yaml": endpointYaml("app1", "10.0.0.1", bad) }).problems, [
    'eps.yaml:6: Endpoint/app1: metadata.annotations["reconcile.io/enforcement"]: invalid reconcile.io/enforcement (expected enforce or audit, got "permissive")',
  ]);
  assert.deepEqual(load({ "eps.yaml": ENDPOINTS, "r.yaml": ruleYaml("r", DENY_APP3_ALL, bad) }).problems, [
    'r.yaml:6: Rule/r: metadata.annotations["reconcile.io/enforcement"]: invalid reconcile.io/enforcement (expected enforce or audit, got "permissive")',
  ]);
  const node = "apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: n1\n  annotations:\n    reconcile.io/enforcement: audit\nspec:\n  address: 192.0.2.1\n";
  assert.deepEqual(load({ "n.yaml": node }).problems, [
    'n.yaml:6: Node/n1: metadata.annotations["reconcile.io/enforcement"]: reconcile.io/enforcement applies to Endpoint, Rule, CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy (expected no such annotation on a Node, got "audit")',
  ]);
});

test("a bare JSON rule array says audit with a Cilium label; its bad value is an error at the label's line", () => {
  const rule = (value: string): string =>
    JSON.stringify([{ endpointSelector: { matchLabels: { "any:id": "app1" } }, ingressDeny: [{ fromEndpoints: [{ matchLabels: { "any:id": "app3" } }] }], labels: [{ key: "name", value: "j", source: "" }, { key: "reconcile.io/enforcement", value, source: "" }] }], null, 2);
  const m = loadOk({ "eps.yaml": ENDPOINTS, "r.json": rule("audit") });
  assert.equal(m.rules[0]!.audit, true);
  const problems = load({ "eps.yaml": ENDPOINTS, "r.json": rule("loud") }).problems;
  assert.equal(problems.length, 1);
  assert.match(problems[0]!, /^r\.json:\d+: Rule\/j: labels\[1\]\.value: invalid reconcile\.io\/enforcement \(expected enforce or audit, got "loud"\)$/);
});

test("CiliumNetworkPolicy: the annotation covers every spec; a spec's own label overrides it", () => {
  const cnp =
    "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: c\n  annotations:\n    reconcile.io/enforcement: audit\nspecs:\n" +
    "  - endpointSelector: {matchLabels: {id: app1}}\n    ingressDeny: [{fromEndpoints: [{matchLabels: {id: app3}}]}]\n" +
    "  - endpointSelector: {matchLabels: {id: app1}}\n    ingressDeny: [{fromEndpoints: [{matchLabels: {id: app2}}]}]\n    labels: [{key: reconcile.io/enforcement, value: enforce}]\n";
  const m = loadOk({ "eps.yaml": ENDPOINTS, "c.yaml": cnp });
  assert.deepEqual(m.rules.map((r) => [r.name, r.audit === true]), [["c#0", true], ["c#1", false]]);
});

// ---- compile ----

test("an audit rule's denies are audited, an enforce rule's are not, allows never; a key both produce is enforced", () => {
  const m = loadOk({
    "eps.yaml": ENDPOINTS,
    "a.yaml": [ruleYaml("allow", ALLOW_APP2_80), ruleYaml("audit-deny", DENY_APP3_443 + "    - fromEndpoints: [{matchLabels: {id: app2}}]\n      toPorts: [{ports: [{port: \"22\", protocol: TCP}]}]\n", AUDIT_ANNOTATION), ruleYaml("enforce-deny", DENY_APP2_22)].join("---\n"),
  });
  const p = policyOf(m, "app1");
  const ids = Object.fromEntries(m.endpoints.map((e) => [e.name, compile(m, OPTS).ipcache.find((i) => i.prefix === `${e.ipv4}/32`)!.identity]));
  const app3 = p.entries.find((e) => e.identity === ids.app3 && e.port === 443)!;
  const app2ssh = p.entries.find((e) => e.identity === ids.app2 && e.port === 22)!;
  const app2http = p.entries.find((e) => e.identity === ids.app2 && e.port === 80)!;
  assert.deepEqual([app3.decision, app3.audit], ["deny", true], "only the audit rule denies app3 on 443");
  assert.deepEqual([app2ssh.decision, app2ssh.audit, app2ssh.rules.map((r) => r.name)], ["deny", false, ["audit-deny", "enforce-deny"]], "an enforce rule denies it too");
  assert.deepEqual([app2http.decision, app2http.audit], ["allow", false]);
  // Default deny is caused by the allow rule and the deny rules: not every one of them audits.
  assert.deepEqual(p.audit, { ingress: false, egress: false });
  assert.equal(p.auditMode, false);
});

test("an audited deny that an enforced deny covers (same peer or every peer, wider port block) stays enforced", () => {
  const everyone443 = "  ingressDeny:\n    - toPorts: [{ports: [{port: \"443\", protocol: TCP}]}]\n";
  const m = loadOk({ "eps.yaml": ENDPOINTS, "r.yaml": [ruleYaml("audit-443", DENY_APP3_443, AUDIT_ANNOTATION), ruleYaml("enforce-all", DENY_APP3_ALL), ruleYaml("allow", ALLOW_APP2_80)].join("---\n") });
  assert.ok(rows(policyOf(m, "app1")).every((r) => !r.endsWith("audit")), "app3's TCP/443 is covered by app3's enforced L3 deny");
  const m2 = loadOk({ "eps.yaml": ENDPOINTS, "r.yaml": [ruleYaml("audit-443", DENY_APP3_443, AUDIT_ANNOTATION), ruleYaml("enforce-443-all", everyone443)].join("---\n") });
  assert.ok(rows(policyOf(m2, "app1")).every((r) => !r.endsWith("audit")), "covered by the every-peer deny of TCP/443");
  // Not covered: a narrower enforced deny leaves the wider audited one audited.
  const m3 = loadOk({ "eps.yaml": ENDPOINTS, "r.yaml": [ruleYaml("audit-all", DENY_APP3_ALL, AUDIT_ANNOTATION), ruleYaml("enforce-443", DENY_APP3_443)].join("---\n") });
  assert.deepEqual(rows(policyOf(m3, "app1")).map((r) => r.endsWith("audit")), [true, false]);
});

test("EP_AUDIT_<dir> iff every rule that puts the direction into default deny audits, or the endpoint is in audit mode", () => {
  const onlyAudit = loadOk({ "eps.yaml": ENDPOINTS, "r.yaml": ruleYaml("a", ALLOW_APP2_80, AUDIT_ANNOTATION) });
  assert.deepEqual(policyOf(onlyAudit, "app1").audit, { ingress: true, egress: false });
  const mixed = loadOk({ "eps.yaml": ENDPOINTS, "r.yaml": [ruleYaml("a", ALLOW_APP2_80, AUDIT_ANNOTATION), ruleYaml("b", DENY_APP3_ALL)].join("---\n") });
  assert.deepEqual(policyOf(mixed, "app1").audit, { ingress: false, egress: false });
  // --enforcement always without rules: nothing audits that default deny...
  const none = loadOk({ "eps.yaml": ENDPOINTS });
  assert.deepEqual(policyOf(none, "app2", { ...OPTS, enforcement: "always" }).audit, { ingress: false, egress: false });
  // ...unless everything is in audit mode.
  assert.deepEqual(policyOf(none, "app2", { ...OPTS, enforcement: "always", audit: true }).audit, { ingress: true, egress: true });
});

test("an Endpoint in audit mode audits all its denies and both directions; an endpoint of the same identity keeps enforcing", () => {
  const twins = endpointYaml("app1", "10.0.0.1", AUDIT_ANNOTATION) + "---\n" + endpointYaml("app1b", "10.0.0.11").replace("id: app1b", "id: app1") + "---\n" + endpointYaml("app3", "10.0.0.3");
  const m = loadOk({ "eps.yaml": twins, "r.yaml": ruleYaml("deny", DENY_APP3_ALL) + "  ingress: [{}]\n" });
  const audited = policyOf(m, "app1");
  const enforcing = policyOf(m, "app1b");
  assert.equal(audited.identity, enforcing.identity);
  assert.equal(audited.auditMode, true);
  assert.deepEqual(audited.audit, { ingress: true, egress: false }, "egress is not enforced: nothing to audit");
  assert.ok(rows(audited).filter((r) => r.includes(" deny ")).every((r) => r.endsWith("audit")));
  assert.ok(rows(enforcing).every((r) => !r.endsWith("audit")));
  assert.deepEqual(enforcing.audit, { ingress: false, egress: false });
  // The global mode audits every endpoint's denies.
  assert.ok(rows(policyOf(m, "app1b", { ...OPTS, audit: true })).filter((r) => r.includes(" deny ")).every((r) => r.endsWith("audit")));
});

test("incremental compile: turning a rule to audit recomputes its endpoints and equals a full compile", () => {
  const files = (annotation: string) => ({ "eps.yaml": ENDPOINTS, "r.yaml": [ruleYaml("d", DENY_APP3_ALL, annotation), ruleYaml("a", ALLOW_APP2_80)].join("---\n") });
  const before = loadOk(files(""));
  const after = loadOk(files(AUDIT_ANNOTATION));
  const first = compileIncremental(before, OPTS, undefined);
  const next = compileIncremental(after, OPTS, first.memo);
  assert.equal(next.report.full, false);
  const full = compile(after, OPTS);
  for (const p of full.endpoints) {
    const inc = next.policy.endpoints.find((q) => q.endpoint === p.endpoint)!;
    assert.deepEqual(rows(inc), rows(p), p.endpoint);
    assert.deepEqual(inc.audit, p.audit, p.endpoint);
  }
  assert.ok(rows(full.endpoints.find((p) => p.endpoint === "app1")!).some((r) => r.endsWith("audit")));
});

// ---- the desired endpoint entries ----

test("endpoint entries carry the audit flags, --monitor-verdicts and --event-rate; the kernel codec round-trips them", () => {
  const m = loadOk({ "eps.yaml": ENDPOINTS, "r.yaml": ruleYaml("a", ALLOW_APP2_80, AUDIT_ANNOTATION) });
  const entry = (opts: Partial<PipelineOptions>, address = "10.0.0.1"): EndpointEntry => compileModel(m, [], { ...PIPE, ...opts }).desired.endpoints.get(address)!;
  const base = entry({});
  assert.deepEqual([base.auditIngress, base.auditEgress, base.verdictAllow, base.verdictDeny, base.eventRate], [true, false, false, false, 1000]);
  for (const [verdicts, allow, deny] of [["none", false, false], ["allow", true, false], ["deny", false, true], ["all", true, true]] as const) {
    const e = entry({ monitorVerdicts: verdicts, eventRate: 50 }, "10.0.0.2");
    assert.deepEqual([e.verdictAllow, e.verdictDeny, e.eventRate], [allow, deny, 50], verdicts);
  }
  assert.deepEqual([entry({ enforcementMode: "audit" }, "10.0.0.3").auditIngress, entry({ enforcementMode: "audit" }, "10.0.0.3").auditEgress], [false, false], "app3 enforces nothing: nothing to audit");
  const buf = Buffer.alloc(ENDPOINT_INFO.size);
  const e = entry({ monitorVerdicts: "all", eventRate: 7 });
  encodeEndpointInfo({ ...e, ifindex: 0, epId: e.endpointId }, buf, 0);
  assert.equal(buf.readUInt32LE(ENDPOINT_INFO.offsets.flags) & (EP_AUDIT_INGRESS | EP_AUDIT_EGRESS | EP_VERDICT_ALLOW | EP_VERDICT_DENY), EP_AUDIT_INGRESS | EP_VERDICT_ALLOW | EP_VERDICT_DENY);
  const back = decodeEndpointInfo(buf, 0);
  assert.deepEqual([back.auditIngress, back.auditEgress, back.verdictAllow, back.verdictDeny, back.eventRate], [true, false, true, true, 7]);
});

// ---- the plan ----

test("plan rows: an endpoint shows its mode, an audited deny says deny (audit); JSON carries audit: true", () => {
  const m = loadOk({ "eps.yaml": [endpointYaml("app1", "10.0.0.1", AUDIT_ANNOTATION), endpointYaml("app3", "10.0.0.3")].join("---\n"), "r.yaml": ruleYaml("d", DENY_APP3_ALL) + "  ingress: [{}]\n" });
  const plan = diff(compileModel(m, [], PIPE).desired, emptyState());
  const text = renderPlanText(plan, { notes: [] }, { colour: false });
  assert.match(text, /^ {2}\+ endpoint 10\.0\.0\.1 app1 \[enforcement audit ingress\]$/m);
  assert.match(text, /^ {2}\+ endpoint 10\.0\.0\.3$/m);
  assert.match(text, /^ {2}\+ policy app1 ingress deny \(audit\) any protocol from identity \d+ ← d \(r\.yaml:1\)$/m);
  const doc = planDocument(plan, { notes: [] });
  const deny = doc.changes.find((c) => c.resource === "policy" && (c.after as { decision: string }).decision === "deny")!;
  assert.equal((deny.after as { audit: boolean }).audit, true);
  const ep = doc.changes.find((c) => c.resource === "endpoint" && c.id === "10.0.0.1")!;
  assert.deepEqual([(ep.after as EndpointEntry).auditIngress, (ep.after as EndpointEntry).auditEgress], [true, false]);
  const verdicts = diff(compileModel(m, [], { ...PIPE, monitorVerdicts: "deny" }).desired, emptyState());
  assert.ok(verdicts.changes.some((c) => describe(c) === "endpoint 10.0.0.3 app3 [verdicts deny]"));
});

test("turning a rule from enforce to audit is an update of exactly its deny entries (and the default deny it alone causes)", () => {
  const files = (annotation: string) => ({ "eps.yaml": ENDPOINTS, "r.yaml": [ruleYaml("d", DENY_APP3_443, annotation), ruleYaml("e", DENY_APP2_22), ruleYaml("a", ALLOW_APP2_80)].join("---\n") });
  const before = compileModel(loadOk(files("")), [], PIPE).desired;
  const after = compileModel(loadOk(files(AUDIT_ANNOTATION)), [], PIPE).desired;
  const plan = diff(after, before);
  assert.deepEqual(
    plan.changes.map((c) => `${c.op} ${describe(c)}`),
    [`update policy app1 ingress deny (audit) TCP/443 from identity ${after.endpoints.get("10.0.0.3")!.identity} ← d (r.yaml:1) [decision deny → deny (audit)]`],
  );
  assert.deepEqual(plan.summary, { create: 0, update: 1, delete: 0 });
  // A rule that alone puts app1's ingress into default deny also flips the endpoint entry.
  const solo = (annotation: string) => compileModel(loadOk({ "eps.yaml": ENDPOINTS, "r.yaml": ruleYaml("a", ALLOW_APP2_80, annotation) }), [], PIPE).desired;
  const flip = diff(solo(AUDIT_ANNOTATION), solo(""));
  assert.deepEqual(flip.changes.map((c) => `${c.op} ${describe(c)}`), ["update endpoint 10.0.0.1 app1 [enforcement audit ingress] [auditIngress false → true]"]);
});

// ---- explain ----

test("explain: an audited deny and an audited default deny would be allowed through, naming the audit rules", () => {
  const m = loadOk({ "eps.yaml": ENDPOINTS, "r.yaml": [ruleYaml("allow", ALLOW_APP2_80, AUDIT_ANNOTATION), ruleYaml("deny", DENY_APP3_443, AUDIT_ANNOTATION)].join("---\n") });
  const q = (from: string, port: number) => explain(m, OPTS, { from, to: "app1", port, protocol: TCP });
  const denied = q("app3", 443);
  assert.equal(denied.verdict, "deny");
  assert.equal(denied.audit, true);
  assert.equal(denied.reason, "denied by rule deny (r.yaml:15) at app1 ingress; audit: would be allowed through (audit rule deny (r.yaml:15); reported as AUDIT)");
  const dflt = q("app2", 81);
  assert.equal(dflt.audit, true);
  assert.match(dflt.reason, /^default deny: app1 is selected by rules r\.yaml:1, r\.yaml:15 and none allows ingress from identity \d+ \(app2\) on 81\/TCP; audit: would be allowed through \(audit rules allow \(r\.yaml:1\), deny \(r\.yaml:15\); reported as AUDIT\)$/);
  const allowed = q("app2", 80);
  assert.deepEqual([allowed.verdict, allowed.audit], ["allow", undefined]);
  // The compiled entries agree (policyVerdict is the datapath's lookup rule).
  const p = policyOf(m, "app1");
  const app3 = denied.fromIdentity;
  const v = policyVerdict(p, "ingress", app3, TCP, 443);
  assert.deepEqual([v.decision, v.entry?.audit], ["deny", true]);
});

test("explain: an enforced deny keeps the verdict; an Endpoint in audit mode is named as the reason", () => {
  const m = loadOk({ "eps.yaml": ENDPOINTS, "r.yaml": [ruleYaml("audit-deny", DENY_APP3_443, AUDIT_ANNOTATION), ruleYaml("enforce-deny", DENY_APP3_ALL)].join("---\n") });
  const enforced = explain(m, OPTS, { from: "app3", to: "app1", port: 443, protocol: TCP });
  assert.deepEqual([enforced.verdict, enforced.audit], ["deny", undefined]);
  assert.equal(enforced.reason, "denied by rules audit-deny (r.yaml:1), enforce-deny (r.yaml:15) at app1 ingress");
  const v = policyVerdict(policyOf(m, "app1"), "ingress", enforced.fromIdentity, TCP, 443);
  assert.deepEqual([v.decision, v.entry?.audit], ["deny", false]);
  const mode = loadOk({ "eps.yaml": endpointYaml("app1", "10.0.0.1", AUDIT_ANNOTATION) + "---\n" + endpointYaml("app3", "10.0.0.3"), "r.yaml": ruleYaml("enforce-deny", DENY_APP3_ALL) });
  const audited = explain(mode, OPTS, { from: "app3", to: "app1", port: 443, protocol: TCP });
  assert.equal(audited.audit, true);
  assert.match(audited.reason, /; audit: would be allowed through \(app1 is in audit mode; reported as AUDIT\)$/);
});

// ---- flags ----

test("flags: --enforcement-mode, --monitor-verdicts, --event-rate and their variables; bad values are usage errors; completion offers the values", () => {
  const defaults = { node: "h" };
  const run = (argv: string[], env: Record<string, string> = {}) => {
    const c = parseArgs(["--dry-run", "--source", "s", ...argv], env, defaults);
    assert.equal(c.name, "run");
    return c.opts;
  };
  const d = run([]);
  assert.deepEqual([d.enforcementMode, d.monitorVerdicts, d.eventRate], ["enforce", "none", 1000]);
  const f = run(["--enforcement-mode", "audit", "--monitor-verdicts", "all", "--event-rate", "0"]);
  assert.deepEqual([f.enforcementMode, f.monitorVerdicts, f.eventRate, f.enforcement], ["audit", "all", 0, "default"]);
  const e = run([], { RECONCILE_ENFORCEMENT_MODE: "audit", RECONCILE_MONITOR_VERDICTS: "deny", RECONCILE_EVENT_RATE: "1000000" });
  assert.deepEqual([e.enforcementMode, e.monitorVerdicts, e.eventRate], ["audit", "deny", 1_000_000]);
  assert.equal(run(["--event-rate", "5"], { RECONCILE_EVENT_RATE: "9" }).eventRate, 5, "the flag wins over its variable");
  for (const bad of ["1000001", "-1", "1.5", "lots", "1e3"]) {
    assert.throws(() => run(["--event-rate", bad]), new RegExp(`--event-rate: expected an integer 0\\.\\.1000000 \\(events per second per CPU per endpoint\\), got ${bad.replace(".", "\\.")}`), bad);
  }
  assert.throws(() => run(["--enforcement-mode", "audits"]), /--enforcement-mode: expected one of enforce, audit, got audits; did you mean audit\?/);
  assert.throws(() => run(["--monitor-verdicts", "drop"]), /--monitor-verdicts: expected one of none, allow, deny, all, got drop/);
  for (const shell of ["bash", "zsh", "fish"] as const) {
    const script = completionScript(shell);
    for (const flag of ["--enforcement-mode", "--monitor-verdicts", "--event-rate"]) assert.ok(script.includes(flag.slice(shell === "fish" ? 2 : 0)), `${shell} completes ${flag}`);
    assert.ok(script.includes("enforce") && script.includes("audit"), `${shell} offers enforce and audit`);
  }
  assert.match(completionScript("bash"), /none allow deny all/);
});

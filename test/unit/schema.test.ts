// schema/reconcile-v1.schema.json (for editors, via the yaml-language-server comment in every example)
// and reconciler/manifest/ (what `reconcile` accepts) must agree. No JSON-Schema library is
// installed, so this file carries a small validator for exactly the keywords the schema uses; it
// refuses any other keyword, so the schema cannot grow a rule this check silently ignores.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import {
  isDnsSubdomain,
  isIfName,
  isLabelValue,
  parseCIDR,
  parseLabelKey,
  parseMac,
} from "../../reconciler/manifest/fields.js";
import { parseIPv4, parseIPv6 } from "../../reconciler/manifest/ip.js";
import { formatProblem, loadSnapshot } from "../../reconciler/manifest/load.js";
import type { ManifestProblem } from "../../reconciler/manifest/model.js";
import { parseYamlWithLines } from "../../reconciler/manifest/yaml.js";
import { REPO_ROOT } from "./helpers/manifest-snapshot.js";

// ---- a compact JSON-Schema validator (the subset the schema uses) ----

type Schema = boolean | { [keyword: string]: unknown };

/** One reason a value does not match, at a JSON-pointer-like path. */
interface SchemaError {
  path: string;
  message: string;
}

/** Keywords that only annotate. */
const ANNOTATIONS = new Set(["$schema", "$id", "$comment", "$defs", "title", "description", "default", "examples"]);
/** Keywords the validator implements. */
const ASSERTIONS = new Set([
  "type", "properties", "required", "additionalProperties", "propertyNames", "minProperties",
  "enum", "const", "minimum", "maximum", "minLength", "maxLength", "pattern", "items", "minItems",
  "maxItems", "oneOf", "anyOf", "allOf", "not", "$ref",
]);

class UnknownKeywordError extends Error {
  constructor(keyword: string, at: string) {
    super(`schema keyword ${JSON.stringify(keyword)} at ${at} is not implemented by this test's validator (expected one of ${[...ASSERTIONS].join(", ")})`);
    this.name = "UnknownKeywordError";
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (v instanceof Date) return "date";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function hasType(v: unknown, t: string): boolean {
  const actual = typeOf(v);
  return actual === t || (t === "number" && actual === "integer");
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

class Validator {
  private readonly patterns = new Map<string, RegExp>();

  constructor(readonly root: Record<string, unknown>) {}

  resolve(ref: string): Schema {
    const m = /^#\/\$defs\/([A-Za-z0-9_]+)$/.exec(ref);
    const defs = this.root["$defs"] as Record<string, Schema> | undefined;
    const target = m ? defs?.[m[1]!] : undefined;
    if (target === undefined) throw new Error(`unresolvable $ref ${ref}`);
    return target;
  }

  /** Every keyword of every sub-schema is known, every $ref resolves, every pattern compiles. */
  checkSchema(s: Schema = this.root, at = "#"): void {
    if (typeof s === "boolean") return;
    for (const [k, v] of Object.entries(s)) {
      if (!ANNOTATIONS.has(k) && !ASSERTIONS.has(k)) throw new UnknownKeywordError(k, at);
      if (k === "$ref") this.resolve(v as string);
      if (k === "pattern") this.regex(v as string);
      if (k === "$defs" || k === "properties") for (const [n, sub] of Object.entries(v as object)) this.checkSchema(sub as Schema, `${at}/${k}/${n}`);
      if (["items", "additionalProperties", "propertyNames", "not"].includes(k)) this.checkSchema(v as Schema, `${at}/${k}`);
      if (["oneOf", "anyOf", "allOf"].includes(k)) (v as Schema[]).forEach((sub, i) => this.checkSchema(sub, `${at}/${k}/${i}`));
    }
  }

  private regex(p: string): RegExp {
    let re = this.patterns.get(p);
    if (!re) this.patterns.set(p, (re = new RegExp(p, "u")));
    return re;
  }

  validate(v: unknown, s: Schema = this.root, path = ""): SchemaError[] {
    if (s === true) return [];
    if (s === false) return [{ path, message: "no value is allowed here" }];
    const errs: SchemaError[] = [];
    const err = (message: string, at = path): void => void errs.push({ path: at, message });
    for (const [k, arg] of Object.entries(s)) {
      switch (k) {
        case "$ref":
          errs.push(...this.validate(v, this.resolve(arg as string), path));
          break;
        case "type": {
          const types = Array.isArray(arg) ? (arg as string[]) : [arg as string];
          if (!types.some((t) => hasType(v, t))) err(`expected ${types.join(" or ")}, got ${typeOf(v)}`);
          break;
        }
        case "enum":
          if (!(arg as unknown[]).some((e) => deepEqual(e, v))) err(`expected one of ${JSON.stringify(arg)}, got ${JSON.stringify(v)}`);
          break;
        case "const":
          if (!deepEqual(arg, v)) err(`expected ${JSON.stringify(arg)}, got ${JSON.stringify(v)}`);
          break;
        case "minimum":
          if (typeof v === "number" && v < (arg as number)) err(`expected >= ${String(arg)}, got ${v}`);
          break;
        case "maximum":
          if (typeof v === "number" && v > (arg as number)) err(`expected <= ${String(arg)}, got ${v}`);
          break;
        case "minLength":
          if (typeof v === "string" && [...v].length < (arg as number)) err(`expected at least ${String(arg)} characters`);
          break;
        case "maxLength":
          if (typeof v === "string" && [...v].length > (arg as number)) err(`expected at most ${String(arg)} characters, got ${[...v].length}`);
          break;
        case "pattern":
          if (typeof v === "string" && !this.regex(arg as string).test(v)) err(`does not match ${String(arg).slice(0, 40)}...: ${JSON.stringify(v)}`);
          break;
        case "items":
          if (Array.isArray(v)) v.forEach((item, i) => errs.push(...this.validate(item, arg as Schema, `${path}[${i}]`)));
          break;
        case "minItems":
          if (Array.isArray(v) && v.length < (arg as number)) err(`expected at least ${String(arg)} items`);
          break;
        case "maxItems":
          if (Array.isArray(v) && v.length > (arg as number)) err(`expected at most ${String(arg)} items`);
          break;
        case "required":
          if (isObject(v)) for (const r of arg as string[]) if (!Object.hasOwn(v, r)) err(`required property ${r} is missing`);
          break;
        case "minProperties":
          if (isObject(v) && Object.keys(v).length < (arg as number)) err(`expected at least ${String(arg)} properties`);
          break;
        case "properties":
          if (isObject(v)) {
            for (const [name, sub] of Object.entries(arg as Record<string, Schema>)) {
              if (Object.hasOwn(v, name)) errs.push(...this.validate(v[name], sub, joinPath(path, name)));
            }
          }
          break;
        case "additionalProperties":
          if (isObject(v)) {
            const known = (s["properties"] ?? {}) as Record<string, unknown>;
            for (const name of Object.keys(v)) {
              if (Object.hasOwn(known, name)) continue;
              if (arg === false) err(`unknown property ${name}`, joinPath(path, name));
              else errs.push(...this.validate(v[name], arg as Schema, joinPath(path, name)));
            }
          }
          break;
        case "propertyNames":
          if (isObject(v)) for (const name of Object.keys(v)) errs.push(...this.validate(name, arg as Schema, joinPath(path, name)));
          break;
        case "allOf":
          for (const sub of arg as Schema[]) errs.push(...this.validate(v, sub, path));
          break;
        case "anyOf":
          if (!(arg as Schema[]).some((sub) => this.validate(v, sub, path).length === 0)) err("matches none of anyOf");
          break;
        case "oneOf": {
          const n = (arg as Schema[]).filter((sub) => this.validate(v, sub, path).length === 0).length;
          if (n !== 1) err(`expected exactly one of oneOf to match, got ${n}`);
          break;
        }
        case "not":
          if (this.validate(v, arg as Schema, path).length === 0) err("matches the schema in not");
          break;
        default:
          if (!ANNOTATIONS.has(k)) throw new UnknownKeywordError(k, path);
      }
    }
    return errs;
  }

  /** Property names a schema lists for an object (through $ref, allOf, anyOf, oneOf). */
  propertyNames(s: Schema): Set<string> {
    const out = new Set<string>();
    for (const sub of this.branches(s)) for (const k of Object.keys((sub["properties"] ?? {}) as object)) out.add(k);
    return out;
  }

  /** Sub-schemas for property `name`, over every branch. */
  propertySchemas(s: Schema, name: string): Schema[] {
    const out: Schema[] = [];
    for (const sub of this.branches(s)) {
      const p = (sub["properties"] as Record<string, Schema> | undefined)?.[name];
      if (p !== undefined) out.push(p);
      else if (isObject(sub["additionalProperties"])) out.push(sub["additionalProperties"] as Schema);
    }
    return out;
  }

  itemSchemas(s: Schema): Schema[] {
    return this.branches(s).flatMap((sub) => (sub["items"] !== undefined ? [sub["items"] as Schema] : []));
  }

  private branches(s: Schema): Record<string, unknown>[] {
    if (typeof s === "boolean") return [];
    const out: Record<string, unknown>[] = [s];
    if (typeof s["$ref"] === "string") out.push(...this.branches(this.resolve(s["$ref"])));
    for (const k of ["allOf", "anyOf", "oneOf"]) for (const sub of (s[k] as Schema[] | undefined) ?? []) out.push(...this.branches(sub));
    return out;
  }
}

/** Loader-style dotted path (reconciler/manifest/fields.ts). */
function joinPath(parent: string, key: string): string {
  return parent === "" ? key : `${parent}.${key}`;
}

// ---- fixtures ----

const SCHEMA_PATH = join(REPO_ROOT, "schema", "reconcile-v1.schema.json");
const schemaJson = JSON.parse(readFileSync(SCHEMA_PATH, "utf8")) as Record<string, unknown>;
const v = new Validator(schemaJson);
const def = (name: string): Schema => v.resolve(`#/$defs/${name}`);

/** Documents of a YAML text, parsed the way the loader parses them. */
function docs(text: string): unknown[] {
  return parseYamlWithLines(text).documents.map((d) => d.value).filter((d) => d !== null && d !== undefined);
}

function load(files: Record<string, string>): ManifestProblem[] {
  return loadSnapshot({ revision: "test", files: Object.entries(files).map(([path, content]) => ({ path, content })) }).problems;
}

function loadErrors(files: Record<string, string>): string[] {
  return load(files).filter((p) => p.severity === "error").map(formatProblem);
}

function exampleFiles(): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(ya?ml|json)$/.test(name)) out.push(p);
    }
  };
  walk(join(REPO_ROOT, "examples"));
  return out;
}

// ---- the schema itself ----

test("the schema uses only keywords this validator implements, and every $ref resolves", () => {
  v.checkSchema();
  assert.equal(schemaJson["$schema"], "https://json-schema.org/draft/2020-12/schema");
});

// ---- examples ----

test("every example YAML file names the schema on its first line, by its relative path", () => {
  const yamls = exampleFiles().filter((f) => /\.ya?ml$/.test(f));
  assert.ok(yamls.length >= 8, `expected the example YAML files, got ${yamls.length}`);
  for (const f of yamls) {
    const rel = relative(dirname(f), SCHEMA_PATH).split("\\").join("/");
    const first = readFileSync(f, "utf8").split("\n")[0];
    assert.equal(first, `# yaml-language-server: $schema=${rel}`, relative(REPO_ROOT, f));
  }
});

test("every example document validates against the schema and every example set loads without errors", () => {
  const dirs = new Set<string>();
  for (const f of exampleFiles()) {
    dirs.add(dirname(f));
    const text = readFileSync(f, "utf8");
    if (f.endsWith(".json")) {
      assert.deepEqual(v.validate(JSON.parse(text), def("CiliumRuleList")), [], relative(REPO_ROOT, f));
      continue;
    }
    for (const d of docs(text)) assert.deepEqual(v.validate(d), [], `${relative(REPO_ROOT, f)}: ${JSON.stringify(d).slice(0, 80)}`);
  }
  for (const dir of dirs) {
    const files: Record<string, string> = {};
    for (const f of exampleFiles().filter((x) => dirname(x) === dir)) files[relative(dir, f)] = readFileSync(f, "utf8");
    assert.deepEqual(loadErrors(files), [], relative(REPO_ROOT, dir));
  }
});

// ---- broken documents: both must refuse ----

const EP = (spec: string, labels = "    app: web"): string =>
  `apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: web\n  labels:\n${labels}\nspec:\n${spec}`;
const IFACE = "  interface:\n    name: lxc-web\n";
const RULE = (spec: string): string => `apiVersion: reconcile/v1\nkind: Rule\nmetadata:\n  name: r\nspec:\n  endpointSelector: {}\n${spec}`;

const BROKEN: Record<string, string> = {
  "unknown top-level field": EP(`  ipv4: 10.0.0.1\n${IFACE}`) + "status: {}\n",
  "unknown spec field": EP(`  ipv4: 10.0.0.1\n  color: red\n${IFACE}`),
  "unknown interface field": EP(`  ipv4: 10.0.0.1\n  interface:\n    name: lxc-web\n    mtu: 1500\n`),
  "unknown apiVersion": EP(`  ipv4: 10.0.0.1\n${IFACE}`).replace("reconcile/v1", "reconcile/v2"),
  "unknown kind": EP(`  ipv4: 10.0.0.1\n${IFACE}`).replace("kind: Endpoint", "kind: Pod"),
  "Cilium kind under reconcile/v1": RULE("  ingress: []\n").replace("kind: Rule", "kind: CiliumNetworkPolicy"),
  "namespace on a reconcile object": EP(`  ipv4: 10.0.0.1\n${IFACE}`).replace("  name: web\n", "  name: web\n  namespace: prod\n"),
  "missing metadata.name": EP(`  ipv4: 10.0.0.1\n${IFACE}`).replace("  name: web\n", ""),
  "upper-case name": EP(`  ipv4: 10.0.0.1\n${IFACE}`).replace("name: web", "name: Web"),
  "missing spec": "apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: n1\n",
  "endpoint without address": EP(IFACE),
  "missing interface": EP("  ipv4: 10.0.0.1\n"),
  "missing interface name": EP("  ipv4: 10.0.0.1\n  interface:\n    create:\n      netns: ns1\n"),
  "interface name of 16 characters": EP("  ipv4: 10.0.0.1\n  interface:\n    name: lxc-0123456789ab\n"),
  "interface name with a slash": EP("  ipv4: 10.0.0.1\n  interface:\n    name: lxc/web\n"),
  "ifname of 16 characters": EP("  ipv4: 10.0.0.1\n  interface:\n    name: lxc-web\n    create:\n      netns: ns1\n      ifname: eth0123456789abc\n"),
  "bad interface kind": EP("  ipv4: 10.0.0.1\n  interface:\n    name: lxc-web\n    create:\n      netns: ns1\n      kind: ipvlan\n"),
  "macvlan without parent": EP("  ipv4: 10.0.0.1\n  interface:\n    name: eth1\n    create:\n      netns: ns1\n      kind: macvlan\n"),
  "veth with parent": EP("  ipv4: 10.0.0.1\n  interface:\n    name: lxc-web\n    create:\n      netns: ns1\n      parent: eth0\n"),
  "create without netns": EP("  ipv4: 10.0.0.1\n  interface:\n    name: lxc-web\n    create:\n      ifname: eth0\n"),
  "bad netns name": EP("  ipv4: 10.0.0.1\n  interface:\n    name: lxc-web\n    create:\n      netns: ../etc\n"),
  "invalid IPv4": EP(`  ipv4: 10.0.0.300\n${IFACE}`),
  "IPv4 with leading zero": EP(`  ipv4: 10.0.0.01\n${IFACE}`),
  "multicast IPv4 endpoint": EP(`  ipv4: 224.0.0.1\n${IFACE}`),
  "loopback IPv6 endpoint": EP(`  ipv6: "::1"\n${IFACE}`),
  "IPv6 with a zone": EP(`  ipv6: fe80::1%eth0\n${IFACE}`),
  "multicast MAC": EP(`  ipv4: 10.0.0.1\n  mac: 01:00:5e:00:00:01\n${IFACE}`),
  "endpoint label with source any": EP(`  ipv4: 10.0.0.1\n${IFACE}`, "    any:app: web"),
  "label value that is a number": EP(`  ipv4: 10.0.0.1\n${IFACE}`, "    replicas: 2"),
  "label value of 64 characters": EP(`  ipv4: 10.0.0.1\n${IFACE}`, `    app: ${"a".repeat(64)}`),
  "identity 255": "apiVersion: reconcile/v1\nkind: Identity\nmetadata:\n  name: i\nspec:\n  id: 255\n  labels:\n    app: x\n",
  "identity 65536": "apiVersion: reconcile/v1\nkind: Identity\nmetadata:\n  name: i\nspec:\n  id: 65536\n  labels:\n    app: x\n",
  "identity id as a string": "apiVersion: reconcile/v1\nkind: Identity\nmetadata:\n  name: i\nspec:\n  id: \"300\"\n  labels:\n    app: x\n",
  "identity without labels": "apiVersion: reconcile/v1\nkind: Identity\nmetadata:\n  name: i\nspec:\n  id: 300\n",
  "identity with empty labels": "apiVersion: reconcile/v1\nkind: Identity\nmetadata:\n  name: i\nspec:\n  id: 300\n  labels: {}\n",
  "node without address": "apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: n1\nspec:\n  podCIDRs: [10.0.0.0/24]\n",
  "tunnel type geneve": "apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: n1\nspec:\n  address: 192.0.2.1\n  tunnel:\n    type: geneve\n",
  "vni 0": "apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: n1\nspec:\n  address: 192.0.2.1\n  tunnel:\n    vni: 0\n",
  "pod CIDR with prefix 33": "apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: n1\nspec:\n  address: 192.0.2.1\n  podCIDRs: [10.0.0.0/33]\n",
  "rule without endpointSelector": "apiVersion: reconcile/v1\nkind: Rule\nmetadata:\n  name: r\nspec:\n  ingress: []\n",
  "endpointSelector and nodeSelector together": RULE("  nodeSelector: {}\n  ingress: []\n"),
  "host policy in a namespaced CiliumNetworkPolicy": "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\n  namespace: prod\nspec:\n  nodeSelector: {}\n  ingress: []\n",
  "host firewall without devices": "apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: n1\nspec:\n  address: 192.0.2.1\n  hostFirewall: {}\n",
  "host firewall device of 16 characters": "apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: n1\nspec:\n  address: 192.0.2.1\n  hostFirewall:\n    devices: [eth0123456789abc]\n",
  "toFQDNs": RULE("  egress:\n    - toFQDNs:\n        - matchName: example.com\n"),
  "fromEndpoints in egress": RULE("  egress:\n    - fromEndpoints: [{}]\n"),
  "L7 rules": RULE("  ingress:\n    - toPorts:\n        - ports: [{port: \"80\", protocol: TCP}]\n          rules: {http: [{method: GET}]}\n"),
  "toPorts without ports": RULE("  ingress:\n    - toPorts:\n        - {}\n"),
  "protocol misspelt": RULE("  ingress:\n    - toPorts:\n        - ports: [{port: \"80\", protocol: tpc}]\n"),
  "protocol ICMP": RULE("  ingress:\n    - toPorts:\n        - ports: [{port: \"0\", protocol: ICMP}]\n"),
  "port name with a double hyphen": RULE("  ingress:\n    - toPorts:\n        - ports: [{port: my--http, protocol: TCP}]\n"),
  "port name of 16 characters": RULE("  ingress:\n    - toPorts:\n        - ports: [{port: abcdefghijklmnop, protocol: TCP}]\n"),
  "bare address in a CIDR set": RULE("  ingress:\n    - fromCIDRSet:\n        - cidr: 10.0.0.1\n"),
  "CIDR set with cidr and cidrGroupRef": RULE("  ingress:\n    - fromCIDRSet:\n        - cidr: 10.0.0.0/8\n          cidrGroupRef: g\n"),
  "ICMP type 256": RULE("  ingress:\n    - icmps:\n        - fields: [{type: 256}]\n"),
  "ICMP family IPv5": RULE("  ingress:\n    - icmps:\n        - fields: [{type: 8, family: IPv5}]\n"),
  "ICMP type without a type": RULE("  ingress:\n    - icmps:\n        - fields: [{family: IPv4}]\n"),
  "named port declared without a port": "apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: e\nspec:\n  ipv4: 10.0.0.1\n  ports: [{name: http}]\n  interface:\n    name: lxc-e\n",
  "CIDR group with a bare address": "apiVersion: cilium.io/v2alpha1\nkind: CiliumCIDRGroup\nmetadata:\n  name: g\nspec:\n  externalCIDRs: [10.0.0.1]\n",
  "CIDR group without externalCIDRs": "apiVersion: cilium.io/v2alpha1\nkind: CiliumCIDRGroup\nmetadata:\n  name: g\nspec: {}\n",
  "port 65536": RULE("  ingress:\n    - toPorts:\n        - ports: [{port: 65536, protocol: TCP}]\n"),
  "port \"070\"": RULE("  ingress:\n    - toPorts:\n        - ports: [{port: \"070\", protocol: TCP}]\n"),
  "endPort as a string": RULE("  ingress:\n    - toPorts:\n        - ports: [{port: 80, endPort: \"90\", protocol: TCP}]\n"),
  "unknown entity": RULE("  ingress:\n    - fromEntities: [everything]\n"),
  "unknown operator": RULE("  ingress:\n    - fromEndpoints:\n        - matchExpressions: [{key: app, operator: Like, values: [x]}]\n"),
  "In without values": RULE("  ingress:\n    - fromEndpoints:\n        - matchExpressions: [{key: app, operator: In}]\n"),
  "Exists with values": RULE("  ingress:\n    - fromEndpoints:\n        - matchExpressions: [{key: app, operator: Exists, values: [x]}]\n"),
  "CIDR set without cidr": RULE("  ingress:\n    - fromCIDRSet:\n        - except: [10.0.0.0/8]\n"),
  "bad CIDR": RULE("  ingress:\n    - fromCIDR: [10.0.0.0/99]\n"),
  "enableDefaultDeny not a boolean": RULE("  enableDefaultDeny:\n    ingress: \"no\"\n  ingress: []\n"),
  "rule label without key": RULE("  labels:\n    - value: x\n  ingress: []\n"),
  "CNP with neither spec nor specs": "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\n",
  "CCNP with a namespace": "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: p\n  namespace: prod\nspec:\n  endpointSelector: {}\n  ingress: []\n",
  "CNP with status": "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\nspec:\n  endpointSelector: {}\n  ingress: []\nstatus: {}\n",
};

for (const [name, text] of Object.entries(BROKEN)) {
  test(`broken document is refused by schema and loader: ${name}`, () => {
    const parsed = docs(text);
    assert.equal(parsed.length, 1);
    assert.notDeepEqual(v.validate(parsed[0]), [], "the schema accepts it");
    assert.notDeepEqual(loadErrors({ "broken.yaml": text }), [], "the loader accepts it");
  });
}

// ---- every field the schema lists is accepted by the loader, and vice versa ----

/** One document per kind using every field the schema lists, with valid values. */
const FULL = `apiVersion: reconcile/v1
kind: Endpoint
metadata:
  name: full-ep
  labels:
    app: web
    container:tier: front
    example.com/team: a
  annotations:
    note: every field
spec:
  node: node-a
  ipv4: 10.11.0.10
  ipv6: fd00:11::10
  mac: 02:00:00:00:00:01
  ports:
    - name: http
      port: 8080
      protocol: TCP
  interface:
    name: mv-full
    create:
      netns: rc-full
      ifname: eth1
      kind: macvlan
      parent: eth9
---
apiVersion: reconcile/v1
kind: Identity
metadata:
  name: full-id
  labels:
    owner: me
  annotations:
    note: pinned
spec:
  id: 300
  labels:
    app: pinned
---
apiVersion: reconcile/v1
kind: Node
metadata:
  name: node-a
  labels:
    zone: a
  annotations:
    note: n
spec:
  address: 192.0.2.11
  tunnel:
    type: vxlan
    vni: 7
    port: 4789
  podCIDRs:
    - 10.11.0.0/24
    - fd00:11::/112
  hostFirewall:
    devices: [eth9]
---
apiVersion: reconcile/v1
kind: Rule
metadata:
  name: full-host-rule
spec:
  nodeSelector:
    matchLabels:
      zone: a
  ingress:
    - fromEntities: [remote-node]
---
apiVersion: reconcile/v1
kind: Rule
metadata:
  name: full-rule
  labels:
    team: net
  annotations:
    note: r
spec:
  description: every rule field
  endpointSelector:
    matchLabels:
      app: web
    matchExpressions:
      - key: tier
        operator: In
        values: [front]
  labels:
    - key: name
      value: full-rule
      source: unspec
  enableDefaultDeny:
    ingress: true
    egress: false
  log:
    value: full-rule-log
  ingress:
    - fromEndpoints:
        - matchLabels:
            app: api
          matchExpressions:
            - key: env
              operator: NotIn
              values: [dev]
      toPorts:
        - ports:
            - port: "8000"
              endPort: 8099
              protocol: TCP
    - fromCIDR: [192.0.2.0/24]
    - fromCIDRSet:
        - cidr: 198.51.100.0/24
          except: [198.51.100.128/25]
        - cidrGroupRef: full-group
          except: [203.0.113.128/25]
        - cidrGroupSelector: {matchLabels: {team: net}}
    - fromEntities: [host, world]
    - fromNodes: [{matchLabels: {zone: a}}]
      icmps:
        - fields:
            - type: 8
              family: IPv4
            - type: EchoRequest
              family: IPv6
    - toPorts: [{ports: [{port: http, protocol: TCP}]}]
  ingressDeny:
    - fromEndpoints: [{matchLabels: {app: bad}}]
      fromCIDR: [203.0.113.0/24]
      fromCIDRSet: [{cidr: 203.0.113.0/24, except: [203.0.113.0/25]}]
      fromEntities: [world-ipv4]
      fromNodes: [{}]
      toPorts: [{ports: [{port: 22, protocol: ANY}]}]
      icmps: [{fields: [{type: 13}]}]
  egress:
    - toEndpoints: [{matchExpressions: [{key: app, operator: Exists}]}]
      toPorts: [{ports: [{port: 53, protocol: UDP}]}]
    - toCIDR: [fd00:12::/64]
    - toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.11.0.0/16]}]
    - toEntities: [cluster]
    - toNodes: [{matchLabels: {zone: a}}]
      icmps: [{fields: [{type: EchoReply}]}]
  egressDeny:
    - toEndpoints: [{matchExpressions: [{key: pci, operator: DoesNotExist}]}]
      toCIDR: [192.0.2.99/32]
      toCIDRSet: [{cidr: 192.0.2.0/24, except: [192.0.2.0/26]}]
      toEntities: [remote-node]
      toNodes: [{}]
      toPorts: [{ports: [{port: 25, protocol: SCTP}]}]
      icmps: [{fields: [{type: 3, family: IPv4}]}]
---
apiVersion: cilium.io/v2alpha1
kind: CiliumCIDRGroup
metadata:
  name: full-group
  labels:
    team: net
  annotations:
    note: g
spec:
  externalCIDRs: [203.0.113.0/24, "2001:db8:1::/48"]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: full-cnp
  namespace: prod
  labels:
    team: net
  annotations:
    note: c
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEntities: [all]}]
specs:
  - endpointSelector: {matchLabels: {app: web}}
    egress: [{toEntities: [all]}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata:
  name: full-ccnp
  labels:
    team: net
  annotations:
    note: cc
spec:
  endpointSelector: {}
  ingress: [{fromEntities: [host]}]
specs:
  - endpointSelector: {}
    egress: [{toEntities: [host]}]
`;

/** An object position in a document: its loader-style path, value and the schemas that describe it. */
interface Position {
  path: string;
  value: Record<string, unknown>;
  names: Set<string>;
}

/** Every object position of `value` whose schema lists properties (label maps are not such objects). */
function positions(value: unknown, schemas: Schema[], path = ""): Position[] {
  const out: Position[] = [];
  if (Array.isArray(value)) {
    const items = schemas.flatMap((s) => v.itemSchemas(s));
    value.forEach((item, i) => out.push(...positions(item, items, `${path}[${i}]`)));
    return out;
  }
  if (!isObject(value)) return out;
  const names = new Set<string>();
  for (const s of schemas) for (const n of v.propertyNames(s)) names.add(n);
  if (names.size > 0) out.push({ path, value, names });
  for (const [k, child] of Object.entries(value)) {
    out.push(...positions(child, schemas.flatMap((s) => v.propertySchemas(s, k)), joinPath(path, k)));
  }
  return out;
}

/** The schema branch (document kind) a full document belongs to. */
function kindSchema(d: Record<string, unknown>): Schema {
  return def(d["kind"] as string);
}

test("the full documents validate against the schema and load without errors", () => {
  for (const d of docs(FULL)) assert.deepEqual(v.validate(d), [], (d as { kind: string }).kind);
  // Warnings only: `log` is accepted and ignored.
  assert.deepEqual(load({ "full.yaml": FULL }).filter((p) => p.severity === "error").map(formatProblem), []);
});

test("the full documents use every field the schema lists (each object shape, over all its uses)", () => {
  // Objects of one shape (e.g. every EndpointSelector) are grouped by the names the schema lists.
  const used = new Map<string, Set<string>>();
  for (const d of docs(FULL) as Record<string, unknown>[]) {
    for (const p of positions(d, [kindSchema(d)])) {
      const key = [...p.names].sort().join(",");
      const set = used.get(key) ?? new Set<string>();
      for (const k of Object.keys(p.value)) set.add(k);
      used.set(key, set);
    }
  }
  assert.ok(used.size >= 20, `expected many object shapes, got ${used.size}`);
  for (const [names, keys] of used) {
    const missing = names.split(",").filter((n) => !keys.has(n));
    assert.deepEqual(missing, [], `{${names}}: fields the schema lists but the full documents never use`);
  }
});

test("at every object, the loader accepts exactly the field names the schema lists", () => {
  const checked: string[] = [];
  const all = docs(FULL) as Record<string, unknown>[];
  for (let i = 0; i < all.length; i++) {
    const kind = all[i]!["kind"] as string;
    for (const p of positions(all[i], [kindSchema(all[i]!)])) {
      // Add an unknown key at this position, load, and read the loader's list of expected fields.
      const copy = structuredClone(all) as Record<string, unknown>[];
      let target: unknown = copy[i];
      for (const part of p.path.match(/[^.[\]]+/g) ?? []) target = (target as Record<string, unknown>)[/^\d+$/.test(part) ? Number(part) : part];
      (target as Record<string, unknown>)["zzUnknown"] = "x";
      const text = copy.map((d) => JSON.stringify(d)).join("\n---\n");
      const problem = load({ "full.yaml": text }).find((x) => x.severity === "error" && (x.path ?? "") === joinPath(p.path, "zzUnknown"));
      assert.ok(problem, `${kind} ${p.path}: the loader did not reject an unknown field`);
      const m = /^unknown field \(expected one of (.*), got "zzUnknown"\)$/.exec(problem.message);
      assert.ok(m, `${kind} ${p.path}: unexpected message ${problem.message}`);
      assert.deepEqual(new Set(m[1]!.split(", ")), p.names, `${kind} ${p.path || "(document)"}: loader fields vs schema fields`);
      checked.push(`${kind} ${p.path}`);
    }
  }
  assert.ok(checked.length >= 40, `expected to check many positions, checked ${checked.length}`);
});

// ---- leaf formats: schema patterns against the loader's own parsers ----

/** Deterministic pseudo-random strings over an alphabet (xorshift32). */
function randomStrings(alphabet: string, count: number, maxLen: number, seed: number): string[] {
  let x = seed;
  const next = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const len = 1 + Math.floor(next() * maxLen);
    let s = "";
    for (let j = 0; j < len; j++) s += alphabet[Math.floor(next() * alphabet.length)];
    out.push(s);
  }
  return out;
}

function agree(defName: string, loaderAccepts: (s: string) => boolean, samples: string[]): void {
  const schema = def(defName);
  const disagreements = samples.filter((s) => (v.validate(s, schema).length === 0) !== loaderAccepts(s));
  assert.deepEqual(disagreements.slice(0, 10), [], `${defName}: schema and loader disagree`);
}

const V6_SAMPLES = [
  "::", "::1", "1::", "fd00::1", "FD00::A", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1::8", "1:2:3:4:5:6:7:8:9",
  "1:2:3:4:5:6:7::8", "::ffff:1.2.3.4", "::1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5::1.2.3.4", "1:2:3:4:5:6::1.2.3.4",
  "::ffff:1.2.3.04", "1:::2", ":1::", "1::2::3", "12345::", "fe80::1%eth0", "0:0:0:0:0:0:0:0", "ff02::1", "::0.0.0.1",
];

test("IPv4 and IPv6 patterns agree with the loader's parsers", () => {
  agree("IPv4", (s) => parseIPv4(s) !== undefined, ["1.2.3.4", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", ...randomStrings("0125.", 3000, 12, 7)]);
  agree("IPv6", (s) => parseIPv6(s) !== undefined, [...V6_SAMPLES, ...randomStrings("012af:.", 6000, 20, 11), ...randomStrings("0f:", 3000, 18, 13)]);
  agree("CIDR", (s) => typeof parseCIDR(s) !== "string" || /^host bits set/.test(parseCIDR(s) as string), [
    "10.0.0.0/8", "10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/08", "fd00::/64", "fd00::/129", "::/0", "1.2.3.4",
    ...randomStrings("0129./", 3000, 14, 17), ...randomStrings("0af:/28", 3000, 16, 19),
  ]);
});

test("endpoint address patterns agree with the loader (unicast only)", () => {
  const loads = (field: string, s: string): boolean => loadErrors({ "e.yaml": EP(`  ${field}: ${JSON.stringify(s)}\n${IFACE}`) }).length === 0;
  agree("EndpointIPv4", (s) => loads("ipv4", s), ["0.1.2.3", "127.0.0.1", "126.0.0.1", "223.255.255.255", "224.0.0.1", "255.255.255.255", "10.0.0.1", ...randomStrings("0127.", 200, 10, 23)]);
  agree("EndpointIPv6", (s) => loads("ipv6", s), [...V6_SAMPLES, "0::1", "0:0::0001", "::0.0.0.0", "ff00::", "ff::1", "fff::1", ...randomStrings("01f:.", 300, 10, 29)]);
});

test("name, interface, label and MAC patterns agree with the loader", () => {
  agree("Name", isDnsSubdomain, ["a", "a-b.c", "-a", "a-", "A", "a..b", "x".repeat(253), "x".repeat(254), ...randomStrings("ab-.A", 2000, 10, 31)]);
  agree("InterfaceName", isIfName, [".", "..", "...", "eth0", "a/b", "a:b", "a b", "x".repeat(15), "x".repeat(16), "é", ...randomStrings("a./: ~!é", 2000, 17, 37)]);
  agree("LabelValue", isLabelValue, ["", "a", "a-", "-a", "a_b.c", "x".repeat(63), "x".repeat(64), ...randomStrings("aZ9-_.", 2000, 8, 41)]);
  const keyOk = (s: string): boolean => typeof parseLabelKey(s, "k8s") !== "string";
  agree("LabelKey", keyOk, ["app", "k8s:app", "any:app", "a.b/c", "k8s:a.b/c", "A:b", ":b", "a:", "a/b/c", "x".repeat(63), "x".repeat(64), ...randomStrings("ak:/.-A", 3000, 10, 43)]);
  agree("EndpointLabelKey", (s) => keyOk(s) && !["any", "reserved", "cidr", "fqdn"].includes((parseLabelKey(s, "k8s") as { source: string }).source), [
    "app", "any:app", "reserved:host", "cidr:x", "fqdn:x", "container:app", "anyx:app",
  ]);
  agree("MAC", (s) => parseMac(s) !== undefined, ["02:00:00:00:00:01", "01:00:00:00:00:00", "00:00:00:00:00:00", "0A:BB:cc:dd:ee:ff", "0b:00:00:00:00:00", "02-00-00-00-00-01", ...randomStrings("013ab:", 2000, 17, 47)]);
});

// Property: for random small models and random flows, explain (evaluated from the rules) gives the
// same verdict as the compiled entries under the datapath's lookup rule, with source and
// destination identities resolved from the compiled ipcache by longest prefix. Seeded, deterministic.
import { test } from "node:test";
import assert from "node:assert/strict";
import { compile } from "../../reconciler/policy/compile.js";
import { explain, policyVerdict } from "../../reconciler/policy/explain.js";
import { parseAddress, parsePrefix, prefixContainsAddress } from "../../reconciler/manifest/ip.js";
import type { CompiledPolicy, CompileOptions, Direction } from "../../reconciler/policy/types.js";
import type { CIDRSelector, Entity, Model, PortRule, Selector } from "../../reconciler/manifest/model.js";
import { cidrGroup, endpoint, icmp, identity, model, named, node, port, rule, sel, type PeerSpec } from "./helpers/policy-model.js";

function prng(seed: number) {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0) / 2 ** 32);
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!,
    chance: (p: number) => next() < p,
  };
}
type Rng = ReturnType<typeof prng>;

const APPS = ["a", "b", "c"];
const ENVS = ["x", "y"];
const CIDRS = ["20.0.0.0/8", "20.1.0.0/16", "20.1.2.0/24", "30.0.0.0/8", "0.0.0.0/0", "10.0.0.0/24"];
const ENTITIES: Entity[] = ["all", "world", "cluster", "host", "remote-node", "world-ipv4", "health"];
const PORTS: Array<() => PortRule> = [
  () => port(80),
  () => port(81),
  () => port(80, "TCP", 83),
  () => port(0, "TCP"),
  () => port(53, "ANY"),
  () => port(53, "UDP"),
  () => port(8000, "TCP", 8191),
  () => port(82, "SCTP", 90),
  () => icmp(8),
  () => icmp(0),
  () => icmp(128, "IPv6"),
  () => named("http"),
  () => named("http", "TCP"),
  () => named("dns", "UDP"),
  () => named("nope"),
];
/** Named ports endpoints may declare (different numbers for one name on different endpoints). */
const DECLS = [
  [{ name: "http", port: 80, protocol: "TCP" as const }],
  [{ name: "http", port: 8100, protocol: "TCP" as const }],
  [{ name: "http", port: 81, protocol: "TCP" as const }, { name: "dns", port: 53, protocol: "UDP" as const }],
  [{ name: "dns", port: 53, protocol: "TCP" as const }],
];

function randSelector(r: Rng): Selector {
  switch (r.int(6)) {
    case 0:
      return sel({});
    case 1:
      return sel({ app: r.pick(APPS) });
    case 2:
      return sel({ env: r.pick(ENVS) }, [["app", r.pick(["In", "NotIn"] as const), [r.pick(APPS), r.pick(APPS)]]]);
    case 3:
      return sel({}, [["env", r.pick(["Exists", "DoesNotExist"] as const)]]);
    case 4:
      return sel({ "reserved:host": "" });
    default:
      return sel({ "k8s:app": r.pick(APPS) });
  }
}

function randPeer(r: Rng): PeerSpec {
  const p: PeerSpec = {};
  const kind = r.int(6);
  if (kind === 0 || (kind === 4 && r.chance(0.5))) p.endpoints = Array.from({ length: 1 + r.int(2) }, () => randSelector(r));
  if (kind === 1 || (kind === 4 && r.chance(0.5))) {
    p.cidrs = Array.from({ length: 1 + r.int(2) }, (): CIDRSelector => {
      if (r.chance(0.3)) {
        // A CIDR group by name or by label (the groups are in randModel).
        const except = r.chance(0.3) ? ["20.1.2.0/24"] : [];
        return r.chance(0.5) ? { groupRef: r.pick(["g1", "g2", "missing"]), except } : { groupSelector: sel({ tier: r.pick(["ext", "int"]) }), except };
      }
      const cidr = r.pick(CIDRS);
      const except = CIDRS.filter((x) => x !== cidr && parsePrefix(x).len > parsePrefix(cidr).len && r.chance(0.3));
      return { cidr, except: except.filter((x) => prefixContainsAddress(parsePrefix(cidr), 4, parsePrefix(x).addr)) };
    });
  }
  if (kind === 2 || (kind === 4 && r.chance(0.5))) p.entities = [r.pick(ENTITIES)];
  if (kind === 5) p.nodes = [r.chance(0.3) ? sel({}) : sel({ role: r.pick(["edge", "core"]) })];
  if (kind === 3 || r.chance(0.5)) p.ports = Array.from({ length: 1 + r.int(2) }, () => r.pick(PORTS)());
  return p;
}

function randModel(r: Rng): Model {
  const n = 3 + r.int(4);
  const endpoints = Array.from({ length: n }, (_, i) => {
    const lbl: Record<string, string> = { app: r.pick(APPS) };
    if (r.chance(0.6)) lbl.env = r.pick(ENVS);
    return endpoint(`e${i}`, lbl, { ipv4: `10.0.0.${i + 1}`, ...(r.chance(0.3) ? { node: "n2" } : {}), ...(r.chance(0.5) ? { ports: r.pick(DECLS) } : {}) });
  });
  const rules = Array.from({ length: 1 + r.int(5) }, (_, i) => {
    const sections = () => (r.chance(0.5) ? Array.from({ length: 1 + r.int(2) }, () => randPeer(r)) : []);
    return rule({
      name: `r${i}`,
      selector: randSelector(r),
      ingress: sections(),
      egress: sections(),
      ingressDeny: r.chance(0.3) ? [randPeer(r)] : [],
      egressDeny: r.chance(0.3) ? [randPeer(r)] : [],
      enableDefaultDeny: { ...(r.chance(0.25) ? { ingress: false } : {}), ...(r.chance(0.25) ? { egress: false } : {}) },
    });
  });
  const identities = r.chance(0.5) ? [identity("pin", 1000 + r.int(1000), { app: r.pick(APPS) })] : [];
  // Node peers are judged from the node compiled for (its own Node is the host, others are
  // remote-node) while this property explains every flow from n1: with node peers, keep every
  // endpoint on n1 so that n1 judges both sides.
  const usesNodes = rules.some((q) => [q.rule.ingress, q.rule.egress, q.rule.ingressDeny, q.rule.egressDeny].some((sec) => sec.some((x) => x.nodes !== undefined)));
  if (usesNodes) for (const e of endpoints) delete e.node;
  const cidrGroups = [cidrGroup("g1", ["20.1.0.0/16"], { tier: "ext" }), cidrGroup("g2", ["30.0.0.0/8", "20.1.2.0/24"], { tier: r.pick(["ext", "int"]) })];
  const roles = ["edge", "core"];
  return model({
    endpoints,
    rules,
    identities,
    cidrGroups,
    nodes: [node("n1", "192.168.0.1", { role: r.pick(roles) }), node("n2", "192.168.0.2", { role: r.pick(roles) })],
  });
}

function ipcacheLookup(c: CompiledPolicy, ip: string): number {
  const { family, addr } = parseAddress(ip);
  let best = -1;
  let id = -1;
  for (const e of c.ipcache) {
    const p = parsePrefix(e.prefix);
    if (prefixContainsAddress(p, family, addr) && p.len > best) {
      best = p.len;
      id = e.identity;
    }
  }
  return id;
}

test("property: explain verdict equals the compiled entries' datapath verdict", () => {
  const r = prng(20240611);
  const OTHER_IPS = ["20.1.2.3", "20.1.9.9", "20.7.0.1", "30.0.0.1", "8.8.8.8", "192.168.0.1", "192.168.0.2", "10.0.0.200"];
  let cases = 0;
  let allows = 0;
  for (let mi = 0; mi < 400; mi++) {
    const m = randModel(r);
    const enforcement = r.pick(["default", "default", "default", "always", "never"] as const);
    const opts: Record<string, CompileOptions> = {
      n1: { node: "n1", enforcement, hostAddresses: ["192.168.0.1"] },
      n2: { node: "n2", enforcement, hostAddresses: ["192.168.0.2"] },
    };
    const compiled = { n1: compile(m, opts.n1!), n2: compile(m, opts.n2!) };
    const names = m.endpoints.map((e) => e.name);
    for (let fi = 0; fi < 20; fi++) {
      const from = r.chance(0.7) ? r.pick(names) : r.pick(OTHER_IPS);
      const to = r.chance(0.8) ? r.pick(names) : r.pick(OTHER_IPS);
      const protocol = r.pick([6, 6, 17, 132, 1, 1, 58]);
      const p = protocol === 1 ? r.pick([0, 8, 13]) : protocol === 58 ? r.pick([128, 129]) : r.pick([79, 80, 81, 82, 83, 84, 53, 8100, 90, 1]);
      // Judge on the node hosting each endpoint side; the flow's identities come from the
      // ipcache of n1 (identities are cluster-wide, so any node's ipcache gives the same numbers).
      const c1 = compiled.n1;
      const ipOf = (x: string) => m.endpoints.find((e) => e.name === x)?.ipv4 ?? x;
      const fromId = ipcacheLookup(c1, ipOf(from));
      const toId = ipcacheLookup(c1, ipOf(to));
      const side = (name: string, dir: Direction, peer: number): boolean => {
        const ep = m.endpoints.find((e) => e.name === name);
        if (!ep) return true;
        const c = compiled[(ep.node ?? "n1") as "n1" | "n2"];
        const pol = c.endpoints.find((e) => e.endpoint === name)!;
        if (!pol.enforce[dir]) return true;
        return policyVerdict(pol, dir, peer, protocol, p).decision === "allow";
      };
      const compiledVerdict = side(from, "egress", toId) && side(to, "ingress", fromId) ? "allow" : "deny";
      const x = explain(m, opts.n1!, { from, to, port: p, protocol });
      const ctx = () => JSON.stringify({ mi, from, to, p, protocol, enforcement, reason: x.reason, model: m.rules.map((q) => q.rule) }, null, 0).slice(0, 4000);
      assert.equal(x.fromIdentity, fromId, `from identity ${ctx()}`);
      assert.equal(x.toIdentity, toId, `to identity ${ctx()}`);
      assert.equal(x.verdict, compiledVerdict, ctx());
      cases++;
      if (compiledVerdict === "allow") allows++;
    }
  }
  assert.equal(cases, 8000);
  // both outcomes must be well represented, or the property says little
  assert.ok(allows > 1500 && allows < 6500, `allow count ${allows} of ${cases}`);
});

// Plan rows, inspect rows and the daemon's change lines say what a policy entry means: endpoint,
// direction, verdict, protocol and port (or range, or ICMP type), and the peer behind the identity.

import assert from "node:assert/strict";
import { test } from "node:test";
import { policyRows } from "../../reconciler/cli/inspect.js";
import { emptyState } from "../../reconciler/datapath/state.js";
import { diff } from "../../reconciler/plan/diff.js";
import { compileSnapshot } from "../../reconciler/plan/snapshot-to-desired.js";
import { planDocument, portText, renderPlanText } from "../../reconciler/plan/render.js";
import { peerNames, peerText } from "../../reconciler/policy/peer-names.js";

const endpoint = (name: string, id: string, ip: string) => `
apiVersion: reconcile/v1
kind: Endpoint
metadata: { name: ${name}, labels: { id: ${id} } }
spec: { ipv4: ${ip}, interface: { name: lxc-${name} } }
---`;

const manifests = `${endpoint("app1", "app1", "10.11.255.104")}
${endpoint("app2", "app2", "10.11.90.17")}
${endpoint("app4", "app2", "10.11.90.18")}
${endpoint("db", "db", "10.11.7.7")}
apiVersion: reconcile/v1
kind: Identity
metadata: { name: app2 }
spec: { id: 36895, labels: { id: app2 } }
---
apiVersion: reconcile/v1
kind: Rule
metadata: { name: rows }
spec:
  endpointSelector: { matchLabels: { any:id: app1 } }
  ingress:
    - fromEndpoints: [{ matchLabels: { any:id: app2 } }]
      toPorts: [{ ports: [{ port: "80", protocol: TCP }] }]
    - fromEndpoints: [{ matchLabels: { any:id: db } }]
      toPorts: [{ ports: [{ port: "8080", endPort: 8087, protocol: TCP }] }]
    - fromEntities: [world]
      toPorts: [{ ports: [{ port: "443", protocol: TCP }] }]
    - fromEntities: [host]
    - fromCIDR: [192.0.2.0/24]
      toPorts: [{ ports: [{ port: "53", protocol: UDP }] }]
    - fromEndpoints: [{ matchLabels: { any:id: db } }]
      icmps: [{ fields: [{ type: 8 }] }]
    - toPorts: [{ ports: [{ port: "9090", protocol: SCTP }] }]
`;

const compiled = compileSnapshot({ revision: "r1", files: [{ path: "rows.yaml", content: manifests }] }, { node: "n1", enforcement: "default", attachMode: "tcx" });
const peers = peerNames(compiled.policy);
const plan = diff(compiled.desired, emptyState());
const text = renderPlanText(plan, { notes: [], peers }, { colour: false });
const row = (body: string) => new RegExp(`^  \\+ policy app1 ingress allow ${body.replace(/[()/.]/g, "\\$&")} ← rows \\(rows\\.yaml:\\d+\\)$`, "m");

test("a plan row names the endpoint(s), entity or CIDR behind the identity, the protocol and the port or range", () => {
  const cidrIdentity = [...compiled.policy.identities.values()].find((i) => i.cidr === "192.0.2.0/24")!.id;
  const dbIdentity = compiled.policy.endpoints.find((e) => e.endpoint === "db")!.identity;
  assert.match(text, row("TCP/80 from app2, app4 (identity 36895)"), "several endpoints of one identity");
  assert.match(text, row(`TCP/8080-8087 from db (identity ${dbIdentity})`), "one endpoint, a port range as one aligned block");
  assert.match(text, row("TCP/443 from world (identity 2)"), "world");
  assert.match(text, row("any protocol from host (identity 1)"), "an entity, L3-only");
  assert.match(text, row(`UDP/53 from 192.0.2.0/24 (identity ${cidrIdentity})`), "a CIDR");
  assert.match(text, row(`ICMP type 8 from db (identity ${dbIdentity})`), "ICMP");
  assert.match(text, row("SCTP/9090 from any peer (identity 0)"), "L4-only: every peer");
});

test("without the revision's names a row gives the number; more than three endpoints are counted", () => {
  assert.match(renderPlanText(plan, { notes: [] }, { colour: false }), /^ {2}\+ policy app1 ingress allow TCP\/80 from identity 36895 ← rows/m);
  assert.equal(peers(36895).names.join(","), "app2,app4");
  assert.deepEqual(peers(424242), { kind: "unknown", names: [] });
  assert.deepEqual(peers(2), { kind: "entity", names: ["world"] });
  assert.equal(peerText(7001, { kind: "endpoint", names: ["a", "b", "c", "d", "e"] }), "a, b, c and 2 more (identity 7001)");
  assert.equal(peerText(424242, peers(424242)), "identity 424242");
  assert.equal(portText(6, 0, 0), "TCP (all ports)");
  assert.equal(portText(58, 0, 0), "ICMPv6 (all types)");
  assert.equal(portText(17, 1024, 6), "UDP/1024-2047");
});

test("the JSON keeps the numbers and adds the names", () => {
  const doc = planDocument(plan, { notes: [], peers });
  const after = doc.changes.find((c) => c.resource === "policy" && (c.after as { identity: number; port: number }).port === 80)!.after;
  assert.deepEqual(
    { ...(after as Record<string, unknown>), rule: undefined, rules: undefined },
    { endpoint: "app1", direction: "ingress", identity: 36895, protocol: 6, port: 80, endPort: 80, decision: "allow", audit: false, protocolName: "TCP", peer: { kind: "endpoint", names: ["app2", "app4"] }, rule: undefined, rules: undefined },
  );
});

test("inspect policy rows: numbers for JSON, the key in words and the peer's names", () => {
  const none = { policyStats: () => new Map(), drops: () => [] };
  const rows = policyRows("app1", compiled.desired.policy, compiled.desired, none, peers);
  const http = rows.find((r) => r.port === 80)!;
  assert.deepEqual([http.identity, http.protocol, http.portPrefixLen, http.protocolName, http.ports, http.peer], [36895, 6, 16, "TCP", "TCP/80", { kind: "endpoint", names: ["app2", "app4"] }]);
  const range = rows.find((r) => r.port === 8080)!;
  assert.deepEqual([range.endPort, range.ports], [8087, "TCP/8080-8087"]);
});

// Scale generator for benchmarks: a Model shaped like DESIGN §7 (1,000 local endpoints, 2,000 rules,
// ~100,000 ipcache prefixes, ~1,000,000 policy entries). Deterministic for given options.

import type { EndpointManifest, Label, Model, RuleManifest, Selector } from "../../reconciler/manifest/model.js";

export interface ScaleOptions {
  /** Local endpoints (each with its own identity). */
  endpoints: number;
  /** Rules; each selects endpoints of one app and allows ingress from one group on one port. */
  rules: number;
  /** Endpoints on other nodes (ipcache entries only). */
  remoteEndpoints: number;
  /** Apps: endpoints per app = endpoints / apps; rules per endpoint = rules / apps. */
  apps: number;
  /** Groups: peers per rule = endpoints / groups. */
  groups: number;
}

/** ~1,000,000 entries: 2000/50 = 40 rules select each endpoint, each allows 1000/40 = 25 peers on its own port. */
export const DESIGN_SCALE: ScaleOptions = { endpoints: 1000, rules: 2000, remoteEndpoints: 99_000, apps: 50, groups: 40 };

const at = (file: string, line: number) => ({ file, line });

function label(key: string, value: string, source = "k8s"): Label {
  return { source, key, value };
}

function sortLabels(labels: Label[]): Label[] {
  return labels.sort((a, b) => (a.source + ":" + a.key).localeCompare(b.source + ":" + b.key));
}

function selector(key: string, value: string, file: string, line: number): Selector {
  return { requirements: [{ source: "any", key, operator: "In", values: [value] }], at: at(file, line) };
}

function ip(n: number, base: number): string {
  return `10.${base + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
}

export function generateModel(o: ScaleOptions): Model {
  const endpoints: EndpointManifest[] = [];
  for (let i = 0; i < o.endpoints; i++) {
    endpoints.push({
      kind: "Endpoint",
      name: `ep${i}`,
      ipv4: ip(i + 1, 20),
      interfaceName: `lxc${i}`,
      labels: sortLabels([label("app", `a${i % o.apps}`), label("grp", `g${i % o.groups}`), label("id", `e${i}`)]),
      at: at("endpoints.yaml", 1 + i * 10),
    });
  }
  for (let i = 0; i < o.remoteEndpoints; i++) {
    endpoints.push({
      kind: "Endpoint",
      name: `remote${i}`,
      node: `node${1 + (i % 99)}`,
      ipv4: ip(i + 1, 100),
      interfaceName: `lxc${i}`,
      labels: sortLabels([label("app", `r${i % 500}`)]),
      at: at("remote.yaml", 1 + i * 10),
    });
  }
  const rules: RuleManifest[] = [];
  for (let r = 0; r < o.rules; r++) {
    const file = `rules/r${Math.floor(r / 100)}.yaml`;
    const line = 1 + (r % 100) * 20;
    rules.push({
      kind: "Rule",
      name: `rule${r}`,
      origin: "Rule",
      at: at(file, line),
      rule: {
        endpointSelector: selector("app", `a${r % o.apps}`, file, line + 4),
        ingress: [
          {
            at: at(file, line + 7),
            endpoints: [selector("grp", `g${Math.floor(r / o.apps) % o.groups}`, file, line + 8)],
            ports: [{ port: 1000 + r, endPort: 1000 + r, protocol: "TCP" }],
          },
        ],
        egress: [],
        ingressDeny: [],
        egressDeny: [],
        enableDefaultDeny: {},
        labels: [],
      },
    });
  }
  return { revision: "bench", endpoints, identities: [], rules, nodes: [] };
}

// A two-node version of the seed scenario, as an in-memory snapshot: n1 (192.0.2.11, pod CIDR
// 10.11.255.0/24) hosts app1; n2 (192.0.2.12, 10.11.90.0/24 and 10.11.33.0/24) hosts app2 and app3.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Snapshot } from "../../../reconciler/source/snapshot.js";
import { REPO_ROOT } from "./manifest-snapshot.js";

export const N1 = { name: "n1", address: "192.0.2.11", podCIDRs: ["10.11.255.0/24"] } as const;
export const N2 = { name: "n2", address: "192.0.2.12", podCIDRs: ["10.11.90.0/24", "10.11.33.0/24"] } as const;

export function nodeYaml(n: { name: string; address: string; podCIDRs: readonly string[] }, tunnel = "  tunnel:\n    type: vxlan\n    vni: 7\n"): string {
  return `apiVersion: reconcile/v1\nkind: Node\nmetadata:\n  name: ${n.name}\nspec:\n  address: ${n.address}\n${tunnel}  podCIDRs:\n${n.podCIDRs.map((c) => `    - ${c}\n`).join("")}`;
}

function endpointYaml(name: string, node: string, ipv4: string): string {
  return `apiVersion: reconcile/v1\nkind: Endpoint\nmetadata:\n  name: ${name}\n  labels:\n    id: ${name}\nspec:\n  node: ${node}\n  ipv4: ${ipv4}\n  interface:\n    name: lxc-${name}\n    create:\n      kind: veth\n      netns: rc-${name}\n      ifname: eth0\n`;
}

/** The snapshot; `app3On` moves app3 (to 10.11.255.33 on n1). */
export function multinodeSnapshot(opts: { app3On?: "n1" | "n2"; nodes?: string } = {}): Snapshot {
  const seed = join(REPO_ROOT, "examples/seed");
  const app3 = opts.app3On === "n1" ? endpointYaml("app3", "n1", "10.11.255.33") : endpointYaml("app3", "n2", "10.11.33.3");
  return {
    revision: `multinode-${opts.app3On ?? "n2"}`,
    files: [
      { path: "nodes.yaml", content: opts.nodes ?? `${nodeYaml(N1)}---\n${nodeYaml(N2)}` },
      { path: "endpoints.yaml", content: [endpointYaml("app1", "n1", "10.11.255.104"), endpointYaml("app2", "n2", "10.11.90.17"), app3].join("---\n") },
      { path: "identities.yaml", content: readFileSync(join(seed, "identities.yaml"), "utf8") },
      { path: "l3-rule.json", content: readFileSync(join(seed, "l3-rule.json"), "utf8") },
    ],
  };
}

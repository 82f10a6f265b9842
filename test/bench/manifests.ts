// SPDX-License-Identifier: Apache-2.0
// The model of generate.ts written as manifest files, as the daemon and diff benchmarks read them.

import type { EndpointManifest, Label, Model, RuleManifest, Selector } from "../../reconciler/manifest/model.js";

/** Largest file the directory source accepts is 1 MiB: remote endpoints go 1,000 to a file. */
const REMOTE_PER_FILE = 1000;

function labelsYaml(labels: readonly Label[]): string {
  // k8s is the default source of an endpoint label.
  return labels.map((l) => `${l.source === "k8s" ? "" : `${l.source}:`}${l.key}: ${l.value}`).join(", ");
}

function endpointYaml(e: EndpointManifest): string {
  const node = e.node ? `node: ${e.node}, ` : "";
  // Local endpoints adopt an interface the benchmark created (no `create`); remote ones name theirs.
  return `---\napiVersion: reconcile/v1\nkind: Endpoint\nmetadata: {name: ${e.name}, labels: {${labelsYaml(e.labels)}}}\nspec: {${node}ipv4: ${e.ipv4}, interface: {name: ${e.interfaceName}}}\n`;
}

function matchLabels(sel: Selector | undefined): string {
  const req = sel!.requirements[0]!; // generate.ts gives every rule and peer one requirement
  return `{matchLabels: {${req.key}: ${req.values![0]}}}`;
}

function ruleYaml(r: RuleManifest, port: number): string {
  const ingress = r.rule.ingress[0]!;
  const p = ingress.ports![0]!;
  return (
    `---\napiVersion: reconcile/v1\nkind: Rule\nmetadata: {name: ${r.name}}\nspec:\n` +
    `  endpointSelector: ${matchLabels(r.rule.endpointSelector)}\n` +
    `  ingress:\n    - fromEndpoints: [${matchLabels(ingress.endpoints![0]!)}]\n` +
    `      toPorts: [{ports: [{port: "${port}", protocol: ${p.protocol}}]}]\n`
  );
}

/** The model of generate.ts as manifest files (path → content); rule0's port is `rule0Port`. */
export function manifestFiles(model: Model, rule0Port: number): Map<string, string> {
  const files = new Map<string, string[]>();
  const add = (path: string, text: string): void => void (files.get(path) ?? files.set(path, []).get(path)!).push(text);
  let remote = 0;
  for (const e of model.endpoints) {
    if (e.node === undefined) add("endpoints.yaml", endpointYaml(e));
    else add(`remote/r${String(Math.floor(remote++ / REMOTE_PER_FILE)).padStart(3, "0")}.yaml`, endpointYaml(e));
  }
  for (const r of model.rules) add(r.at.file, ruleYaml(r, r.name === "rule0" ? rule0Port : r.rule.ingress[0]!.ports![0]!.port));
  return new Map([...files].map(([p, parts]) => [p, parts.join("")]));
}

// Schema of `kind: Node`: a host running reconcile, its underlay address, tunnel and pod CIDRs.

import type { NodeManifest } from "./model.js";
import type { Field, Reader } from "./fields.js";

/** VXLAN defaults: VNI 2 (any explicit value 1..16777215 may be given), Linux' IANA port 8472 as Cilium uses. */
export const DEFAULT_VNI = 2;
export const DEFAULT_VXLAN_PORT = 8472;

export function readNode(r: Reader, doc: Field, name: string): NodeManifest | undefined {
  const before = r.errorCount();
  const spec = r.child(doc, "spec");
  if (r.mapping(spec, true) === undefined) return undefined;
  r.onlyKeys(spec, ["address", "tunnel", "podCIDRs"]);
  const address = r.ip(r.child(spec, "address"), true);

  let tunnel: NodeManifest["tunnel"];
  const t = r.child(spec, "tunnel");
  if (r.mapping(t) !== undefined) {
    r.onlyKeys(t, ["type", "vni", "port"]);
    const typeField = r.child(t, "type");
    const type = r.string(typeField) ?? "vxlan";
    if (type !== "vxlan") r.error(typeField, `unknown tunnel type (expected vxlan, got "${type}")`);
    const vni = r.child(t, "vni").value == null ? DEFAULT_VNI : r.int(r.child(t, "vni"), 1, 16777215);
    const port = r.child(t, "port").value == null ? DEFAULT_VXLAN_PORT : r.int(r.child(t, "port"), 1, 65535);
    if (vni !== undefined && port !== undefined) tunnel = { type: "vxlan", vni, port };
  }

  const podCIDRs: string[] = [];
  for (const c of r.list(r.child(spec, "podCIDRs")) ?? []) {
    const p = r.cidr(c, true);
    if (p !== undefined) podCIDRs.push(p.text);
  }
  if (r.errorCount() > before || address === undefined) return undefined;
  const n: NodeManifest = { kind: "Node", name, address, podCIDRs, at: { file: r.file, line: doc.line } };
  if (tunnel !== undefined) n.tunnel = tunnel;
  return n;
}

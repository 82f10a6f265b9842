// Schema of `kind: Node`: a host running reconcile, its underlay address, tunnel and pod CIDRs.

import type { NodeManifest } from "./model.js";
import { IFNAME_EXPECTED } from "./endpoint.js";
import { isIfName, type Field, type Reader } from "./fields.js";

/** VXLAN defaults: VNI 2 (any explicit value 1..16777215 may be given), Linux' IANA port 8472 as Cilium uses. */
export const DEFAULT_VNI = 2;
export const DEFAULT_VXLAN_PORT = 8472;

export function readNode(r: Reader, doc: Field, name: string): NodeManifest | undefined {
  const before = r.errorCount();
  const spec = r.child(doc, "spec");
  if (r.mapping(spec, true) === undefined) return undefined;
  r.onlyKeys(spec, ["address", "tunnel", "podCIDRs", "hostFirewall"]);
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
  // Host firewall devices: names of existing host devices (never created or changed by reconcile).
  let hostFirewall: NodeManifest["hostFirewall"];
  const hf = r.child(spec, "hostFirewall");
  if (r.mapping(hf) !== undefined) {
    r.onlyKeys(hf, ["devices"]);
    const devices: string[] = [];
    for (const d of r.list(r.child(hf, "devices"), true) ?? []) {
      const dev = r.formatted(d, isIfName, IFNAME_EXPECTED, true);
      if (dev === undefined) continue;
      if (devices.includes(dev)) r.error(d, `duplicate device (expected each device once, got ${dev} again)`);
      else devices.push(dev);
    }
    hostFirewall = { devices };
  }

  // metadata.labels were checked by the loader; read them again here as the node's labels.
  const labels = r.labelMap(r.child(r.child(doc, "metadata"), "labels"), "k8s") ?? [];
  if (r.errorCount() > before || address === undefined) return undefined;
  const n: NodeManifest = { kind: "Node", name, address, podCIDRs, labels, at: { file: r.file, line: doc.line } };
  if (tunnel !== undefined) n.tunnel = tunnel;
  if (hostFirewall !== undefined) n.hostFirewall = hostFirewall;
  return n;
}

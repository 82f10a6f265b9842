// Schema of `kind: CiliumCIDRGroup` (apiVersion cilium.io/v2alpha1 or cilium.io/v2): a named,
// labelled list of CIDRs that rules use through cidrGroupRef (by name) or cidrGroupSelector (by
// label) in fromCIDRSet / toCIDRSet. Cluster-scoped, as in Cilium.

import type { CIDRGroupManifest } from "./model.js";
import { parseCIDRLoose, type Field, type Reader } from "./fields.js";

export function readCIDRGroup(r: Reader, doc: Field, name: string): CIDRGroupManifest | undefined {
  const before = r.errorCount();
  const labels = r.labelMap(r.child(r.child(doc, "metadata"), "labels"), "k8s");
  const spec = r.child(doc, "spec");
  if (r.mapping(spec, true) === undefined) return undefined;
  r.onlyKeys(spec, ["externalCIDRs"]);
  const cidrs: string[] = [];
  for (const c of r.list(r.child(spec, "externalCIDRs"), true) ?? []) {
    const s = r.string(c, true);
    if (s === undefined) continue;
    // Cilium's CRD takes prefixes (a bare address is refused, as in a CIDR set).
    if (!s.includes("/")) {
      r.error(c, `invalid CIDR (expected a prefix like 192.0.2.0/24, got a bare address ${JSON.stringify(s)}; write ${s}/${s.includes(":") ? 128 : 32})`);
      continue;
    }
    const p = parseCIDRLoose(s);
    if (typeof p === "string") {
      r.error(c, p);
      continue;
    }
    if (p.hostBits) r.warn(c, `host bits set: read as the network ${p.prefix.text}`);
    if (!cidrs.includes(p.prefix.text)) cidrs.push(p.prefix.text);
  }
  if (r.errorCount() > before || labels === undefined) return undefined;
  return { kind: "CiliumCIDRGroup", name, labels, cidrs, at: { file: r.file, line: doc.line } };
}

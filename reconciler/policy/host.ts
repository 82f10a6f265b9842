// Host policies (Cilium's host firewall): rules with a nodeSelector. Their subject is the host
// endpoint of every node whose labels match; on the node reconcile compiles for, that is the local
// host (identity 1). Ingress sections govern traffic into the host, egress sections traffic from it,
// and a direction is in default deny once a host policy with that section selects the node.
//
// compile.ts and explain.ts both ask this file which host rules apply; each then evaluates them
// its own way (entries vs. one flow), like they do for endpoints.

import type { LabelSet, ManifestProblem, NodeManifest } from "../manifest/model.js";
import type { EffectiveRule, PolicyContext } from "./context.js";
import { matches, selectorString } from "./selector.js";

/**
 * Name of the local host endpoint wherever an endpoint name is used (compiled policy, desired
 * policy map, `inspect policy`). Not a DNS-1123 name, so no Endpoint manifest can take it.
 */
export const HOST_ENDPOINT = "reserved:host";

/** IPv4 gateway every created endpoint routes through: an address of every host-side veth. */
export const GATEWAY_V4 = "169.254.1.1";
/** IPv6 gateway: a link-local address on every host-side veth. */
export const GATEWAY_V6 = "fe80::1";

/** The gateway addresses. They belong to the host: where host policy applies, traffic between an
 *  endpoint and them is judged by the host's policy, although their identity (not in the ipcache)
 *  is world. */
export const HOST_GATEWAYS: readonly string[] = [GATEWAY_V4, GATEWAY_V6];

/** The local node's host endpoint, when host policy applies to it. */
export interface LocalHost {
  /** The local Node manifest. */
  node: NodeManifest;
  /** Its labels (what nodeSelectors match). */
  labels: LabelSet;
  /** Host policies whose nodeSelector matches the local node, in model order. */
  rules: EffectiveRule[];
}

/**
 * The local host endpoint, or undefined when the host is not subject to host policy: there is no
 * Node manifest for the local node, or it has no `spec.hostFirewall` and no host policy selects it.
 * (With a host firewall but no selecting rule the host endpoint exists and enforces nothing in the
 * default enforcement mode, as an endpoint that no rule selects.)
 */
export function localHost(ctx: PolicyContext): LocalHost | undefined {
  const node = ctx.model.nodes.find((n) => n.name === ctx.opts.node);
  if (node === undefined) return undefined;
  const labels = node.labels ?? [];
  const rules = ctx.hostRules.filter((r) => matches(r.subject, labels));
  if (rules.length === 0 && node.hostFirewall === undefined) return undefined;
  return { node, labels, rules };
}

/** A warning per host policy whose nodeSelector matches no Node manifest (it applies nowhere). */
export function hostRuleWarnings(ctx: PolicyContext): ManifestProblem[] {
  const out: ManifestProblem[] = [];
  for (const r of ctx.hostRules) {
    if (ctx.model.nodes.some((n) => matches(r.subject, n.labels ?? []))) continue;
    out.push({
      file: r.subject.at.file,
      line: r.subject.at.line,
      object: `Rule/${r.manifest.name}`,
      message: `nodeSelector ${selectorString(r.subject)} matches no Node (host policies select Nodes by their metadata.labels)`,
      severity: "warning",
    });
  }
  return out;
}

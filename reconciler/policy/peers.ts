// Peer parts that resolve against other objects of the model: CIDR set elements that name CIDR
// groups, and node selectors (fromNodes/toNodes). compile.ts and explain.ts both read peers
// through these (data resolution, not evaluation: each still decides verdicts its own way).

import type { CIDRSelector, Model, Selector } from "../manifest/model.js";
import { parsePrefix, prefixContains } from "../manifest/ip.js";
import { matches } from "./selector.js";
import { type CompileOptions, ReservedIdentity } from "./types.js";

/** A CIDR set element with its prefixes: its own cidr, or the prefixes of the CIDR groups it
 *  names (cidrGroupRef) or selects (cidrGroupSelector), each with the excepts that lie inside. */
export function expandCidr(model: Model, c: CIDRSelector): Array<{ cidr: string; except: string[] }> {
  if (c.cidr !== undefined) return [{ cidr: c.cidr, except: c.except }];
  const groups = (model.cidrGroups ?? []).filter((g) =>
    c.groupRef !== undefined ? g.name === c.groupRef : c.groupSelector !== undefined && matches(c.groupSelector, g.labels),
  );
  const out: Array<{ cidr: string; except: string[] }> = [];
  const seen = new Set<string>();
  for (const g of groups) {
    for (const cidr of g.cidrs) {
      if (seen.has(cidr)) continue;
      seen.add(cidr);
      const outer = parsePrefix(cidr);
      out.push({ cidr, except: c.except.filter((e) => prefixContains(outer, parsePrefix(e))) });
    }
  }
  return out;
}

/** Identities the node selectors of fromNodes/toNodes select: host (1) when the node compiled for
 *  matches, remote-node (6) when another Node matches (reconcile, like Cilium without per-node
 *  identities, gives every remote node the one remote-node identity). */
export function nodeSelectorIdentities(model: Model, opts: CompileOptions, sels: readonly Selector[]): number[] {
  const out = new Set<number>();
  for (const n of model.nodes) {
    if (!sels.some((s) => matches(s, n.labels ?? []))) continue;
    out.add(n.name === opts.node ? ReservedIdentity.host : ReservedIdentity.remoteNode);
  }
  return [...out].sort((a, b) => a - b);
}


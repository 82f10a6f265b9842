// What a policy entry's peer identity stands for, in the words of the manifests: the endpoint(s)
// that carry it, the entity (host, world, ...), the CIDR, or the label set. Plans, `inspect policy`
// and the daemon's change log show it beside the number.

import { labelSetString } from "./labels.js";
import { RESERVED_NAMES } from "./identity.js";
import type { CompiledPolicy } from "./types.js";

export interface Peer {
  /** any: identity 0, every peer (an L4-only rule); unknown: a number the manifests do not give. */
  kind: "any" | "endpoint" | "entity" | "cidr" | "labels" | "unknown";
  /** Endpoint names (sorted), the entity, the CIDR or the label set; empty for any and unknown. */
  names: string[];
}

/** identity → what it stands for. */
export type PeerNames = (identity: number) => Peer;

/** Cilium's entity names of the reserved identities. */
const ENTITIES: ReadonlyMap<number, string> = new Map(RESERVED_NAMES);

/**
 * The names behind each identity of a compiled revision. The endpoint index is built on the first
 * question (a cold plan at DESIGN scale renders a few hundred rows, not the 100k ipcache entries).
 */
export function peerNames(policy: Pick<CompiledPolicy, "identities" | "ipcache">): PeerNames {
  let endpoints: Map<number, string[]> | undefined;
  return (identity) => {
    if (identity === 0) return { kind: "any", names: [] };
    const entity = ENTITIES.get(identity);
    if (entity) return { kind: "entity", names: [entity] };
    endpoints ??= endpointsByIdentity(policy);
    const names = endpoints.get(identity);
    if (names) return { kind: "endpoint", names };
    const info = policy.identities.get(identity);
    if (info?.cidr) return { kind: "cidr", names: [info.cidr] };
    if (info) return { kind: "labels", names: [labelSetString(info.labels)] };
    return { kind: "unknown", names: [] };
  };
}

/** Endpoints (local and on other nodes) by identity, from the ipcache entries they put there. */
function endpointsByIdentity(policy: Pick<CompiledPolicy, "ipcache">): Map<number, string[]> {
  const out = new Map<number, Set<string>>();
  for (const e of policy.ipcache) {
    if (!e.ref?.startsWith("Endpoint/")) continue;
    let names = out.get(e.identity);
    if (!names) out.set(e.identity, (names = new Set()));
    names.add(e.ref.slice("Endpoint/".length));
  }
  return new Map([...out].map(([id, names]) => [id, [...names].sort()]));
}

/** How many endpoint names a row spells out before it says "and N more". */
const NAMES_SHOWN = 3;

/** "app2 (identity 36895)", "app2, app4 (identity 36895)", "world (identity 2)", "any peer (identity 0)". */
export function peerText(identity: number, peer: Peer): string {
  const shown = peer.names.slice(0, NAMES_SHOWN).join(", ");
  const more = peer.names.length > NAMES_SHOWN ? ` and ${peer.names.length - NAMES_SHOWN} more` : "";
  switch (peer.kind) {
    case "any":
      return "any peer (identity 0)";
    case "unknown":
      return `identity ${identity}`;
    default:
      return `${shown}${more} (identity ${identity})`;
  }
}

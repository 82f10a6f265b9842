// monitor's filters (--endpoint, --verdict, --from, --to, --port), checked once when parsed and then
// applied to each named event. All given filters must hold; a list (--verdict drop,audit) is any of.

import { parseAddress, parsePrefix, prefixContainsAddress, type Prefix } from "../manifest/ip.js";
import type { MonitorEvent } from "./event.js";

/** --verdict: DROP events, VERDICT allow or deny events, AUDIT events. */
export const VERDICT_FILTERS = ["drop", "allow", "deny", "audit"] as const;
export type VerdictFilter = (typeof VERDICT_FILTERS)[number];

/** One side of the flow: a name (endpoint, entity such as host or world, CIDR as the manifests name it) or an address range. */
export type SideFilter = { name: string } | { prefix: Prefix };

export interface EventFilter {
  endpoint?: string;
  verdicts?: VerdictFilter[];
  from?: SideFilter;
  to?: SideFilter;
  /** Destination port (ICMP: the type); protocol 0 = any protocol. */
  port?: { port: number; protocol: number };
}

export class FilterError extends Error {
  override name = "FilterError";
}

/** "drop" or "drop,audit" → the verdicts; anything else is an error naming what is accepted. */
export function parseVerdicts(text: string): VerdictFilter[] {
  const out: VerdictFilter[] = [];
  for (const v of text.split(",").map((s) => s.trim().toLowerCase())) {
    if (!(VERDICT_FILTERS as readonly string[]).includes(v)) throw new FilterError(`--verdict: expected one or more of ${VERDICT_FILTERS.join(", ")} (comma-separated), got ${JSON.stringify(v)}`);
    if (!out.includes(v as VerdictFilter)) out.push(v as VerdictFilter);
  }
  return out;
}

/** An address ("10.0.0.1"), a prefix ("10.0.0.0/8") or else a name. */
export function parseSide(text: string): SideFilter {
  if (text.includes("/")) {
    try {
      return { prefix: parsePrefix(text) };
    } catch {
      return { name: text }; // e.g. the CIDR name "cidr:10.0.0.0/8" is a name
    }
  }
  try {
    const { family } = parseAddress(text);
    return { prefix: parsePrefix(`${text}/${family === 4 ? 32 : 128}`) };
  } catch {
    return { name: text };
  }
}

function verdictOf(e: Pick<MonitorEvent, "type" | "verdict">): VerdictFilter {
  return e.type === "verdict" ? e.verdict : e.type;
}

/** The names of a side of the event: the endpoint on its own side of the policy, the peer's names on the other. */
function sideNames(e: MonitorEvent, side: "src" | "dst"): string[] {
  const endpointSide = e.direction === "ingress" ? "dst" : "src";
  return side === endpointSide ? (e.endpoint ? [e.endpoint] : []) : e.peer.names;
}

function sideMatches(f: SideFilter, e: MonitorEvent, side: "src" | "dst"): boolean {
  if ("name" in f) return sideNames(e, side).includes(f.name);
  try {
    const { family, addr } = parseAddress(e[side]);
    return prefixContainsAddress(f.prefix, family, addr);
  } catch {
    return false;
  }
}

export function matchesFilter(f: EventFilter, e: MonitorEvent): boolean {
  if (f.endpoint !== undefined && e.endpoint !== f.endpoint) return false;
  if (f.verdicts && !f.verdicts.includes(verdictOf(e))) return false;
  if (f.from && !sideMatches(f.from, e, "src")) return false;
  if (f.to && !sideMatches(f.to, e, "dst")) return false;
  if (f.port && (e.dport !== f.port.port || (f.port.protocol !== 0 && e.protocol !== f.port.protocol))) return false;
  return true;
}

// One event, one line: the text Cilium users know from `cilium monitor` (type, endpoint, reason,
// the 5-tuple), with names instead of numbers and the rule provenance at the end; or the JSON
// object (event.ts MonitorEvent), one a line.

import type { MonitorEvent } from "./event.js";
import { peerPhrase } from "./event.js";

/** The type column: DROP, AUDIT, and a verdict event's verdict (ALLOW, DENY). */
function typeWord(e: Pick<MonitorEvent, "type" | "verdict">): string {
  return e.type === "verdict" ? e.verdict.toUpperCase() : e.type.toUpperCase();
}

function endpointText(address: string, port: number, protocol: number): string {
  const hasPorts = protocol === 6 || protocol === 17 || protocol === 132;
  if (!hasPorts) return address;
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

/**
 * `12:00:01.123 DROP    app1 ingress reason Policy denied by default deny 10.11.90.17:43512 ->
 * 10.11.255.104:80 TCP from app2 (identity 36895): no rule allows {any:id=app2} on TCP/80 (…)`.
 * The time is UTC, as in the JSON.
 */
export function formatText(e: MonitorEvent): string {
  const icmp = e.protocol === 1 || e.protocol === 58;
  const parts = [
    e.time.slice(11, 23),
    typeWord(e).padEnd(7),
    e.endpoint || `endpoint ${e.epId}`,
    e.direction,
    ...(e.reasonName ? ["reason", e.reasonName] : []),
    `${endpointText(e.src, e.sport, e.protocol)} -> ${endpointText(e.dst, e.dport, e.protocol)}`,
    icmp ? `${e.protocolName} type ${e.dport}` : e.protocolName,
  ];
  const peer = peerPhrase(e);
  return `${parts.join(" ")} ${peer}${e.provenance ? `: ${e.provenance}` : ""}`;
}

export function formatJson(e: MonitorEvent): string {
  return JSON.stringify(e);
}

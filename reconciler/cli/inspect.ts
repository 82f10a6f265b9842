// `reconcile inspect …`: what the kernel holds now, read through the same targets the reconciler
// uses. With --source, names and provenance from the manifests are added (which rule, which file).

import type { KernelPort } from "../apply/port.js";
import { emptyDesired, isUndecodable, PolicyEntrySet, type ActualState, type DesiredState } from "../datapath/state.js";
import type { Compiled } from "../plan/snapshot-to-desired.js";
import { portBlockEnd, portText, protocolName } from "../plan/render.js";
import { peerNames, peerText, type Peer, type PeerNames } from "../policy/peer-names.js";
import type { Command, GlobalOptions } from "./args.js";
import type { Io } from "./io.js";

type InspectCommand = Extract<Command, { name: "inspect" }>;

export async function inspect(
  command: InspectCommand,
  kernel: KernelPort,
  io: Io,
  compile: (opts: GlobalOptions) => Promise<Compiled>,
): Promise<number> {
  const { opts } = command;
  const compiled = opts.source ? await compile(opts) : undefined;
  const desired: DesiredState = compiled?.desired ?? emptyDesired("", opts.node!);
  const actual = await kernel.targets.observe(desired);
  let rows: Array<Record<string, unknown>>;
  switch (command.what) {
    case "endpoints": {
      const names = new Map([...desired.endpoints.values()].map((e) => [e.address, e.endpoint]));
      rows = [...actual.endpoints.values()].map((e) => (isUndecodable(e) ? { ...e } : { ...e, endpoint: names.get(e.address) ?? "" }));
      break;
    }
    case "ipcache":
      rows = [...actual.ipcache.values()].map((e) => ({ ...e }));
      break;
    case "devices":
      rows = [...actual.devices.values()].map((d) => ({ ...d }));
      break;
    case "links":
      rows = links(actual, kernel);
      break;
    case "policy":
      rows = policyRows(command.endpoint!, actual.policy, desired, kernel, compiled && peerNames(compiled.policy));
      if (command.sort === "hits") rows = byHits(rows);
      break;
    case "drops":
      rows = dropRows(actual, desired, kernel);
      break;
  }
  if (opts.output === "json") io.stdout.write(JSON.stringify(rows, null, 2) + "\n");
  else io.stdout.write(table(command.what === "policy" ? rows.map(policyTextRow) : rows));
  return 0;
}

/**
 * Every program on each hook that carries one of reconcile's programs, in the order the kernel runs
 * them (`order` 0 runs first): ours (owner reconcile) and foreign ones (owner foreign: reported,
 * never touched; one ahead of ours that returns pass bypasses the policy). tc-mode attachments
 * (cls_bpf filters) are listed as they are, without an order.
 */
function links(actual: ActualState, kernel: KernelPort): Array<Record<string, unknown>> {
  const rows: Array<Record<string, unknown>> = [];
  const ours = new Map([...actual.attachments.values()].map((a) => [`${a.netns ?? ""}/${a.device}/${a.hook}`, a]));
  for (const c of kernel.tcxChains()) {
    const a = ours.get(`${c.netns ?? ""}/${c.device}/${c.hook}`);
    c.programs.forEach((p, order) => {
      rows.push({
        device: c.device,
        ...(c.netns ? { netns: c.netns } : {}),
        hook: c.hook,
        order,
        progId: p.progId,
        program: p.owner === "reconcile" && a ? a.program : p.program,
        ...(p.owner === "reconcile" && a?.tag ? { tag: a.tag } : {}),
        mode: "tcx",
        owner: p.owner,
      });
    });
  }
  for (const a of actual.attachments.values()) if (a.mode === "tc") rows.push({ ...a, owner: "reconcile" });
  return rows;
}

/**
 * The entries of one endpoint's policy map as the kernel holds them, with their hit counters, the
 * rules behind them and (with --source) what each peer identity stands for.
 */
export function policyRows(
  endpoint: string,
  entries: DesiredState["policy"] | ActualState["policy"],
  desired: DesiredState,
  kernel: Pick<KernelPort, "policyStats" | "drops">,
  peers: PeerNames | undefined,
): Array<Record<string, unknown>> {
  const epId = [...desired.endpoints.values()].find((e) => e.endpoint === endpoint)?.endpointId;
  const stats = epId === undefined ? new Map<number, { packets: bigint; bytes: bigint }>() : kernel.policyStats(epId);
  const drops = epId === undefined ? [] : kernel.drops(epId).map((d) => ({ drops: d.reason, direction: d.direction, packets: Number(d.packets), bytes: Number(d.bytes) }));
  const rows: Array<Record<string, unknown>> = [];
  const observed = entries.get(endpoint) ?? PolicyEntrySet.EMPTY;
  const wanted = desired.policy.get(endpoint) ?? PolicyEntrySet.EMPTY;
  for (let i = 0; i < observed.size; i++) {
    const key = observed.key(i);
    const e = observed.entry(i, endpoint);
    const at = wanted.indexOf(key);
    const rules = at < 0 ? [] : wanted.entry(at, endpoint).rules;
    const s = stats.get(key);
    rows.push({
      direction: e.direction,
      identity: e.identity,
      protocol: e.protocol,
      port: e.port,
      portPrefixLen: e.portPrefixLen,
      decision: e.decision,
      protocolName: protocolName(e.protocol),
      endPort: portBlockEnd(e.port, e.portPrefixLen),
      ports: portText(e.protocol, e.port, e.portPrefixLen),
      ...(peers ? { peer: peers(e.identity) } : {}),
      packets: Number(s?.packets ?? 0n),
      bytes: Number(s?.bytes ?? 0n),
      rules: rules.map((r) => `${r.name} (${r.file}:${r.line})`).join(", "),
      revision: desired.revision,
    });
  }
  if (observed.unreadable) rows.push({ undecodable: observed.unreadable, note: "entries no policy key names (written by someone else): the next run rebuilds this map" });
  for (const d of drops) rows.push(d);
  return rows;
}

/** The entries that matched the most packets first (then bytes; ties keep the map's order); other rows after them. */
function byHits(rows: Array<Record<string, unknown>>): Array<Record<string, unknown>> {
  const entries = rows.filter((r) => r.identity !== undefined);
  const others = rows.filter((r) => r.identity === undefined);
  const n = (v: unknown) => (typeof v === "number" ? v : 0);
  entries.sort((a, b) => n(b.packets) - n(a.packets) || n(b.bytes) - n(a.bytes));
  return [...entries, ...others];
}

/**
 * `inspect drops`: every endpoint's drop counters (the drops map), one row per endpoint, direction
 * and reason that dropped anything. The endpoint's name comes from --source, else from nothing: its id.
 */
function dropRows(actual: ActualState, desired: DesiredState, kernel: Pick<KernelPort, "drops">): Array<Record<string, unknown>> {
  const names = new Map([...desired.endpoints.values()].map((e) => [e.endpointId, e.endpoint]));
  const ids = new Set<number>();
  for (const e of actual.endpoints.values()) if (!isUndecodable(e)) ids.add(e.endpointId);
  const rows: Array<Record<string, unknown>> = [];
  for (const epId of [...ids].sort((a, b) => a - b)) {
    for (const d of kernel.drops(epId)) {
      rows.push({ endpoint: names.get(epId) ?? "", epId, direction: d.direction, reason: d.reason, packets: Number(d.packets), bytes: Number(d.bytes) });
    }
  }
  return rows;
}

/** A policy row as the text table shows it: the key in words, the peer's names beside its number. */
function policyTextRow(r: Record<string, unknown>): Record<string, unknown> {
  if (r.identity === undefined) return r; // undecodable entries, drop counters
  const peer = r.peer as Peer | undefined;
  return {
    direction: r.direction,
    decision: r.decision,
    ports: r.ports,
    peer: peer ? peerText(r.identity as number, peer).replace(/ \(identity \d+\)$|^identity \d+$/, "") || "-" : "",
    identity: r.identity,
    packets: r.packets,
    bytes: r.bytes,
    rules: r.rules,
    revision: r.revision,
  };
}

function table(rows: Array<Record<string, unknown>>): string {
  if (rows.length === 0) return "(none)\n";
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: unknown) => (v === undefined || v === null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(cols.map((c) => c.toUpperCase())), ...rows.map((r) => line(cols.map((c) => cell(r[c]))))].join("\n") + "\n";
}


// SPDX-License-Identifier: Apache-2.0
// What one packet costs the programs (issue 16, part 2): BPF_PROG_RUN ns/packet of endpoint.o for
// an allowed packet of an established flow (its verdict cached in conntrack, and judged in full
// with the policy revision at 0), a denied packet and a conntrack reply, with 10 and with
// 16,000 policy entries on the endpoint, and with a host endpoint that enforces (a host policy
// exists) or none. Baseline in the same run: an IP packet between two addresses that are no
// endpoint (parse, one endpoints lookup, pass): the floor of running the program at all.
// Every datapath is its own private pin root; rounds are interleaved and the order rotates.
//
// Run (root): node --import tsx test/bench/packet.bench.ts [--rounds=9] [--repeat=100000]
// The pin roots are /sys/fs/bpf/test-dp-* (the kernel tests' Datapath), removed at the end.

import { loadavg } from "node:os";
import { Datapath, tcp, v4, type RuleDef } from "../kernel/helpers/datapath.js";
import { IDENTITY_HOST } from "../../reconciler/datapath/layouts.js";
import { median, medianRange, printTable, Results, Samples, whole as fmt } from "./table.js";

const arg = (name: string, dflt: number): number => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? dflt);
const ROUNDS = arg("rounds", 9);
const REPEAT = arg("repeat", 100_000);

const APP = "10.11.255.104"; // endpoint 1, identity 1001, ingress enforced
const PEER = "10.11.90.17"; // identity 36895, allowed on TCP/80
const HOST = "10.11.0.1"; // the host endpoint, when there is one
const TCP = 6;
const SYN = 0x02;
const ACK = 0x10;
const toApp = (sport: number, dport: number, flags = ACK) => v4({ src: PEER, dst: APP, proto: TCP }, tcp(sport, dport, flags));
const fromApp = (sport: number, dport: number) => v4({ src: APP, dst: PEER, proto: TCP }, tcp(sport, dport, ACK));
const elsewhere = v4({ src: "192.0.2.1", dst: "192.0.2.2", proto: TCP }, tcp(1, 2, ACK));


interface Variant {
  name: string;
  entries: number;
  hostPolicy: boolean;
}
const VARIANTS: Variant[] = [
  { name: "10 entries", entries: 10, hostPolicy: false },
  { name: "16,000 entries", entries: 16_000, hostPolicy: false },
  { name: "10 entries, host policy", entries: 10, hostPolicy: true },
  { name: "16,000 entries, host policy", entries: 16_000, hostPolicy: true },
];
const PACKETS = ["no endpoint (floor)", "allowed, established", "allowed, established, uncached", "denied", "conntrack reply"] as const;
type Packet = (typeof PACKETS)[number];

/** app1's ingress: allow the peer on TCP/80, deny TCP/25 from all, and filler entries (other
 *  identities' ports) up to `entries`. A host endpoint with a policy in both directions if asked. */
function datapath(v: Variant): Datapath {
  const dp = new Datapath();
  // EP_HOST_POLICY on the endpoint exactly when a host endpoint enforces, as reconcile writes it.
  dp.addEndpoint({ addresses: [APP], epId: 1, identity: 1001, enforceIngress: true, enforceEgress: false, hostPolicy: v.hostPolicy });
  dp.addIpcache(`${APP}/32`, 1001);
  dp.addIpcache(`${PEER}/32`, 36895);
  const rules: RuleDef[] = [
    { direction: "ingress", identity: 36895, protocol: TCP, port: 80, portPrefixLen: 16, decision: "allow" },
    { direction: "ingress", identity: 0, protocol: TCP, port: 25, portPrefixLen: 16, decision: "deny" },
  ];
  for (let i = 0; rules.length < v.entries; i++) rules.push({ direction: "ingress", identity: 200_000 + (i >> 4), protocol: TCP, port: 1000 + (i & 15), portPrefixLen: 16, decision: "allow" });
  dp.addRules(1, rules);
  if (v.hostPolicy) {
    dp.addEndpoint({ addresses: [HOST], epId: 2, identity: IDENTITY_HOST, enforceIngress: true, enforceEgress: true });
    dp.addRules(2, [{ direction: "ingress", identity: 1001, protocol: TCP, port: 22, portPrefixLen: 16, decision: "allow" }]);
  }
  return dp;
}

/** The policy revision (undefined: an object without the verdict cache's policy_rev map). */
function policyRev(dp: Datapath): number | undefined {
  return dp.coll.maps.get("policy_rev")?.lookup(Buffer.alloc(4))?.readUInt32LE(0);
}
function setPolicyRev(dp: Datapath, rev: number): void {
  const v = Buffer.alloc(4);
  v.writeUInt32LE(rev, 0);
  dp.coll.maps.get("policy_rev")!.update(Buffer.alloc(4), v);
}

function main(): void {
  const results = new Results();
  const paths = new Map<string, Datapath>();
  const samples = new Samples();
  const add = (v: string, p: Packet, ns: number) => samples.add(`${v}|${p}`, ns);
  const loads = [loadavg()[0]!.toFixed(2)];
  try {
    for (const v of VARIANTS) paths.set(v.name, datapath(v));
    for (let round = 0; round < ROUNDS; round++) {
      const order = VARIANTS.map((_, i) => VARIANTS[(i + round) % VARIANTS.length]!);
      for (const v of order) {
        const dp = paths.get(v.name)!;
        const to = dp.coll.programs.get("to_endpoint")!;
        const from = dp.coll.programs.get("from_endpoint")!;
        const ns = (prog: typeof to, frame: Buffer, want: number) => {
          const r = prog.testRun({ data: frame, repeat: REPEAT });
          if (r.retval !== want) throw new Error(`${v.name}: expected verdict ${want}, the program returned ${r.retval}`);
          return r.durationNs;
        };
        dp.clearConntrack();
        if (dp.run("to_endpoint", toApp(5000, 80, SYN)) !== 0) throw new Error(`${v.name}: the allowed flow was not admitted`);
        add(v.name, "no endpoint (floor)", ns(to, elsewhere, 0));
        add(v.name, "allowed, established", ns(to, toApp(5000, 80), 0));
        // The same packet judged in full: policy_rev 0 makes no cached verdict current (where the
        // object has no verdict cache, this is the same path as the row above).
        const rev = policyRev(dp);
        if (rev !== undefined) setPolicyRev(dp, 0);
        add(v.name, "allowed, established, uncached", ns(to, toApp(5000, 80), 0));
        if (rev !== undefined) setPolicyRev(dp, rev);
        add(v.name, "denied", ns(to, toApp(6000, 25, SYN), 2));
        add(v.name, "conntrack reply", ns(from, fromApp(80, 5000), 0));
      }
      loads.push(loadavg()[0]!.toFixed(2));
    }
  } finally {
    for (const dp of paths.values()) dp.close();
  }

  console.log(`\nBPF_PROG_RUN ns/packet (repeat ${REPEAT.toLocaleString("en")}), ${ROUNDS} interleaved rounds; median (min–max); load ${loads.join(" → ")}`);
  const stat = (v: string, p: Packet) => samples.get(`${v}|${p}`);
  printTable(
    [{ title: "packet" }, ...VARIANTS.map((v) => ({ title: v.name, align: "right" as const }))],
    PACKETS.map((p) => [p, ...VARIANTS.map((v) => medianRange(stat(v.name, p)))]),
  );
  const overFloor = (v: string, p: Packet) => median(stat(v, p).map((x, i) => x - stat(v, "no endpoint (floor)")[i]!));
  const ratio = (a: string, b: string, p: Packet) => median(stat(a, p).map((x, i) => x / stat(b, p)[i]!));
  for (const p of PACKETS.slice(1)) results.row(`${p}: ns over the floor, 10 / 16,000 entries`, `${fmt(overFloor("10 entries", p))} / ${fmt(overFloor("16,000 entries", p))}`, "(info)");
  results.row("allowed, established: 16,000 ÷ 10 entries", ratio("16,000 entries", "10 entries", "allowed, established").toFixed(3), "(info: cached, no policy trie lookup)");
  results.row("allowed, established, uncached: 16,000 ÷ 10 entries", ratio("16,000 entries", "10 entries", "allowed, established, uncached").toFixed(3), "(info: the ipcache and policy tries are the same lookups, the policy trie is deeper)");
  const cachedOverFull = (v: string) => median(stat(v, "allowed, established").map((x, i) => x / stat(v, "allowed, established, uncached")[i]!));
  for (const v of ["10 entries", "16,000 entries"]) results.row(`allowed, established: cached ÷ uncached (${v})`, cachedOverFull(v).toFixed(3), "(info)");
  results.row("allowed, established: with a host policy ÷ without (10 entries; only the first looks the peer up as a host address)", ratio("10 entries, host policy", "10 entries", "allowed, established").toFixed(3), "(info)");
  console.log("\nResults");
  results.print();
}

main();

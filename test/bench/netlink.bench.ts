// SPDX-License-Identifier: Apache-2.0
// rtnetlink through reconciler/netlink vs iproute2 doing the same work:
//   1. create N veth pairs (API, one request each) vs `ip -batch` (one process, one request each);
//   2. add R routes (API vs `ip -batch`);
//   3. dump all links and all routes (API vs `ip -j ... show` incl. JSON.parse), median of 5.
// Run: node --import tsx test/bench/netlink.bench.ts [pairs=200] [routes=10000]
// (root; works only in private namespaces "nl-bench-*", deleted at the end even on failure.)
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import {
  addrAdd, createNetns, deleteNetns, linkCreate, linkIndex, linkList, linkSetUp, openRoute, routeAdd, routeList, constants as C,
} from "../../reconciler/netlink/index.js";
import { formatRow, type Column } from "./table.js";

const PAIRS = Number(process.argv[2] ?? 200);
const ROUTES = Number(process.argv[3] ?? 10_000);
const tag = randomBytes(3).toString("hex");
const nsApi = `nl-bench-a-${tag}`;
const nsIp = `nl-bench-i-${tag}`;
const dir = mkdtempSync(join(tmpdir(), "nl-bench-"));

function ms(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function median(fn: () => void, runs = 5): number {
  const xs = Array.from({ length: runs }, () => ms(fn)).sort((a, b) => a - b);
  return xs[Math.floor(runs / 2)]!;
}

/** Rows print as each measurement ends, so the widths are fixed. */
const COLUMNS: Column[] = [{ width: 34 }, { align: "right", width: 15 }, { align: "right", width: 14 }, { align: "right", width: 14 }];

function row(label: string, ours: number, theirs: number, unit: string): void {
  console.log(formatRow(COLUMNS, [label, `api ${ours.toFixed(1)} ms`, `ip ${theirs.toFixed(1)} ms`, `ip/api ${(theirs / ours).toFixed(2)}x`, `(${unit})`]));
}

function ipBatch(ns: string, lines: string[]): void {
  const f = join(dir, `batch-${ns}.txt`);
  writeFileSync(f, lines.join("\n") + "\n");
  execFileSync("ip", ["-n", ns, "-batch", f]);
}

const vethName = (i: number) => `bv${i}`;
const peerName = (i: number) => `bp${i}`;
const routeDst = (i: number) => `10.${100 + (i >> 8)}.${i & 255}.0/24`;

try {
  createNetns(nsApi);
  createNetns(nsIp);
  const s = openRoute(nsApi);
  const si = openRoute(nsIp);

  const apiLinks = ms(() => {
    for (let i = 0; i < PAIRS; i++) linkCreate(s, { kind: "veth", name: vethName(i), peer: { name: peerName(i) } });
  });
  const ipLinks = ms(() => ipBatch(nsIp, Array.from({ length: PAIRS }, (_, i) => `link add ${vethName(i)} type veth peer name ${peerName(i)}`)));
  console.log(`netlink bench: ${PAIRS} veth pairs, ${ROUTES} routes (kernel ${execFileSync("uname", ["-r"]).toString().trim()})`);
  row(`create ${PAIRS} veth pairs`, apiLinks, ipLinks, `${(apiLinks * 1000 / PAIRS).toFixed(0)} us/pair api`);

  for (const [sock, ns] of [[s, nsApi], [si, nsIp]] as const) {
    linkSetUp(sock, "bv0");
    linkSetUp(sock, "bp0");
    addrAdd(sock, "bv0", "10.0.0.1/16");
    void ns;
  }
  // Half the routes name the device (one extra RTM_GETLINK each to resolve it), half pass the
  // ifindex as an applier that knows its device would (ip -batch resolves the name once, cached).
  const half = ROUTES >> 1;
  const apiRoutesByName = ms(() => {
    for (let i = 0; i < half; i++) routeAdd(s, { dst: routeDst(i), dev: "bv0" });
  });
  const bv0 = linkIndex(s, "bv0");
  const apiRoutesByIndex = ms(() => {
    for (let i = half; i < ROUTES; i++) routeAdd(s, { dst: routeDst(i), dev: bv0 });
  });
  const ipRoutes = ms(() => ipBatch(nsIp, Array.from({ length: ROUTES }, (_, i) => `route add ${routeDst(i)} dev bv0`)));
  row(`add ${half} routes, dev by name`, apiRoutesByName, ipRoutes / 2, `${(apiRoutesByName * 1000 / half).toFixed(1)} us/route api; ip: half of its ${ROUTES}-route batch`);
  row(`add ${ROUTES - half} routes, dev by index`, apiRoutesByIndex, ipRoutes / 2, `${(apiRoutesByIndex * 1000 / (ROUTES - half)).toFixed(1)} us/route api`);

  let nLinks = 0;
  let nIpLinks = 0;
  const apiDumpLinks = median(() => { nLinks = linkList(s).length; });
  const ipDumpLinks = median(() => { nIpLinks = JSON.parse(execFileSync("ip", ["-j", "-n", nsIp, "link", "show"], { maxBuffer: 1 << 28 }).toString()).length; });
  if (nLinks !== nIpLinks) throw new Error(`link count differs: api ${nLinks}, ip ${nIpLinks}`);
  row(`dump ${nLinks} links`, apiDumpLinks, ipDumpLinks, "median of 5");

  let nRoutes = 0;
  let nIpRoutes = 0;
  const apiDumpRoutes = median(() => { nRoutes = routeList(s, { table: C.RT_TABLE_MAIN, family: C.AF_INET }).length; });
  const ipDumpRoutes = median(() => {
    nIpRoutes = JSON.parse(execFileSync("ip", ["-j", "-n", nsIp, "-4", "route", "show", "table", "main"], { maxBuffer: 1 << 28 }).toString()).length;
  });
  if (nRoutes !== nIpRoutes) throw new Error(`route count differs: api ${nRoutes}, ip ${nIpRoutes}`);
  row(`dump ${nRoutes} routes (main, v4)`, apiDumpRoutes, ipDumpRoutes, "median of 5");
  s.close();
  si.close();
} finally {
  deleteNetns(nsApi);
  deleteNetns(nsIp);
  rmSync(dir, { recursive: true, force: true });
}

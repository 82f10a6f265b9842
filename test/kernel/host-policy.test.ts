// The host endpoint (host policies) in bpf/build/endpoint.o through BPF_PROG_RUN, with maps filled
// through reconciler/datapath/layouts.ts in a private pin dir (test/kernel/helpers/datapath.ts).
//
// Cast: the host (192.0.2.11, ep 65536, identity 1) enforces ingress and egress: ingress allows
// TCP/8080 from app2 and TCP/22 from remote nodes; egress allows TCP/80 to app1 and TCP/443 to
// remote nodes. app1 (10.11.0.1, ep 1, identity 1001) and app2 (10.11.0.2, ep 2, identity 1002)
// enforce nothing themselves; their entries carry EP_HOST_POLICY, as reconcile writes them while the
// host endpoint enforces. 192.0.2.12 is a remote node (identity 6), 203.0.113.9 the world.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as L from "../../reconciler/datapath/layouts.js";
import { HOST_ENDPOINT_ID } from "../../reconciler/datapath/desired.js";
import { Datapath, TC_ACT_OK, TC_ACT_SHOT, tcp, v4, v6 } from "./helpers/datapath.js";

const HOST = "192.0.2.11";
const HOST_6 = "2001:db8::11";
const REMOTE_NODE_6 = "2001:db8::12";
const REMOTE_NODE = "192.0.2.12";
const WORLD = "203.0.113.9";
const APP1 = "10.11.0.1";
const APP2 = "10.11.0.2";
const TCP = 6;
const SYN = 0x02;
const SYNACK = 0x12;

let dp: Datapath;

before(() => {
  dp = new Datapath();
  dp.addEndpoint({ addresses: [APP1], epId: 1, identity: 1001, enforceIngress: false, enforceEgress: false, hostPolicy: true });
  dp.addEndpoint({ addresses: [APP2], epId: 2, identity: 1002, enforceIngress: false, enforceEgress: false, hostPolicy: true });
  dp.addEndpoint({ addresses: [HOST, HOST_6], epId: HOST_ENDPOINT_ID, identity: 1, enforceIngress: true, enforceEgress: true });
  dp.addIpcache(`${REMOTE_NODE_6}/128`, 6);
  dp.addIpcache(`${APP1}/32`, 1001);
  dp.addIpcache(`${APP2}/32`, 1002);
  dp.addIpcache(`${HOST}/32`, 1);
  dp.addIpcache(`${REMOTE_NODE}/32`, 6);
  dp.addRules(HOST_ENDPOINT_ID, [
    { direction: "ingress", identity: 1002, protocol: TCP, port: 8080, portPrefixLen: 16, decision: "allow" },
    { direction: "ingress", identity: 6, protocol: TCP, port: 22, portPrefixLen: 16, decision: "allow" },
    { direction: "egress", identity: 1001, protocol: TCP, port: 80, portPrefixLen: 16, decision: "allow" },
    { direction: "egress", identity: 6, protocol: TCP, port: 443, portPrefixLen: 16, decision: "allow" },
  ]);
});
after(() => dp?.close());

type Prog = "to_endpoint" | "from_endpoint" | "from_netdev" | "to_netdev";
const run = (prog: Prog, frame: Buffer): number => dp.coll.programs.get(prog)!.testRun({ data: frame }).retval;
const pkt = (src: string, sport: number, dst: string, dport: number, flags = SYN) => v4({ src, dst, proto: TCP }, tcp(sport, dport, flags));
const hostDrops = (dir: "ingress" | "egress") => dp.drops(HOST_ENDPOINT_ID, L.DropReason.NO_POLICY, dir);

test("endpoint -> host: the host's ingress policy applies in from_endpoint, with the endpoint's identity as peer", () => {
  assert.equal(run("from_endpoint", pkt(APP2, 40000, HOST, 8080)), TC_ACT_OK, "app2 may reach the host on TCP/8080");
  const before = hostDrops("ingress");
  assert.equal(run("from_endpoint", pkt(APP1, 40001, HOST, 8080)), TC_ACT_SHOT, "app1 may not");
  assert.equal(run("from_endpoint", pkt(APP2, 40002, HOST, 8081)), TC_ACT_SHOT, "nor app2 on another port");
  assert.equal(hostDrops("ingress"), before + 2n, "counted as the host's ingress NO_POLICY drops");
  // The host's reply passes to_endpoint as a reply, although the host may not open TCP to app2.
  assert.equal(run("to_endpoint", pkt(HOST, 8080, APP2, 40000, SYNACK)), TC_ACT_OK);
  assert.equal(run("to_endpoint", pkt(HOST, 8080, APP2, 40009)), TC_ACT_SHOT, "a new connection from the host to app2 is not a reply");
});

test("host -> endpoint: the host's egress policy applies in to_endpoint; the endpoint's reply passes", () => {
  assert.equal(run("to_endpoint", pkt(HOST, 50000, APP1, 80)), TC_ACT_OK);
  const before = hostDrops("egress");
  assert.equal(run("to_endpoint", pkt(HOST, 50001, APP2, 80)), TC_ACT_SHOT);
  assert.equal(hostDrops("egress"), before + 1n);
  assert.equal(run("from_endpoint", pkt(APP1, 80, HOST, 50000, SYNACK)), TC_ACT_OK, "reply to the host's connection");
});

test("endpoint <-> endpoint is not affected by the host's default deny", () => {
  assert.equal(run("from_endpoint", pkt(APP1, 40100, APP2, 9999)), TC_ACT_OK);
  assert.equal(run("to_endpoint", pkt(APP1, 40100, APP2, 9999)), TC_ACT_OK);
});

test("from_netdev: traffic into the host is judged by its ingress policy; traffic for endpoints passes untouched", () => {
  assert.equal(run("from_netdev", pkt(REMOTE_NODE, 41000, HOST, 22)), TC_ACT_OK, "remote node may ssh");
  assert.equal(run("from_netdev", pkt(WORLD, 41001, HOST, 22)), TC_ACT_SHOT, "the world may not");
  assert.equal(run("from_netdev", pkt(REMOTE_NODE, 41002, HOST, 8080)), TC_ACT_SHOT);
  assert.equal(run("from_netdev", pkt(WORLD, 41003, APP1, 8080)), TC_ACT_OK, "forwarded to an endpoint: its programs judge it");
  assert.equal(run("from_netdev", pkt(WORLD, 41004, "198.51.100.1", 1)), TC_ACT_OK, "neither host nor endpoint");
});

test("to_netdev: traffic out of the host is judged by its egress policy; replies to it come back in", () => {
  assert.equal(run("to_netdev", pkt(HOST, 42000, REMOTE_NODE, 443)), TC_ACT_OK);
  assert.equal(run("to_netdev", pkt(HOST, 42001, WORLD, 443)), TC_ACT_SHOT);
  assert.equal(run("from_netdev", pkt(REMOTE_NODE, 443, HOST, 42000, SYNACK)), TC_ACT_OK, "reply to the host's own connection");
  assert.equal(run("from_netdev", pkt(REMOTE_NODE, 443, HOST, 42999, SYNACK)), TC_ACT_SHOT, "no such connection: not a reply");
  // Replies of connections the host accepted leave through to_netdev.
  assert.equal(run("from_netdev", pkt(REMOTE_NODE, 41500, HOST, 22)), TC_ACT_OK);
  assert.equal(run("to_netdev", pkt(HOST, 22, REMOTE_NODE, 41500, SYNACK)), TC_ACT_OK);
  assert.equal(run("to_netdev", pkt(APP1, 1234, WORLD, 443)), TC_ACT_OK, "forwarded from an endpoint: not the host's");
});

test("IPv6: a host address judged the same way on a host device", () => {
  const p6 = (src: string, sport: number, dst: string, dport: number, flags = SYN) => v6({ src, dst, proto: TCP }, tcp(sport, dport, flags));
  assert.equal(run("from_netdev", p6(REMOTE_NODE_6, 45000, HOST_6, 22)), TC_ACT_OK);
  assert.equal(run("from_netdev", p6(REMOTE_NODE_6, 45001, HOST_6, 23)), TC_ACT_SHOT);
  assert.equal(run("to_netdev", p6(HOST_6, 22, REMOTE_NODE_6, 45000, SYNACK)), TC_ACT_OK, "reply");
  assert.equal(run("to_netdev", p6(HOST_6, 45002, REMOTE_NODE_6, 443)), TC_ACT_OK);
  assert.equal(run("to_netdev", p6(HOST_6, 45003, "2001:db8::99", 443)), TC_ACT_SHOT, "the world is not allowed");
});

test("an endpoint entry is not the host on a host device, and a host entry is not an endpoint on an endpoint device", () => {
  // from_netdev never judges a packet for an endpoint address (app1's egress/ingress are its programs' job)...
  dp.addEndpoint({ addresses: [APP1], epId: 1, identity: 1001, enforceIngress: true, enforceEgress: true, hostPolicy: true });
  try {
    assert.equal(run("from_netdev", pkt(WORLD, 43000, APP1, 7)), TC_ACT_OK);
    assert.equal(run("to_endpoint", pkt(WORLD, 43000, APP1, 7)), TC_ACT_SHOT, "to_endpoint does judge it");
  } finally {
    dp.addEndpoint({ addresses: [APP1], epId: 1, identity: 1001, enforceIngress: false, enforceEgress: false, hostPolicy: true });
  }
  // ... and to_endpoint with the host address as destination passes as before host policies.
  assert.equal(run("to_endpoint", pkt(WORLD, 43001, HOST, 7)), TC_ACT_OK);
});

test("a host that enforces nothing lets everything through (host policy not selecting the node)", () => {
  dp.addEndpoint({ addresses: [HOST], epId: HOST_ENDPOINT_ID, identity: 1, enforceIngress: false, enforceEgress: false });
  try {
    assert.equal(run("from_netdev", pkt(WORLD, 44000, HOST, 9)), TC_ACT_OK);
    assert.equal(run("from_endpoint", pkt(APP1, 44001, HOST, 9)), TC_ACT_OK);
    assert.equal(run("to_endpoint", pkt(HOST, 44002, APP2, 9)), TC_ACT_OK);
    assert.equal(run("to_netdev", pkt(HOST, 44003, WORLD, 9)), TC_ACT_OK);
  } finally {
    dp.addEndpoint({ addresses: [HOST], epId: HOST_ENDPOINT_ID, identity: 1, enforceIngress: true, enforceEgress: true });
  }
});

test("without EP_HOST_POLICY on the endpoint's entry the endpoint programs make no host-policy check; with it, the same packets are judged by the host's policy", () => {
  // The host endpoint still enforces, but app1's entry says no host policy applies (what reconcile
  // writes when none enforces): no host lookup, so packets between app1 and the host pass untouched.
  dp.addEndpoint({ addresses: [APP1], epId: 1, identity: 1001, enforceIngress: false, enforceEgress: false, hostPolicy: false });
  const ingressBefore = hostDrops("ingress");
  const egressBefore = hostDrops("egress");
  try {
    assert.equal(run("from_endpoint", pkt(APP1, 46000, HOST, 8080)), TC_ACT_OK, "app1 -> host: the host's ingress is not consulted");
    assert.equal(run("to_endpoint", pkt(HOST, 46001, APP1, 443)), TC_ACT_OK, "host -> app1: the host's egress is not consulted");
    assert.equal(hostDrops("ingress"), ingressBefore);
    assert.equal(hostDrops("egress"), egressBefore);
  } finally {
    dp.addEndpoint({ addresses: [APP1], epId: 1, identity: 1001, enforceIngress: false, enforceEgress: false, hostPolicy: true });
  }
  // Flag back: the host's policy applies again to new flows.
  assert.equal(run("from_endpoint", pkt(APP1, 46002, HOST, 8080)), TC_ACT_SHOT, "app1 may not reach the host on TCP/8080");
  assert.equal(run("to_endpoint", pkt(HOST, 46003, APP1, 443)), TC_ACT_SHOT, "the host may only reach app1 on TCP/80");
  assert.equal(hostDrops("ingress"), ingressBefore + 1n);
  assert.equal(hostDrops("egress"), egressBefore + 1n);
  // The host firewall programs do not depend on the flag (they judge the host's own entries).
  assert.equal(run("from_netdev", pkt(WORLD, 46004, HOST, 22)), TC_ACT_SHOT);
});

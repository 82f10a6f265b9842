import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { addrAdd, linkCreate, linkDelete, openRoute, subscribe, type NetlinkEvent } from "../../reconciler/netlink/index.js";
import { makeNetns, run } from "./helpers/netlink.js";

async function waitFor(events: NetlinkEvent[], pred: (e: NetlinkEvent) => boolean, ms = 2000): Promise<NetlinkEvent> {
  const end = Date.now() + ms;
  for (;;) {
    const hit = events.find(pred);
    if (hit) return hit;
    if (Date.now() > end) throw new Error(`no matching event within ${ms} ms; got ${JSON.stringify(events.map(describe))}`);
    await sleep(10);
  }
}

function describe(e: NetlinkEvent): string {
  switch (e.type) {
    case "link": return `link ${e.action} ${e.link.name}`;
    case "address": return `address ${e.action} ${e.address.cidr}`;
    case "route": return `route ${e.action} ${e.route.dst}`;
    case "overrun": return "overrun";
  }
}

test("events from the subscribed namespace only, parsed; none after close()", async (t) => {
  const ns = makeNetns(t, "ev");
  const other = makeNetns(t, "ev");
  const events: NetlinkEvent[] = [];
  const sub = subscribe((e) => events.push(e), { netns: ns, intervalMs: 10 });
  t.after(() => sub.close());
  const s = openRoute(ns);
  t.after(() => s.close());

  run("ip", ["-n", other, "link", "add", "evx0", "type", "veth", "peer", "name", "evx1"]);
  linkCreate(s, { kind: "veth", name: "ev0", peer: { name: "ev1" } });
  const created = await waitFor(events, (e) => e.type === "link" && e.action === "new" && e.link.name === "ev0");
  assert.equal(created.type === "link" && created.link.kind, "veth");
  addrAdd(s, "ev0", "10.50.0.1/24");
  await waitFor(events, (e) => e.type === "address" && e.action === "new" && e.address.cidr === "10.50.0.1/24");
  await waitFor(events, (e) => e.type === "route" && e.action === "new" && e.route.dst === "10.50.0.1/32");
  linkDelete(s, "ev0");
  await waitFor(events, (e) => e.type === "link" && e.action === "del" && e.link.name === "ev0");
  await waitFor(events, (e) => e.type === "address" && e.action === "del" && e.address.cidr === "10.50.0.1/24");
  assert.equal(events.some((e) => e.type === "link" && e.link.name.startsWith("evx")), false, "other namespaces are not seen");

  sub.close();
  assert.equal(sub.isClosed, true);
  const count = events.length;
  linkCreate(s, { kind: "veth", name: "ev2", peer: { name: "ev3" } });
  await sleep(80);
  assert.equal(events.length, count, "no event delivered after close()");
  assert.equal(sub.poll(), 0);
  sub.close(); // idempotent
});

test("the event loop keeps running while subscribed (no blocking recv)", async (t) => {
  const ns = makeNetns(t, "ev");
  const sub = subscribe(() => {}, { netns: ns, intervalMs: 5 });
  t.after(() => sub.close());
  let ticks = 0;
  const iv = setInterval(() => ticks++, 5);
  await sleep(200);
  clearInterval(iv);
  assert.ok(ticks >= 15, `timer ran ${ticks} times in 200 ms`);
});

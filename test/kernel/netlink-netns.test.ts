import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  createNetns, currentNetnsInode, deleteNetns, linkList, netnsExists, netnsInode, NetnsError, openRoute, withNetns,
} from "../../reconciler/netlink/index.js";
import { makeNetns, run, uniqueName } from "./helpers/netlink.js";

test("createNetns/deleteNetns behave like ip netns add/delete", (t) => {
  const name = uniqueName("ns");
  t.after(() => {
    try { execFileSync("ip", ["netns", "delete", name], { stdio: "ignore" }); } catch { /* deleted by the test */ }
  });
  const home = currentNetnsInode();
  createNetns(name);
  assert.equal(currentNetnsInode(), home, "the calling thread is back in its namespace");
  assert.ok(netnsExists(name));
  assert.ok(run("ip", ["netns", "list"]).split("\n").some((l) => l.split(" ")[0] === name), "ip netns list shows it");
  assert.notEqual(netnsInode(name), home);
  // A real, empty namespace: only lo.
  assert.deepEqual(JSON.parse(run("ip", ["-j", "-n", name, "link", "show"])).map((l: { ifname: string }) => l.ifname), ["lo"]);
  assert.throws(() => createNetns(name), (e: unknown) => e instanceof NetnsError && /already exists/.test(e.message));
  assert.equal(deleteNetns(name), true);
  assert.equal(netnsExists(name), false);
  assert.equal(deleteNetns(name), false, "missing counts as success");
});

test("withNetns enters the namespace and always restores the original one", (t) => {
  const ns = makeNetns(t, "ns");
  const home = currentNetnsInode();
  assert.equal(withNetns(ns, () => currentNetnsInode()), netnsInode(ns));
  assert.equal(currentNetnsInode(), home);
  assert.throws(() => withNetns(ns, () => { throw new Error("boom"); }), /boom/);
  assert.equal(currentNetnsInode(), home, "restored after a throw");
  assert.throws(() => withNetns(ns, () => Promise.resolve(1)), /must be synchronous/);
  assert.equal(currentNetnsInode(), home, "restored after refusing a promise");
  // Nested: inner switch returns to the outer namespace, not to home.
  const ns2 = makeNetns(t, "ns");
  const seen = withNetns(ns, () => [withNetns(ns2, () => currentNetnsInode()), currentNetnsInode()]);
  assert.deepEqual(seen, [netnsInode(ns2), netnsInode(ns)]);
  assert.throws(() => withNetns("nl-missing-x", () => 1), (e: unknown) => e instanceof NetnsError && /ENOENT/.test(e.message));
  assert.equal(currentNetnsInode(), home);
});

test("openRoute(ns) returns a socket bound to that namespace while the thread goes home", (t) => {
  const ns = makeNetns(t, "ns");
  run("ip", ["-n", ns, "link", "add", "nsv0", "type", "veth", "peer", "name", "nsv1"]);
  const home = currentNetnsInode();
  const sock = openRoute(ns);
  t.after(() => sock.close());
  assert.equal(currentNetnsInode(), home);
  assert.deepEqual(linkList(sock).map((l) => l.name).sort(), ["lo", "nsv0", "nsv1"]);
});

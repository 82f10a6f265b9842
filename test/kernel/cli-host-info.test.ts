// readHostInfo: the host's global addresses with the MTU of their device, in a namespace full of
// devices without addresses (the veth ends of endpoints), which it no longer dumps one by one.
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import assert from "node:assert/strict";
import { readHostInfo } from "../../reconciler/apply/kernel/open.js";
import { GATEWAY_V4 } from "../../reconciler/policy/host.js";
import { openRoute } from "../../reconciler/netlink/index.js";
import { makeNetns } from "./helpers/netlink.js";

test("readHostInfo: global addresses with their device's MTU; gateway, link-local and host scope left out", (t) => {
  const ns = makeNetns(t, "hi");
  const lines = [
    "link add hu0 type veth peer name hp0",
    "link set hu0 mtu 9000 up",
    "addr add 192.0.2.10/24 dev hu0",
    "addr add 2001:db8::10/64 dev hu0 nodad",
    "link add hu1 type veth peer name hp1",
    "link set hu1 mtu 1400 up",
    "addr add 198.51.100.7/24 dev hu1",
    `addr add ${GATEWAY_V4}/32 dev hu1`,
    "addr add 203.0.113.9/32 dev hu1 scope host",
  ];
  for (let i = 0; i < 50; i++) lines.push(`link add hv${i} type veth peer name hw${i}`);
  execFileSync("ip", ["-n", ns, "-batch", "-"], { input: lines.join("\n") + "\n" });
  const sock = openRoute(ns);
  t.after(() => sock.close());
  const info = readHostInfo(sock);
  assert.deepEqual([...info.addresses].sort(), ["192.0.2.10", "198.51.100.7", "2001:db8::10"]);
  assert.deepEqual(Object.fromEntries([...info.mtuByAddress].sort()), { "192.0.2.10": 9000, "198.51.100.7": 1400, "2001:db8::10": 9000 });
});

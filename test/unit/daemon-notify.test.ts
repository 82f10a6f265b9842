import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import koffi from "koffi";
import { createNotifier, sockaddrUn, watchdogIntervalMs } from "../../reconciler/daemon/notify.js";

// A receiving unix datagram socket made with libc, standing in for systemd's notify socket.
const lib = koffi.load("libc.so.6");
const socket = lib.func("int socket(int, int, int)");
const bind = lib.func("int bind(int, const void *, uint32_t)");
const recv = lib.func("long recv(int, _Out_ uint8_t *buf, size_t, int)");
const close = lib.func("int close(int)");
const MSG_DONTWAIT = 0x40;

function listen(addrPath: string): { fd: number; next(timeoutMs?: number): Promise<string>; close(): void } {
  const fd = socket(1, 2, 0) as number;
  assert.ok(fd >= 0);
  const { addr, len } = sockaddrUn(addrPath);
  assert.equal(bind(fd, addr, len), 0, `bind ${addrPath}: errno ${koffi.errno()}`);
  return {
    fd,
    async next(timeoutMs = 2000) {
      const buf = Buffer.alloc(4096);
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const n = recv(fd, buf, buf.length, MSG_DONTWAIT) as number;
        if (n >= 0) return buf.subarray(0, n).toString("utf8");
        await new Promise((r) => setTimeout(r, 5));
      }
      throw new Error("no datagram received");
    },
    close: () => close(fd),
  };
}

test("notify: READY/STATUS/STOPPING reach a path socket", async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), "daemon-notify-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const sockPath = path.join(dir, "notify");
  const rx = listen(sockPath);
  t.after(() => rx.close());
  const n = createNotifier({ NOTIFY_SOCKET: sockPath });
  assert.equal(n.enabled, true);
  n.ready("applied abc\nsecond line");
  assert.equal(await rx.next(), "READY=1\nSTATUS=applied abc second line");
  n.status("reconciling");
  assert.equal(await rx.next(), "STATUS=reconciling");
  n.stopping();
  assert.equal(await rx.next(), "STOPPING=1");
});

test("notify: abstract socket and WATCHDOG=1 at half of WATCHDOG_USEC", async (t) => {
  const name = `@daemon-notify-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const rx = listen(name);
  t.after(() => rx.close());
  const n = createNotifier({ NOTIFY_SOCKET: name, WATCHDOG_USEC: "100000" });
  const stop = n.startWatchdog();
  t.after(stop);
  const started = Date.now();
  assert.equal(await rx.next(), "WATCHDOG=1");
  assert.equal(await rx.next(), "WATCHDOG=1");
  const elapsed = Date.now() - started;
  t.diagnostic(`two watchdog pings in ${elapsed} ms (interval 50 ms)`);
  assert.ok(elapsed >= 80, `pings come every ~50 ms, got two in ${elapsed} ms`);
});

test("notify: no-op without NOTIFY_SOCKET; watchdog interval rules; errors reported not thrown", () => {
  const n = createNotifier({});
  assert.equal(n.enabled, false);
  n.ready();
  n.watchdog();
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: "60000000" }), 30000);
  assert.equal(watchdogIntervalMs({}), null);
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: "60000000", WATCHDOG_PID: "1" }, 2), null);
  const errors: Error[] = [];
  createNotifier({ NOTIFY_SOCKET: "/nonexistent/dir/sock" }, (e) => errors.push(e)).ready();
  assert.equal(errors.length, 1);
  assert.match(errors[0]!.message, /sendto/);
  assert.throws(() => sockaddrUn(`/${"x".repeat(200)}`));
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { closeAll, installSignalHandlers } from "../../reconciler/daemon/signals.js";

test("signals: SIGHUP reloads, SIGTERM stops once, a second one forces, uninstall removes", async () => {
  const proc = new EventEmitter();
  const events: string[] = [];
  let finishStop: () => void = () => {};
  const uninstall = installSignalHandlers(
    {
      onReload: () => events.push("reload"),
      onStop: (sig) => {
        events.push(`stop:${sig}`);
        return new Promise<void>((r) => (finishStop = r));
      },
      onForce: (sig) => events.push(`force:${sig}`),
    },
    proc,
  );
  proc.emit("SIGHUP");
  proc.emit("SIGTERM");
  proc.emit("SIGHUP"); // ignored while stopping
  proc.emit("SIGINT");
  finishStop();
  assert.deepEqual(events, ["reload", "stop:SIGTERM", "force:SIGINT"]);
  uninstall();
  assert.equal(proc.listenerCount("SIGTERM") + proc.listenerCount("SIGINT") + proc.listenerCount("SIGHUP"), 0);
});

test("closeAll closes every part in order and reports all failures", async () => {
  const order: string[] = [];
  await assert.rejects(
    closeAll([
      { name: "notify", close: () => void order.push("notify") },
      { name: "watcher", close: async () => { order.push("watcher"); throw new Error("EBADF"); } },
      { name: "status", close: async () => void order.push("status") },
    ]),
    (err: unknown) => err instanceof AggregateError && /close watcher: EBADF/.test(err.message),
  );
  assert.deepEqual(order, ["notify", "watcher", "status"]);
});

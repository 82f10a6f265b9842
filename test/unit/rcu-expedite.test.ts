// withExpeditedRcu with a fake knob: sets rcu_expedited only when it is 0, only while the batch
// runs, puts it back when the batch throws, and leaves a knob it did not set (or cannot read or
// write) alone.

import assert from "node:assert/strict";
import { test } from "node:test";
import { withExpeditedRcu, type RcuKnob } from "../../reconciler/apply/kernel/rcu.js";

function fakeKnob(initial: string | undefined, opts: { readOnly?: boolean } = {}): RcuKnob & { value: string | undefined; writes: string[] } {
  const k = {
    value: initial,
    writes: [] as string[],
    read: () => k.value,
    write: (v: "0" | "1") => {
      if (opts.readOnly) throw Object.assign(new Error("EROFS"), { code: "EROFS" });
      k.writes.push(v);
      k.value = v;
    },
  };
  return k;
}

test("rcu: set to 1 while the batch runs, back to 0 after", async () => {
  const knob = fakeKnob("0");
  const during = await withExpeditedRcu(knob, async () => knob.value);
  assert.equal(during, "1");
  assert.deepEqual(knob.writes, ["1", "0"]);
  assert.equal(knob.value, "0");
});

test("rcu: put back when the batch throws, and the error passes through", async () => {
  const knob = fakeKnob("0");
  await assert.rejects(
    withExpeditedRcu(knob, async () => {
      throw new Error("attach failed");
    }),
    /attach failed/,
  );
  assert.deepEqual(knob.writes, ["1", "0"]);
});

test("rcu: a knob already set, absent or read-only is left alone and the batch still runs", async () => {
  for (const knob of [fakeKnob("1"), fakeKnob(undefined), fakeKnob("0", { readOnly: true })]) {
    const before = knob.value;
    assert.equal(await withExpeditedRcu(knob, async () => "ran"), "ran");
    assert.deepEqual(knob.writes, []);
    assert.equal(knob.value, before);
  }
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryReleaser, RELEASE_GROWTH_BYTES, RELEASE_IDLE_MS, releaseUnusedMemory, type Released } from "../../reconciler/daemon/memory.js";
import { FakeTimers } from "./helpers/fake-timers.js";

const MiB = 2 ** 20;

function releaser(rssAtStart: number) {
  const timers = new FakeTimers();
  const state = { rss: rssAtStart, releases: 0, rssAfterRelease: rssAtStart };
  const reported: Released[] = [];
  const r = new MemoryReleaser({
    timers,
    rss: () => state.rss,
    release: () => {
      state.releases++;
      timers.t += 250; // a full collection takes time
      state.rss = state.rssAfterRelease;
    },
    onReleased: (x) => reported.push(x),
  });
  return { r, timers, state, reported };
}

test("memory: released once the daemon is idle after a run that grew RSS by the threshold, and the baseline moves to what is left", () => {
  const { r, timers, state, reported } = releaser(100 * MiB);
  r.runStarted();
  state.rss = 100 * MiB + RELEASE_GROWTH_BYTES - 1;
  r.runEnded();
  assert.deepEqual(timers.pending(), [], "below the threshold nothing is scheduled");

  r.runStarted();
  state.rss = 100 * MiB + RELEASE_GROWTH_BYTES;
  state.rssAfterRelease = 90 * MiB;
  r.runEnded();
  assert.deepEqual(timers.pending(), [RELEASE_IDLE_MS]);
  timers.fireNext();
  assert.equal(state.releases, 1);
  assert.deepEqual(reported, [{ rssBefore: 100 * MiB + RELEASE_GROWTH_BYTES, rssAfter: 90 * MiB, ms: 250 }]);

  // Growth is counted from what the release left (90 MiB), not from the start.
  r.runStarted();
  state.rss = 90 * MiB + RELEASE_GROWTH_BYTES - 1;
  r.runEnded();
  assert.deepEqual(timers.pending(), []);
  r.runStarted();
  state.rss = 90 * MiB + RELEASE_GROWTH_BYTES;
  r.runEnded();
  assert.deepEqual(timers.pending(), [RELEASE_IDLE_MS]);
});

test("memory: a run that starts before the idle time has passed puts the release off until after it", () => {
  const { r, timers, state } = releaser(100 * MiB);
  state.rss = 200 * MiB;
  r.runEnded();
  timers.t += RELEASE_IDLE_MS - 1;
  r.runStarted();
  assert.deepEqual(timers.pending(), [], "no collection in the middle of a run");
  r.runEnded();
  assert.deepEqual(timers.pending(), [RELEASE_IDLE_MS]);
  r.close();
  assert.deepEqual(timers.pending(), [], "closing cancels it");
  assert.equal(state.releases, 0);
});

test("memory: releaseUnusedMemory gives the pages of freed objects back to the system", () => {
  let garbage: Array<{ n: number; s: string; a: number[] }> | null = [];
  for (let i = 0; i < 1_500_000; i++) garbage.push({ n: i, s: String(i), a: [i] });
  assert.equal(garbage.length, 1_500_000);
  garbage = null;
  const before = process.memoryUsage.rss();
  releaseUnusedMemory();
  const after = process.memoryUsage.rss();
  assert.ok(after < before - 64 * MiB, `RSS ${Math.round(before / MiB)} → ${Math.round(after / MiB)} MiB`);
});

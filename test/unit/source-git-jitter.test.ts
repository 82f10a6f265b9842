// Poll jitter of the git source: the pure delay function, and what it does to a fleet of nodes
// started at the same moment (simulated with a seeded random generator, no timers).
import { test } from "node:test";
import assert from "node:assert/strict";
import { nextPollDelay, POLL_JITTER } from "../../reconciler/source/git.js";

/** A small seeded generator (mulberry32) so the fleet simulation is the same on every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("nextPollDelay: first poll at a random point of the interval, later ones within ±jitter", () => {
  const j = { jitter: 0.1 };
  assert.equal(nextPollDelay(30_000, { ...j, first: true, random: 0 }), 0);
  assert.equal(nextPollDelay(30_000, { ...j, first: true, random: 0.5 }), 15_000);
  assert.equal(nextPollDelay(30_000, { ...j, first: true, random: 0.999 }), 29_970);
  assert.equal(nextPollDelay(30_000, { ...j, first: false, random: 0 }), 27_000);
  assert.equal(nextPollDelay(30_000, { ...j, first: false, random: 0.5 }), 30_000);
  assert.equal(nextPollDelay(30_000, { ...j, first: false, random: 0.999 }), 32_994);
  // jitter 0: exactly the interval, first poll included (the behaviour before jitter existed).
  assert.equal(nextPollDelay(30_000, { jitter: 0, first: true, random: 0.3 }), 30_000);
  assert.equal(nextPollDelay(30_000, { jitter: 0, first: false, random: 0.3 }), 30_000);
  assert.equal(POLL_JITTER, 0.1);
});

test("nextPollDelay: refuses a random number outside [0, 1) and a jitter outside [0, 1]", () => {
  assert.throws(() => nextPollDelay(1000, { jitter: 0.1, first: false, random: 1 }), /random: expected a number in \[0, 1\), got 1/);
  assert.throws(() => nextPollDelay(1000, { jitter: 0.1, first: false, random: Number.NaN }), RangeError);
  assert.throws(() => nextPollDelay(1000, { jitter: 1.5, first: false, random: 0.2 }), /jitter: expected a fraction in \[0, 1\], got 1.5/);
});

/** Poll times (ms after a common start) of `nodes` nodes over `polls` polls each. */
function fleet(nodes: number, polls: number, intervalMs: number, jitter: number, random: () => number): number[][] {
  return Array.from({ length: nodes }, () => {
    const times: number[] = [];
    let t = 0;
    for (let i = 0; i < polls; i++) {
      t += nextPollDelay(intervalMs, { first: i === 0, jitter, random: random() });
      times.push(t);
    }
    return times;
  });
}

/** The most polls that fall into any one window of `windowMs` (the peak load on the git server). */
function peak(times: number[], windowMs: number): number {
  const s = [...times].sort((a, b) => a - b);
  let best = 0;
  for (let i = 0, j = 0; i < s.length; i++) {
    while (s[i]! - s[j]! >= windowMs) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

test("a fleet restarted together: without jitter every poll is in lock-step, with it the polls spread over the interval", () => {
  const nodes = 1000;
  const interval = 30_000;
  const still = fleet(nodes, 5, interval, 0, seeded(1));
  // Without jitter all 1,000 nodes hit the server in the same instant, every interval.
  assert.equal(peak(still.map((t) => t[0]!), 1000), nodes);
  assert.equal(peak(still.map((t) => t[4]!), 1000), nodes);

  const spread = fleet(nodes, 5, interval, POLL_JITTER, seeded(1));
  // Uniform over 30 s, 1 s windows hold ~33 polls on average; allow generous statistical slack
  // (the seeded generator makes this exact and repeatable anyway).
  for (const round of [0, 4]) {
    const p = peak(spread.map((t) => t[round]!), 1000);
    assert.ok(p < 70, `poll ${round + 1}: ${p} of ${nodes} nodes polled within one second`);
  }
  // Every later interval stays within ±10% of the configured one.
  for (const times of spread) {
    for (let i = 1; i < times.length; i++) {
      const d = times[i]! - times[i - 1]!;
      assert.ok(d >= interval * 0.9 && d <= interval * 1.1, `interval ${d} ms outside 27..33 s`);
    }
  }
});

// Source latency benchmark (plain script): node --import tsx test/bench/source.bench.ts
//  1. directory watcher: file saved → snapshot emitted (median of 20)
//  2. git: commit pushed → snapshot, via a webhook-triggered fetch and via 1 s polling (medians)
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { watchDir } from "../../reconciler/source/dir.js";
import { GitSource } from "../../reconciler/source/git.js";
import type { Snapshot } from "../../reconciler/source/snapshot.js";

const ROUNDS = 20;
const POLL_ROUNDS = 8;
const env = { ...process.env, GIT_AUTHOR_NAME: "b", GIT_AUTHOR_EMAIL: "b@x", GIT_COMMITTER_NAME: "b", GIT_COMMITTER_EMAIL: "b@x", GIT_CONFIG_GLOBAL: "/dev/null" };
const git = (cwd: string, ...a: string[]) => execFileSync("git", a, { cwd, env, encoding: "utf8" }).trim();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function waiter() {
  let resolve: ((s: Snapshot) => void) | undefined;
  return {
    on: (s: Snapshot) => resolve?.(s),
    next: (timeoutMs = 10_000) =>
      new Promise<Snapshot>((res, rej) => {
        const t = setTimeout(() => rej(new Error("timeout")), timeoutMs);
        resolve = (s) => {
          clearTimeout(t);
          resolve = undefined;
          res(s);
        };
      }),
  };
}

const tmp = await mkdtemp(path.join(tmpdir(), "source-bench-"));
try {
  // 1. Directory watcher.
  const dir = path.join(tmp, "dir");
  execFileSync("mkdir", ["-p", dir]);
  await writeFile(path.join(dir, "a.yaml"), "v: 0\n");
  const w = waiter();
  const close = await watchDir(dir, w.on, { emitInitial: false });
  const dirLat: number[] = [];
  for (let i = 1; i <= ROUNDS; i++) {
    const got = w.next();
    const t0 = performance.now();
    await writeFile(path.join(dir, "a.yaml"), `v: ${i}\n`);
    await got;
    dirLat.push(performance.now() - t0);
    await sleep(20);
  }
  await close();

  // 2. Git: bare remote + work clone.
  const remote = path.join(tmp, "remote.git");
  const work = path.join(tmp, "work");
  git(tmp, "init", "-q", "--bare", "-b", "main", remote);
  git(tmp, "init", "-q", "-b", "main", work);
  git(work, "remote", "add", "origin", remote);
  let n = 0;
  const push = async () => {
    await writeFile(path.join(work, "a.yaml"), `v: ${++n}\n`);
    git(work, "commit", "-qam", `c${n}`);
    git(work, "push", "-q", "origin", "main");
  };
  await writeFile(path.join(work, "a.yaml"), "v: 0\n");
  git(work, "add", "a.yaml");
  git(work, "commit", "-qm", "init");
  git(work, "push", "-q", "origin", "main");

  // Webhook path: the handler calls sync(); measured from "push done" to snapshot.
  const gw = waiter();
  const hookSrc = new GitSource({ url: remote, ref: "main", stateDir: path.join(tmp, "state-hook"), intervalMs: 0, onSnapshot: gw.on });
  await hookSrc.start();
  const hookLat: number[] = [];
  const hookTotal: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = performance.now();
    await push();
    const t1 = performance.now();
    const got = gw.next();
    void hookSrc.sync(); // what the webhook handler does on a valid delivery
    await got;
    hookLat.push(performance.now() - t1);
    hookTotal.push(performance.now() - t0);
  }
  await hookSrc.close();

  // Polling at 1 s: expected ≈ 500 ms + fetch time on average.
  const pw = waiter();
  const pollSrc = new GitSource({ url: remote, ref: "main", stateDir: path.join(tmp, "state-poll"), intervalMs: 1000, onSnapshot: pw.on });
  await pollSrc.start();
  const pollLat: number[] = [];
  for (let i = 0; i < POLL_ROUNDS; i++) {
    await sleep(Math.random() * 1000); // push at a random phase of the poll cycle
    const got = pw.next(5000);
    await push();
    const t1 = performance.now();
    await got;
    pollLat.push(performance.now() - t1);
  }
  await pollSrc.close();

  const f = (x: number) => `${x.toFixed(1)} ms`;
  console.log(`dir watcher (default debounce, 25 ms): file saved → snapshot, median of ${ROUNDS}: ${f(median(dirLat))} (min ${f(Math.min(...dirLat))}, max ${f(Math.max(...dirLat))})`);
  console.log(`git via webhook trigger: push done → snapshot, median of ${ROUNDS}: ${f(median(hookLat))} (commit+push+fetch: ${f(median(hookTotal))})`);
  console.log(`git via 1 s polling: push done → snapshot, median of ${POLL_ROUNDS}: ${f(median(pollLat))} (min ${f(Math.min(...pollLat))}, max ${f(Math.max(...pollLat))})`);
} finally {
  await rm(tmp, { recursive: true, force: true });
}

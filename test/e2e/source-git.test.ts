// GitSource against real repositories made in a temp dir (bare remote + a work clone).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { GitSource } from "../../reconciler/source/git.js";
import { createWebhookHandler, signWebhookBody } from "../../reconciler/source/webhook.js";
import { GitSourceError, PathEscapeError, SignatureError, type SourceError } from "../../reconciler/source/errors.js";
import type { Snapshot } from "../../reconciler/source/snapshot.js";
import { git } from "./helpers/git.js";


interface Fixture {
  tmp: string;
  remote: string;
  work: string;
  commit(files: Record<string, string>, message: string, extra?: string[]): string;
}

async function fixture(t: { after: (fn: () => Promise<void>) => void }): Promise<Fixture> {
  const tmp = await mkdtemp(path.join(tmpdir(), "source-git-"));
  t.after(() => rm(tmp, { recursive: true, force: true }));
  const remote = path.join(tmp, "remote.git");
  const work = path.join(tmp, "work");
  git(tmp, "init", "-q", "--bare", "-b", "main", remote);
  git(tmp, "init", "-q", "-b", "main", work);
  git(work, "remote", "add", "origin", remote);
  return {
    tmp,
    remote,
    work,
    commit(files, message, extra = []) {
      for (const [p, c] of Object.entries(files)) {
        execFileSync("mkdir", ["-p", path.dirname(path.join(work, p))]);
        execFileSync("sh", ["-c", 'printf "%s" "$1" > "$2"', "sh", c, path.join(work, p)]);
      }
      git(work, "add", "-A");
      git(work, ...extra, "commit", "-q", "-m", message);
      return git(work, "rev-parse", "HEAD");
    },
  };
}

function collect(): { snaps: Snapshot[]; errors: SourceError[]; onSnapshot: (s: Snapshot) => void; onError: (e: SourceError) => void } {
  const snaps: Snapshot[] = [];
  const errors: SourceError[] = [];
  return { snaps, errors, onSnapshot: (s) => snaps.push(s), onError: (e) => errors.push(e) };
}

test("git: branch, --path, new commits, force push, invalid ref", async (t) => {
  const f = await fixture(t);
  const c1 = f.commit({ "manifests/a.yaml": "a: 1\n", "README.md": "hi", "other/x.yaml": "x: 1\n" }, "one");
  git(f.work, "push", "-q", "origin", "main");
  const c = collect();
  const src = new GitSource({ url: f.remote, ref: "main", path: "manifests", stateDir: path.join(f.tmp, "state"), intervalMs: 0, ...c });
  t.after(() => src.close());

  const r1 = await src.start();
  assert.equal(r1.error, undefined);
  assert.equal(r1.revision, c1);
  // Files are compared by what they hold: how a source stores its text is its own business.
  assert.deepEqual(
    c.snaps.map((s) => ({ revision: s.revision, files: s.files.map((x) => ({ path: x.path, content: x.content })) })),
    [{ revision: c1, files: [{ path: "a.yaml", content: "a: 1\n" }] }],
  );
  // Shallow: only one commit in the checkout.
  assert.equal(git(src.checkoutDir, "rev-parse", "--is-shallow-repository"), "true");

  // No change → no snapshot.
  assert.deepEqual(await src.sync(), { revision: c1, changed: false });
  assert.equal(c.snaps.length, 1);

  const c2 = f.commit({ "manifests/b.yaml": "b: 1\n" }, "two");
  git(f.work, "push", "-q", "origin", "main");
  assert.equal((await src.sync()).revision, c2);
  assert.deepEqual(c.snaps[1]!.files.map((x) => x.path), ["a.yaml", "b.yaml"]);

  // Rewritten history: drop c2, commit something else, force push.
  git(f.work, "reset", "-q", "--hard", c1);
  const c3 = f.commit({ "manifests/c.yaml": "c: 1\n" }, "rewritten");
  git(f.work, "push", "-q", "--force", "origin", "main");
  const r3 = await src.sync();
  assert.equal(r3.error, undefined);
  assert.equal(r3.revision, c3);
  assert.deepEqual(c.snaps[2]!.files.map((x) => x.path), ["a.yaml", "c.yaml"]);
  assert.equal(existsSync(path.join(src.checkoutDir, "manifests/b.yaml")), false);

  // The remote URL on disk is the one given.
  assert.equal(git(src.checkoutDir, "remote", "get-url", "origin"), f.remote);

  // Invalid ref: an error, nothing emitted.
  const bad = collect();
  const src2 = new GitSource({ url: f.remote, ref: "no-such-branch", stateDir: path.join(f.tmp, "state2"), intervalMs: 0, ...bad });
  const rb = await src2.start();
  await src2.close();
  assert.ok(rb.error instanceof GitSourceError);
  assert.match(rb.error.message, /no-such-branch/);
  assert.equal(bad.snaps.length, 0);
  assert.equal(src2.status().fetchFailures, 1);
  assert.throws(() => new GitSource({ url: f.remote, ref: "--upload-pack=x", stateDir: f.tmp, onSnapshot: () => {} }));
  assert.throws(() => new GitSource({ url: f.remote, path: "../x", stateDir: f.tmp, onSnapshot: () => {} }));
  assert.throws(() => new GitSource({ url: "https://u:secret@example.com/r.git", stateDir: f.tmp, onSnapshot: () => {} }), (e: Error) => !e.message.includes("secret"));
});

test("git: tags (lightweight and annotated) and full SHA refs", async (t) => {
  const f = await fixture(t);
  const c1 = f.commit({ "a.yaml": "v: 1\n" }, "one");
  git(f.work, "tag", "v1");
  const c2 = f.commit({ "a.yaml": "v: 2\n" }, "two");
  git(f.work, "tag", "-a", "v2", "-m", "release 2");
  f.commit({ "a.yaml": "v: 3\n" }, "three");
  git(f.work, "push", "-q", "--tags", "origin", "main");

  for (const [ref, want, content] of [
    ["v1", c1, "v: 1\n"],
    ["v2", c2, "v: 2\n"],
    [c1, c1, "v: 1\n"], // a SHA that is not a branch tip
  ] as const) {
    const c = collect();
    const src = new GitSource({ url: f.remote, ref, stateDir: path.join(f.tmp, `state-${ref}`), intervalMs: 0, ...c });
    const r = await src.start();
    await src.close();
    assert.equal(r.error, undefined, `${ref}: ${r.error?.message}`);
    assert.equal(r.revision, want, ref);
    assert.equal(c.snaps[0]!.files[0]!.content, content, ref);
  }
  // A SHA that does not exist.
  const c = collect();
  const src = new GitSource({ url: f.remote, ref: "0".repeat(40), stateDir: path.join(f.tmp, "state-zero"), intervalMs: 0, ...c });
  const r = await src.start();
  await src.close();
  assert.ok(r.error instanceof GitSourceError);
  assert.equal(c.snaps.length, 0);
});

test("git: unreachable remote keeps the last good revision and reports the error", async (t) => {
  const f = await fixture(t);
  const c1 = f.commit({ "a.yaml": "a: 1\n" }, "one");
  git(f.work, "push", "-q", "origin", "main");
  const moved = path.join(f.tmp, "moved.git");
  const c = collect();
  const src = new GitSource({ url: f.remote, ref: "main", stateDir: path.join(f.tmp, "state"), intervalMs: 0, ...c });
  t.after(() => src.close());
  await src.start();
  execFileSync("mv", [f.remote, moved]); // the remote is gone
  const r = await src.sync();
  assert.ok(r.error instanceof GitSourceError);
  assert.equal(r.error.operation, "fetch");
  assert.equal(r.revision, c1);
  const st = src.status();
  assert.equal(st.revision, c1);
  assert.equal(st.fetchFailures, 1);
  assert.ok(st.lastError !== null);
  assert.equal(c.errors.length, 1);
  assert.equal(c.snaps.length, 1);
  // Back again: recovers and clears the error.
  execFileSync("mv", [moved, f.remote]);
  const c2 = f.commit({ "a.yaml": "a: 2\n" }, "two");
  git(f.work, "push", "-q", "origin", "main");
  assert.equal((await src.sync()).revision, c2);
  assert.equal(src.status().lastError, null);
});

test("git: symlinks escaping the checkout are rejected", async (t) => {
  const f = await fixture(t);
  f.commit({ "a.yaml": "a: 1\n" }, "one");
  await symlink("/etc/hostname", path.join(f.work, "evil.yaml"));
  const c2 = f.commit({}, "evil link");
  git(f.work, "push", "-q", "origin", "main");
  const c = collect();
  const src = new GitSource({ url: f.remote, ref: "main", stateDir: path.join(f.tmp, "state"), intervalMs: 0, ...c });
  const r = await src.start();
  await src.close();
  assert.ok(r.error instanceof PathEscapeError, String(r.error));
  assert.match(r.error.message, /evil\.yaml/);
  assert.equal(c.snaps.length, 0);
  assert.notEqual(src.status().revision, c2);
});

test("git: polling picks up a push", async (t) => {
  const f = await fixture(t);
  f.commit({ "a.yaml": "a: 1\n" }, "one");
  git(f.work, "push", "-q", "origin", "main");
  const c = collect();
  const src = new GitSource({ url: f.remote, stateDir: path.join(f.tmp, "state"), intervalMs: 200, ...c }); // ref: remote HEAD
  t.after(() => src.close());
  await src.start();
  const c2 = f.commit({ "a.yaml": "a: 2\n" }, "two");
  git(f.work, "push", "-q", "origin", "main");
  const deadline = Date.now() + 5000;
  while (c.snaps.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(c.snaps[1]?.revision, c2);
});

test("git: poll jitter: the first poll comes at random × interval, later ones at interval ±jitter", async (t) => {
  const f = await fixture(t);
  f.commit({ "a.yaml": "a: 1\n" }, "one");
  git(f.work, "push", "-q", "origin", "main");
  // Polls are seen through lastSyncAt. A 4 s interval: with random() = 0 the first poll is due at
  // once after start, with 0.999 only ~4 s later (and without jitter, 4 s later).
  const pollsWithin = async (random: number, ms: number): Promise<number> => {
    const draws: number[] = [];
    const src = new GitSource({ url: f.remote, stateDir: path.join(f.tmp, `state-${random}`), intervalMs: 4000, random: () => (draws.push(random), random), ...collect() });
    t.after(() => src.close());
    await src.start();
    const started = src.status().lastSyncAt;
    let polls = 0;
    let last = started;
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const at = src.status().lastSyncAt;
      if (at !== last) (polls++, (last = at));
      await new Promise((r) => setTimeout(r, 20));
    }
    await src.close();
    assert.ok(draws.length >= 1, "the poll timer never asked for a random number");
    return polls;
  };
  const [early, late] = await Promise.all([pollsWithin(0, 1500), pollsWithin(0.999, 1500)]);
  assert.ok(early >= 1, `random 0: expected a poll within 1.5 s of start (first poll at 0 × 4 s), got ${early}`);
  assert.equal(late, 0, "random 0.999: the first poll is ~4 s away, none within 1.5 s");
  assert.throws(() => new GitSource({ url: f.remote, stateDir: f.tmp, jitter: 2, onSnapshot: () => {} }), /jitter: expected a fraction in \[0, 1\], got 2/);
});

const hasSshKeygen = (() => {
  try {
    execFileSync("ssh-keygen", ["-?"], { stdio: "ignore" });
    return true;
  } catch (e) {
    return (e as { status?: number }).status !== undefined && (e as { code?: string }).code !== "ENOENT";
  }
})();

test("git: verifySignatures applies only commits signed by an allowed signer", { skip: hasSshKeygen ? false : "ssh-keygen not installed" }, async (t) => {
  const f = await fixture(t);
  const key = path.join(f.tmp, "signer");
  const other = path.join(f.tmp, "intruder");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "signer", "-f", key]);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "intruder", "-f", other]);
  const allowed = path.join(f.tmp, "allowed_signers");
  await writeFile(allowed, `test@example.com namespaces="git" ${(await readFile(`${key}.pub`, "utf8")).trim()}\n`);
  const sign = (k: string) => ["-c", "gpg.format=ssh", "-c", `user.signingkey=${k}`, "-c", "commit.gpgsign=true"];

  const good = f.commit({ "a.yaml": "a: 1\n" }, "signed", sign(key));
  git(f.work, "push", "-q", "origin", "main");
  const c = collect();
  const src = new GitSource({
    url: f.remote,
    ref: "main",
    stateDir: path.join(f.tmp, "state"),
    intervalMs: 0,
    verifySignatures: { allowedSignersFile: allowed },
    ...c,
  });
  t.after(() => src.close());
  const r1 = await src.start();
  assert.equal(r1.error, undefined, r1.error?.message);
  assert.equal(r1.revision, good);

  f.commit({ "a.yaml": "a: 2\n" }, "unsigned");
  git(f.work, "push", "-q", "origin", "main");
  const r2 = await src.sync();
  assert.ok(r2.error instanceof SignatureError, String(r2.error));
  assert.equal(r2.revision, good, "last good revision kept");

  f.commit({ "a.yaml": "a: 3\n" }, "signed by someone else", sign(other));
  git(f.work, "push", "-q", "origin", "main");
  const r3 = await src.sync();
  assert.ok(r3.error instanceof SignatureError);
  assert.equal(c.snaps.length, 1);
  assert.equal(await readFile(path.join(src.checkoutDir, "a.yaml"), "utf8"), "a: 1\n", "working tree not moved to the rejected commit");

  const good2 = f.commit({ "a.yaml": "a: 4\n" }, "signed again", sign(key));
  git(f.work, "push", "-q", "origin", "main");
  assert.equal((await src.sync()).revision, good2);
});

test("webhook: good signature triggers a fetch; bad/missing → 401, GET → 405, big body → 413", async (t) => {
  const f = await fixture(t);
  f.commit({ "a.yaml": "a: 1\n" }, "one");
  git(f.work, "push", "-q", "origin", "main");
  const c = collect();
  const src = new GitSource({ url: f.remote, ref: "main", stateDir: path.join(f.tmp, "state"), intervalMs: 0, ...c });
  t.after(() => src.close());
  await src.start();
  let synced: Promise<unknown> = Promise.resolve();
  const secret = "s3cret-value";
  const server = createServer(createWebhookHandler({ secret, onPush: () => (synced = src.sync()), maxBodyBytes: 4096 }));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const send = (method: string, body: string, headers: Record<string, string>) =>
    new Promise<number>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, method, path: "/hooks/git", headers }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end(body);
    });

  const c2 = f.commit({ "a.yaml": "a: 2\n" }, "two");
  git(f.work, "push", "-q", "origin", "main");
  const body = JSON.stringify({ ref: "refs/heads/main", after: c2 });
  assert.equal(await send("POST", body, { "x-hub-signature-256": signWebhookBody("wrong", body) }), 401);
  assert.equal(await send("POST", body, {}), 401);
  assert.equal(await send("POST", body, { "x-hub-signature-256": "sha256=zz" }), 401);
  assert.equal(await send("POST", body, { "x-hub-signature-256": `${signWebhookBody(secret, body)}zz` }), 401, "a valid MAC with trailing junk");
  assert.equal(await send("GET", "", {}), 405);
  const big = "x".repeat(5000);
  assert.equal(await send("POST", big, { "x-hub-signature-256": signWebhookBody(secret, big) }), 413);
  assert.equal(c.snaps.length, 1, "no fetch without a valid signature");
  assert.equal(await send("POST", body, { "x-hub-signature-256": signWebhookBody(secret, body) }), 202);
  await synced;
  assert.equal(c.snaps[1]?.revision, c2);
});

test("git: https token goes to git as a header via the environment, never to disk", async (t) => {
  const f = await fixture(t);
  // A fake https remote is out of reach here; check what git would be given instead.
  const token = "tok-abcdef-123456";
  const src = new GitSource({ url: "https://127.0.0.1:1/none.git", token, stateDir: path.join(f.tmp, "state"), intervalMs: 0, commandTimeoutMs: 10_000, onSnapshot: () => {} });
  const r = await src.start();
  await src.close();
  assert.ok(r.error instanceof GitSourceError);
  assert.ok(!r.error.message.includes(token));
  assert.ok(!JSON.stringify(src.status()).includes(token));
  const config = await readFile(path.join(src.checkoutDir, ".git/config"), "utf8");
  assert.ok(!config.includes(token) && !config.includes(Buffer.from(`x-access-token:${token}`).toString("base64")));
  // Refused for a non-https remote.
  await mkdir(path.join(f.tmp, "state3"));
  const src3 = new GitSource({ url: f.remote, token, stateDir: path.join(f.tmp, "state3"), intervalMs: 0, onSnapshot: () => {} });
  const r3 = await src3.start();
  assert.ok(r3.error instanceof GitSourceError);
  assert.match(r3.error.message, /only sent to https/);
});

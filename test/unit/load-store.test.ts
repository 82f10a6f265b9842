// The load store (manifest/load.ts LoadStore, manifest/dir-store.ts): a LoadCache in a new process
// reads back what an earlier one parsed, and what it reads back is exactly what parsing gives.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createHash } from "node:crypto";
import { DEFAULT_LOAD_LIMITS, LoadCache, loadSnapshot } from "../../reconciler/manifest/load.js";
import { DirLoadStore, loaderBuild } from "../../reconciler/manifest/dir-store.js";
import type { Snapshot } from "../../reconciler/source/snapshot.js";
import { generateModel } from "../bench/generate.js";
import { manifestFiles } from "../bench/manifests.js";
import { snapshotOfDir } from "./helpers/manifest-snapshot.js";

/** Every example directory plus a generated model (10 files), as one snapshot of distinct paths. */
function bigSnapshot(): Snapshot {
  const files = readdirSync("examples", { withFileTypes: true })
    .filter((d) => d.isDirectory() && d.name !== "ci")
    .flatMap((d) => snapshotOfDir(`examples/${d.name}`, "x").files.map((f) => ({ path: `${d.name}/${f.path}`, content: f.content })));
  const generated = manifestFiles(generateModel({ endpoints: 40, rules: 60, remoteEndpoints: 900, apps: 5, groups: 4 }), 1000);
  for (const [p, content] of generated) files.push({ path: `generated/${p}`, content });
  return { revision: "r1", files };
}

/** The files loadSnapshot reads (the example directories hold a README too). */
const manifests = (s: Snapshot): number => s.files.filter((f) => /\.(ya?ml|json)$/i.test(f.path)).length;

function tempStore(t: { after: (fn: () => void) => void }): { dir: string; store: DirLoadStore } {
  const dir = mkdtempSync(path.join(tmpdir(), "rc-load-store-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return { dir, store: new DirLoadStore(path.join(dir, "store")) };
}

test("load store: a new cache reads back every file and loads exactly what parsing gives", (t) => {
  const { dir } = tempStore(t);
  const build = loaderBuild();
  const s = bigSnapshot();
  // Examples from different directories collide on names: the snapshot is invalid as a whole, and
  // its problems are part of what must come back the same. The generated part alone is valid.
  const valid: Snapshot = { revision: "r2", files: s.files.filter((f) => f.path.startsWith("generated/")) };
  for (const [i, snapshot] of [s, valid].entries()) {
    const store = new DirLoadStore(path.join(dir, `store-${i}`));
    const plain = loadSnapshot(snapshot);
    const first = new LoadCache({ store, build });
    assert.deepEqual(loadSnapshot(snapshot, DEFAULT_LOAD_LIMITS, first), plain);
    const saved = first.persist();
    assert.equal(saved.written, manifests(snapshot));
    assert.ok(saved.bytes > 0);
    assert.deepEqual(first.persist(), { written: 0, bytes: 0, remaining: 0 }, "nothing new to write");

    const second = new LoadCache({ store, build });
    const again = loadSnapshot(snapshot, DEFAULT_LOAD_LIMITS, second);
    assert.deepStrictEqual(again, plain);
    assert.deepEqual(second.last, { reused: 0, restored: manifests(snapshot), parsed: 0 });
  }
  assert.ok(loadSnapshot(valid).model !== undefined);
  assert.ok(loadSnapshot(s).problems.some((p) => p.severity === "error"));
});

test("load store: a changed file is parsed, the others read back; records of files gone are removed", (t) => {
  const { dir, store } = tempStore(t);
  const build = loaderBuild();
  const s = snapshotOfDir("examples/seed", "r1");
  const first = new LoadCache({ store, build });
  loadSnapshot(s, DEFAULT_LOAD_LIMITS, first);
  first.persist();
  const records = () => readdirSync(path.join(dir, "store")).sort();
  assert.equal(records().length, manifests(s));

  const rule = s.files.find((f) => f.path === "l3-rule.json")!;
  const changed: Snapshot = { revision: "r2", files: s.files.filter((f) => f !== rule).concat([{ path: rule.path, content: rule.content.replace('"80"', '"8080"') }]) };
  const second = new LoadCache({ store, build });
  const got = loadSnapshot(changed, DEFAULT_LOAD_LIMITS, second);
  assert.deepEqual(second.last, { reused: 0, restored: manifests(s) - 1, parsed: 1 });
  assert.deepStrictEqual(got, loadSnapshot(changed));
  const before = records();
  assert.deepEqual(second.persist().written, 1);
  // The old content's record is gone, the new one is there: still one record per file.
  assert.equal(records().length, manifests(s));
  assert.notDeepEqual(records(), before);

  // A file removed, nothing parsed: its record goes all the same.
  const fewer: Snapshot = { revision: "r3", files: changed.files.filter((f) => f.path !== "identities.yaml") };
  loadSnapshot(fewer, DEFAULT_LOAD_LIMITS, second);
  assert.equal(second.last.parsed, 0);
  assert.equal(second.persist().written, 0);
  assert.equal(records().length, manifests(s) - 1);
});

test("load store: a damaged record, another build or other limits are parsed again, never read back", (t) => {
  const { dir, store } = tempStore(t);
  const build = loaderBuild();
  const s = snapshotOfDir("examples/seed", "r1");
  const first = new LoadCache({ store, build });
  const plain = loadSnapshot(s, DEFAULT_LOAD_LIMITS, first);
  first.persist();

  // One byte of one record flipped, another record cut short.
  const [a, b] = readdirSync(path.join(dir, "store")).map((n) => path.join(dir, "store", n));
  const bytes = readFileSync(a!);
  bytes[bytes.length - 5] ^= 0xff;
  writeFileSync(a!, bytes);
  writeFileSync(b!, readFileSync(b!).subarray(0, 40));
  const damaged = new LoadCache({ store, build });
  assert.deepStrictEqual(loadSnapshot(s, DEFAULT_LOAD_LIMITS, damaged), plain);
  assert.deepEqual(damaged.last, { reused: 0, restored: manifests(s) - 2, parsed: 2 });
  assert.equal(damaged.persist().written, 2, "the damaged records are written again");
  const repaired = new LoadCache({ store, build });
  loadSnapshot(s, DEFAULT_LOAD_LIMITS, repaired);
  assert.equal(repaired.last.restored, manifests(s));

  const otherBuild = new LoadCache({ store, build: `${build}-other` });
  loadSnapshot(s, DEFAULT_LOAD_LIMITS, otherBuild);
  assert.deepEqual(otherBuild.last, { reused: 0, restored: 0, parsed: manifests(s) });

  const otherLimits = new LoadCache({ store, build });
  loadSnapshot(s, { ...DEFAULT_LOAD_LIMITS, maxDepth: 32 }, otherLimits);
  assert.deepEqual(otherLimits.last, { reused: 0, restored: 0, parsed: manifests(s) });
});

test("load store: the build id from source follows the loader's files", () => {
  const id = loaderBuild();
  assert.match(id, /^source:[0-9a-f]{64}$/);
  assert.equal(loaderBuild(), id, "stable");
});

test("load store: persist(maxBytes) stops once that much is written and the next call writes the rest", (t) => {
  const { store } = tempStore(t);
  const build = loaderBuild();
  const s = bigSnapshot();
  const cache = new LoadCache({ store, build });
  loadSnapshot(s, DEFAULT_LOAD_LIMITS, cache);
  const total = manifests(s);
  const first = cache.persist(1);
  assert.equal(first.written, 1, "one record reaches the budget");
  assert.equal(first.remaining, total - 1);
  const rest = cache.persist();
  assert.deepEqual([rest.written, rest.remaining], [total - 1, 0]);
  const next = new LoadCache({ store, build });
  loadSnapshot(s, DEFAULT_LOAD_LIMITS, next);
  assert.equal(next.last.restored, total);
});

test("load: endpoints with equal label sets hold one array, parsed or read back from the store, across files", (t) => {
  const { store } = tempStore(t);
  const build = loaderBuild();
  const generated = manifestFiles(generateModel({ endpoints: 40, rules: 60, remoteEndpoints: 2000, apps: 5, groups: 4 }), 1000);
  const snapshot: Snapshot = { revision: "r1", files: [...generated].map(([p, content]) => ({ path: p, content })) };
  const first = new LoadCache({ store, build });
  const loads = { parsed: loadSnapshot(snapshot), cached: loadSnapshot(snapshot, DEFAULT_LOAD_LIMITS, first) };
  first.persist();
  const second = new LoadCache({ store, build });
  const restored = loadSnapshot(snapshot, DEFAULT_LOAD_LIMITS, second);
  assert.equal(second.last.restored, manifests(snapshot));
  for (const [how, load] of Object.entries({ ...loads, restored })) {
    const endpoints = load.model!.endpoints;
    const sets = new Map<string, unknown>();
    for (const e of endpoints) {
      const text = JSON.stringify(e.labels);
      if (!sets.has(text)) sets.set(text, e.labels);
      assert.equal(e.labels, sets.get(text), `${how}: ${e.name} holds the one array of its label set`);
    }
    // 2,000 remote endpoints in two files with 500 apps, 40 local ones each with its own id label.
    assert.equal(sets.size, 540, how);
    assert.ok(new Set(endpoints.map((e) => e.at.file)).size > 1, `${how}: the endpoints come from several files`);
  }
});

test("load cache: a file whose source gives its digest is recognised by it: unchanged files are never read, in this process or the next", (t) => {
  const { store } = tempStore(t);
  const build = loaderBuild();
  const plain = bigSnapshot();
  const reads = new Map<string, number>();
  /** The snapshot's files as a directory source gives them: a digest, and a text whose reads are counted. */
  const counted = (s: Snapshot, revision: string): Snapshot => ({
    revision,
    files: s.files.map((f) => ({
      path: f.path,
      digest: createHash("sha256").update(f.content).digest("hex"),
      size: Buffer.byteLength(f.content),
      get content() {
        reads.set(f.path, (reads.get(f.path) ?? 0) + 1);
        return f.content;
      },
    })),
  });
  const n = manifests(plain);
  const cache = new LoadCache({ store, build });
  assert.deepStrictEqual(loadSnapshot(counted(plain, "r1"), DEFAULT_LOAD_LIMITS, cache), loadSnapshot(plain));
  assert.equal([...reads.values()].reduce((a, b) => a + b, 0), n, "each file read once, to parse it");
  cache.persist();

  reads.clear();
  const again = loadSnapshot(counted(plain, "r2"), DEFAULT_LOAD_LIMITS, cache);
  assert.deepEqual(cache.last, { reused: n, restored: 0, parsed: 0 });
  assert.equal(reads.size, 0, "no file read");
  assert.deepStrictEqual(again, loadSnapshot(plain), "what the cache hands back is what parsing gives");

  // One file changed: it alone is read.
  const target = plain.files.find((f) => f.path.startsWith("generated/"))!;
  const edited: Snapshot = { revision: "r3", files: plain.files.map((f) => (f === target ? { path: f.path, content: `${f.content}\n# edited\n` } : f)) };
  reads.clear();
  loadSnapshot(counted(edited, "r3"), DEFAULT_LOAD_LIMITS, cache);
  assert.deepEqual(cache.last, { reused: n - 1, restored: 0, parsed: 1 });
  assert.deepEqual([...reads], [[target.path, 1]]);

  // A new process: every file is read back from the store by its digest, none read.
  reads.clear();
  const next = new LoadCache({ store, build });
  assert.deepStrictEqual(loadSnapshot(counted(plain, "r4"), DEFAULT_LOAD_LIMITS, next), loadSnapshot(plain));
  assert.deepEqual(next.last, { reused: 0, restored: n, parsed: 0 });
  assert.equal(reads.size, 0, "no file read");
});

// Upgrade in place: a new binary whose programs differ from the attached ones replaces them on the
// same tcx links (BPF_LINK_UPDATE), without a gap. The "old binary's" programs are simulated by
// loading the datapath object again with one behaviour-preserving instruction prepended (so the
// kernel's tag differs) against the pinned maps, and swapping them onto reconcile's pinned links.
// A long-lived allowed TCP connection exchanges a message every 50 ms across both swaps and must
// see no failure, no reset and no retransmission.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  BpfMap,
  BpfProgram,
  TcxLink,
  loadCollection,
  parseElf,
  type CollectionSpec,
  type ProgramSpec,
} from "../../reconciler/ebpf-loader/index.js";
import { programTags } from "../../reconciler/apply/kernel/attachment.js";
import {
  REPO,
  SEED_IPS,
  connect,
  dryRunJson,
  makeEnv,
  planOps,
  reconcileSrc,
  requireTools,
  show,
  spawnOwned,
  waitFor,
  type Env,
} from "./helpers/reconcile.js";
import { ECHO_SERVER, LONG_CLIENT, type ClientSummary } from "./helpers/long-connection.js";

/** BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm 0: `r0 = 0`. */
const MOV64_R0_0 = Buffer.from([0xb7, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);

/**
 * The same program with `r0 = 0` in front. It changes the tag and nothing else: r0 is not an input
 * of a BPF program (the context is in r1) and every program writes r0 before returning; jumps are
 * relative and bpf-to-bpf calls are not used, so only the relocations' instruction indexes move.
 */
function withPrologue(spec: ProgramSpec): ProgramSpec {
  return {
    ...spec,
    insns: Buffer.concat([MOV64_R0_0, spec.insns]),
    relocations: spec.relocations.map((r) => ({ ...r, insn: r.insn + 1 })),
  };
}

interface PinnedLink {
  /** "<dev>/<hook>", the attachment id. */
  id: string;
  path: string;
}

/** reconcile's pinned tcx links in the host namespace: <pin root>/links/host/<dev>/<hook>. */
function pinnedHostLinks(env: Env): PinnedLink[] {
  const root = path.join(env.pinRoot, "links", "host");
  return readdirSync(root).flatMap((dev) => readdirSync(path.join(root, dev)).map((hook) => ({ id: `${dev}/${hook}`, path: path.join(root, dev, hook) })));
}

interface LinkView {
  linkId: number;
  progId: number;
  progName: string;
  tag: string;
}

function linkView(p: string): LinkView {
  const link = TcxLink.openPinned(p);
  try {
    const info = link.info();
    const prog = BpfProgram.fromId(info.progId);
    try {
      const pi = prog.info();
      return { linkId: info.id, progId: info.progId, progName: pi.name, tag: pi.tag };
    } finally {
      prog.close();
    }
  } finally {
    link.close();
  }
}

/** Loads every program of `spec` (prologue added) against the maps pinned under the env's pin root, and
 *  puts them on the pinned links in place. */
function swapInOldPrograms(env: Env, spec: CollectionSpec, links: PinnedLink[]): void {
  const maps = new Map<string, BpfMap>();
  const old: CollectionSpec = { ...spec, programs: new Map([...spec.programs].map(([n, p]) => [n, withPrologue(p)])) };
  try {
    for (const name of spec.maps.keys()) maps.set(name, BpfMap.openPinned(path.join(env.pinRoot, name)));
    const coll = loadCollection(old, { replaceMaps: maps });
    try {
      for (const l of links) {
        const name = linkView(l.path).progName;
        const prog = coll.programs.get(name);
        assert.ok(prog, `link ${l.id} runs ${name}, which is not in the datapath object`);
        const link = TcxLink.openPinned(l.path);
        try {
          link.update(prog);
        } finally {
          link.close();
        }
      }
    } finally {
      coll.close(); // the links keep their programs
    }
  } finally {
    for (const m of maps.values()) m.close();
  }
}


test("upgrade: a new binary with changed programs replaces them in place without dropping established allowed connections", async (t) => {
  requireTools("bpftool", "python3", "nsenter");
  const env = makeEnv(t, "upgrade");
  const once = await reconcileSrc(env, ["--once"]);
  assert.equal(once.code, 0, show(once));

  const links = pinnedHostLinks(env);
  assert.deepEqual(links.map((l) => l.id).sort(), Object.values(env.hostIf).flatMap((d) => [`${d}/egress`, `${d}/ingress`]).sort());
  const installed = new Map(links.map((l) => [l.id, linkView(l.path)]));

  // Echo server in app1 on the allowed port; a long-lived connection from app2.
  const server = spawnOwned(env, "ip", ["netns", "exec", env.netns.app1, "python3", "-c", ECHO_SERVER, SEED_IPS.app1, "80"]);
  let serverOut = "";
  server.stdout!.on("data", (d: Buffer) => (serverOut += d.toString()));
  await waitFor("the echo server", async () => {
    if (server.exitCode !== null) throw new Error(`echo server exited ${server.exitCode}`);
    return (await connect(env.netns.app2, SEED_IPS.app1, 80, 1)) === "ok";
  }, 15_000, 100);
  const stopFile = path.join(env.tmp, "stop-client");
  const client = spawnOwned(env, "ip", ["netns", "exec", env.netns.app2, "python3", "-c", LONG_CLIENT, SEED_IPS.app1, "80", stopFile]);
  let clientOut = "";
  let clientErr = "";
  client.stdout!.on("data", (d: Buffer) => (clientOut += d.toString()));
  client.stderr!.on("data", (d: Buffer) => (clientErr += d.toString()));
  const clientDone = new Promise<void>((r) => client.on("close", () => r()));
  /** Echoes so far; waits until `n` more have crossed the datapath. */
  const echoes = (): number => Number(/(\d+)\n(?!.*\d)/s.exec(clientOut)?.[1] ?? 0);
  const moreEchoes = (what: string, n: number) =>
    waitFor(`${n} more echoes ${what}`, (() => {
      const from = echoes();
      return () => {
        if (client.exitCode !== null) throw new Error(`client exited ${client.exitCode} ${what}: ${clientOut.slice(-500)} ${clientErr}`);
        return echoes() >= from + n;
      };
    })(), 10_000, 10);
  await moreEchoes("on the new connection", 5);

  // The "old binary's" programs: same behaviour, another tag, on the same links.
  const spec = parseElf(readFileSync(path.join(REPO, "bpf/build/endpoint.o")));
  swapInOldPrograms(env, spec, links);
  const old = new Map(links.map((l) => [l.id, linkView(l.path)]));
  for (const l of links) {
    const before = installed.get(l.id)!;
    const now = old.get(l.id)!;
    assert.equal(now.linkId, before.linkId, `${l.id}: the link was replaced`);
    assert.notEqual(now.progId, before.progId, `${l.id}: program not swapped`);
    assert.equal(now.progName, before.progName);
    assert.ok(programTags(withPrologue(spec.programs.get(now.progName)!)).includes(now.tag), `${l.id}: tag ${now.tag} is not the modified program's`);
    assert.notEqual(now.tag, before.tag);
  }
  await moreEchoes("through the old programs", 5);
  assert.equal(await connect(env.netns.app3, SEED_IPS.app1, 80, 0.5), "timeout", "the old programs must judge as the binary's do");

  // --dry-run: exactly one in-place update per link, from the old tag to the binary's.
  const dry = await dryRunJson(env);
  assert.equal(dry.code, 2, show(dry.run)); // 2: changes pending
  assert.deepEqual(planOps(dry.plan), links.map((l) => `update attachment ${l.id}`).sort(), show(dry.run));
  for (const c of dry.plan.changes) {
    const before = c.before as { tag?: string; program: string };
    const after = c.after as { tag?: string; program: string };
    assert.equal(before.program, after.program, c.id);
    assert.equal(before.tag, old.get(c.id)!.tag, `${c.id}: before`);
    // The binary's tag, as the planner writes it (programTag's form when the kernel's tag is of our program).
    const inst = installed.get(c.id)!.tag;
    const binary = programTags(spec.programs.get(after.program)!);
    assert.equal(after.tag, binary.includes(inst) ? binary[0] : inst, `${c.id}: after`);
  }
  const text = await reconcileSrc(env, ["--dry-run"]);
  assert.equal(text.code, 2, show(text));
  for (const l of links) assert.ok(text.stdout.includes(`~ attachment ${l.id} `), `no "~ attachment ${l.id}" in the plan:\n${text.stdout}`);
  t.diagnostic(`dry-run: ${dry.plan.changes.map((c) => `${c.op} ${c.resource} ${c.id} [${c.reason}]`).join("; ")}`);

  // --once: updated in place: same link ids, the binary's tags (as first installed).
  const upgrade = await reconcileSrc(env, ["--once"]);
  assert.equal(upgrade.code, 0, show(upgrade));
  for (const l of links) {
    const now = linkView(l.path);
    assert.equal(now.linkId, installed.get(l.id)!.linkId, `${l.id}: the link was replaced`);
    assert.notEqual(now.progId, old.get(l.id)!.progId, `${l.id}: still the old program`);
    assert.equal(now.tag, installed.get(l.id)!.tag, `${l.id}: tag`);
  }
  await moreEchoes("through the upgraded programs", 5);
  const again = await dryRunJson(env);
  assert.equal(again.code, 0, show(again.run));
  assert.deepEqual(planOps(again.plan), []);

  // The long-lived connection: nothing lost across both swaps.
  writeFileSync(stopFile, "");
  await clientDone;
  const summary = JSON.parse(clientOut.trim().split("\n").at(-1)!) as ClientSummary;
  t.diagnostic(`long-lived connection: ${summary.ok}/${summary.sent} echoes, ${summary.failures} failures, ${summary.retrans} retransmissions (client), max RTT ${summary.maxRttMs} ms`);
  assert.equal(summary.failures, 0, `${summary.reason}`);
  assert.ok(summary.ok >= 20, `only ${summary.ok} echoes`);
  assert.equal(summary.retrans, 0, "the client retransmitted: a packet was dropped");
  const serverSide = await waitFor("the server's view of the connection", () => {
    const line = serverOut.split("\n").find((x) => x.includes(`"peer": "${summary.local}"`));
    return line ? (JSON.parse(line) as { retrans?: number; error?: string }) : undefined;
  }, 5000, 20);
  assert.equal(serverSide.error, undefined);
  assert.equal(serverSide.retrans, 0, "the server retransmitted: a packet was dropped");

  // Policy unchanged: app2 → app1:80 still allowed, app3 → app1:80 still dropped.
  assert.equal(await connect(env.netns.app2, SEED_IPS.app1, 80, 2), "ok");
  assert.equal(await connect(env.netns.app3, SEED_IPS.app1, 80, 0.5), "timeout");
});

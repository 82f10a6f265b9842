// Program attachments: tcx links (pinned under <pin root>/links/, so they keep enforcing while
// reconcile is not running) or, in tc mode, cls_bpf filters named "reconcile:<program>". A link whose
// program differs (a new binary) is updated in place; only reconcile's own links and filters are seen.

import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { attachmentId } from "../../datapath/desired.js";
import type { AttachmentSpec, DesiredState, StateOf } from "../../datapath/state.js";
import { BpfProgram, TcxLink, loadCollection, programTags, queryTcx, unpin, type Collection, type TcxPosition } from "../../ebpf-loader/index.js";
import { filterDelete, filterList, filterReplaceBpf, linkIndex, linkList, qdiscEnsureClsact, qdiscList, withNetns } from "../../netlink/index.js";
import type { Change } from "../../plan/diff.js";
import type { ObjectResult, StepProgress, Target } from "../target.js";
import type { TcxChain, TcxProgramOnHook } from "../port.js";
import type { KernelContext, PinnedTcxLink } from "./context.js";
import { eachChange } from "./per-object.js";
import { withExpeditedRcu, type RcuKnob } from "./rcu.js";

/** Name reconcile gives its tc filters, and the priority and handle they use. */
const TC_NAME_PREFIX = "reconcile:";
const TC_PRIO = 1;
const TC_HANDLE = 1;
const HOST_DIR = "host";
/** tcx links made or removed in one apply from which RCU grace periods are expedited (when
 *  asked): below it the wait is a few tens of milliseconds, not worth a host-wide knob. */
export const EXPEDITE_FROM = 16;

/** A tcx link is made or removed, so the kernel waits for an RCU grace period (≈ 8.5 ms here, for a
 *  detach as for an attach); a program updated in place (BPF_LINK_UPDATE) does not wait. */
function swapsTcxHook(c: Change<"attachment">): boolean {
  return (c.after?.mode === "tcx") !== (c.before?.mode === "tcx");
}

// Kept here too: callers that reason about attachments look for the tag functions next to them.
export { programTag, programTags } from "../../ebpf-loader/tag.js";

export function linkPinPath(pinRoot: string, a: Pick<AttachmentSpec, "device" | "netns" | "hook">): string {
  return join(pinRoot, "links", a.netns ?? HOST_DIR, a.device, a.hook);
}

export class AttachmentTarget implements Target<"attachment"> {
  readonly kind = "attachment" as const;

  /** `position`: where a fresh tcx link goes among the programs already on the hook ("first": at
   *  the head, ahead of foreign programs). A link that exists is updated in place, never moved.
   *  `expediteRcu`: the knob to expedite RCU grace periods with while a batch of tcx links is
   *  made or removed (rcu.ts); undefined: at the kernel's normal rate. */
  constructor(
    private readonly ctx: KernelContext,
    private readonly position: TcxPosition = "first",
    private readonly expediteRcu?: RcuKnob,
  ) {}

  async observe(desired: DesiredState): Promise<StateOf<"attachment">> {
    const out = new Map<string, AttachmentSpec>();
    // Thousands of links run the same two programs: each program is looked at once per observation.
    const programs = new Map<number, Pick<AttachmentSpec, "program" | "tag">>();
    const links = readPinnedLinks(this.ctx.pinRoot);
    for (const link of links) {
      if (link.ifindex === 0) continue; // its device is gone: the link no longer attaches anything
      const seen: AttachmentSpec = { device: link.device, hook: link.hook, ...(link.netns ? { netns: link.netns } : {}), ...this.programOf(link.progId, programs), mode: "tcx" };
      out.set(attachmentId(seen), seen);
    }
    this.ctx.notePinnedTcxLinks(links);
    // tc filters are not pinned, and may sit on devices the desired state no longer names (an adopted
    // interface at teardown): look on every device with a clsact qdisc in the namespaces observed.
    for (const netns of this.ctx.namespaces(desired)) {
      for (const f of this.ourFilters(netns)) out.set(attachmentId(f), f);
    }
    return out;
  }

  async apply(changes: readonly Change<"attachment">[], _desired?: DesiredState, progress?: StepProgress): Promise<ObjectResult[]> {
    // The links the last observation read are no longer what is pinned. Only this target changes
    // them: a device that is replaced or removed takes its attachments into the same plan.
    if (changes.length > 0) this.ctx.forgetObservedTcxLinks();
    let programs: Collection | undefined;
    const program = (name: string): BpfProgram => {
      programs ??= this.loadPrograms();
      const p = programs.programs.get(name);
      if (!p) throw new Error(`program ${name} is not in the datapath object`);
      return p;
    };
    const makeAll = () =>
      eachChange(changes, (c) => {
        const before = c.before;
        const after = c.after;
        if (before && (!after || after.mode !== before.mode)) this.detach(before);
        if (!after) return;
        if (after.mode === "tc") this.attachTc(after, program(after.program));
        else if (before?.mode === "tcx") this.updateTcx(after, program(after.program));
        else this.attachTcx(after, program(after.program));
      }, progress);
    const expedite = this.expediteRcu && changes.filter(swapsTcxHook).length >= EXPEDITE_FROM;
    try {
      // Awaited here: the programs are closed only once every change is made.
      return await (expedite ? withExpeditedRcu(this.expediteRcu!, makeAll) : makeAll());
    } finally {
      programs?.close(); // links and filters hold their own references to the programs
    }
  }

  private loadPrograms(): Collection {
    const spec = this.ctx.collectionSpec();
    const replaceMaps = new Map();
    for (const name of spec.maps.keys()) {
      const m = this.ctx.map(name);
      if (!m) throw new Error(`map ${name} is not pinned at ${this.ctx.mapPath(name)}; programs cannot be loaded before their maps`);
      replaceMaps.set(name, m);
    }
    return loadCollection(spec, { replaceMaps });
  }

  private attachTcx(a: AttachmentSpec, prog: BpfProgram): void {
    const path = linkPinPath(this.ctx.pinRoot, a);
    unpin(path); // a defunct link of a device that was deleted and made again
    const link = withNetns(a.netns, () => TcxLink.attach(prog, linkIndex(this.ctx.route(a.netns), a.device), a.hook, this.position));
    try {
      this.ctx.ensureDir(dirname(path));
      link.pin(path);
    } catch (err) {
      link.detach();
      throw err;
    } finally {
      link.close();
    }
  }

  private updateTcx(a: AttachmentSpec, prog: BpfProgram): void {
    const link = TcxLink.openPinned(linkPinPath(this.ctx.pinRoot, a));
    try {
      link.update(prog);
    } finally {
      link.close();
    }
  }

  private attachTc(a: AttachmentSpec, prog: BpfProgram): void {
    const sock = this.ctx.route(a.netns);
    qdiscEnsureClsact(sock, a.device);
    filterReplaceBpf(sock, { dev: a.device, direction: a.hook, fd: prog.fd, name: `${TC_NAME_PREFIX}${a.program}`, prio: TC_PRIO, handle: TC_HANDLE });
  }

  private detach(a: AttachmentSpec): void {
    if (a.mode === "tc") {
      filterDelete(this.ctx.route(a.netns), { dev: a.device, direction: a.hook, prio: TC_PRIO, handle: TC_HANDLE, kind: "bpf" });
      return;
    }
    // Dropping the last reference to a link detaches it.
    unpin(linkPinPath(this.ctx.pinRoot, a));
  }

  /** The name and tag of an attached program, read once per observation (`programs`). */
  private programOf(progId: number, programs: Map<number, Pick<AttachmentSpec, "program" | "tag">>): Pick<AttachmentSpec, "program" | "tag"> {
    let seen = programs.get(progId);
    if (!seen) {
      const prog = BpfProgram.fromId(progId);
      try {
        const p = prog.info();
        seen = { program: p.name, tag: this.observedTag(prog, p.name, p.tag) };
        programs.set(progId, seen);
      } finally {
        prog.close();
      }
    }
    return seen;
  }

  /** The kernel's tag of a program, as programTag() would write it when it is this binary's program. */
  private canonicalTag(program: string, tag: string): string {
    const spec = this.ctx.collectionSpec().programs.get(program);
    if (!spec) return tag;
    let tags = specTags.get(spec);
    if (!tags) specTags.set(spec, (tags = programTags(spec))); // hashing a program costs ~0.1 ms
    return tags.includes(tag) ? tags[0] : tag;
  }

  /**
   * The tag to report for an attached program. A program still bound to a map that is no longer the
   * pinned one (the map was migrated to a new layout) is reported as stale, so the plan replaces it
   * in place with one loaded against the current maps, even though its code is the same.
   */
  private observedTag(prog: BpfProgram, name: string, tag: string): string {
    const current = new Set<number>();
    for (const m of this.ctx.collectionSpec().maps.keys()) {
      const id = this.ctx.map(m)?.id;
      if (id !== undefined) current.add(id);
    }
    const stale = prog.mapIds().some((id) => !current.has(id));
    return stale ? `${this.canonicalTag(name, tag)} (bound to replaced maps)` : this.canonicalTag(name, tag);
  }

  private filterTag(name: string, tag: string, progId: number | undefined): string {
    if (progId === undefined) return this.canonicalTag(name, tag);
    const prog = BpfProgram.fromId(progId);
    try {
      return this.observedTag(prog, name, tag);
    } finally {
      prog.close();
    }
  }

  /** reconcile's cls_bpf filters (named "reconcile:<program>") in one namespace. */
  private ourFilters(netns: string | undefined): AttachmentSpec[] {
    const sock = this.ctx.route(netns);
    const clsact = qdiscList(sock).filter((q) => q.kind === "clsact");
    if (clsact.length === 0) return [];
    const names = new Map(linkList(sock).map((l) => [l.index, l.name]));
    const out: AttachmentSpec[] = [];
    for (const q of clsact) {
      const device = names.get(q.index);
      if (device === undefined) continue;
      for (const hook of ["ingress", "egress"] as const) {
        for (const f of filterList(sock, q.index, hook)) {
          const program = f.bpf?.name?.startsWith(TC_NAME_PREFIX) ? f.bpf.name.slice(TC_NAME_PREFIX.length) : undefined;
          if (program === undefined) continue;
          out.push({
            device,
            hook,
            ...(netns ? { netns } : {}),
            program,
            ...(f.bpf!.tag ? { tag: this.filterTag(program, f.bpf!.tag, f.bpf!.id) } : {}),
            mode: "tc",
          });
        }
      }
    }
    return out;
  }
}

/**
 * Every tcx link pinned at <pin root>/links/<netns|host>/<device>/<hook>. The hooks are not
 * listed: a resync at DESIGN scale would read 1,000 device directories (≈ 12 ms) only to learn
 * that each holds ingress and egress; both paths are opened, and one with nothing pinned, or
 * something that is not a tcx link, is skipped (the attachment target plans it).
 */
function readPinnedLinks(pinRoot: string): PinnedTcxLink[] {
  const root = join(pinRoot, "links");
  const out: PinnedTcxLink[] = [];
  for (const ns of safeReaddir(root)) {
    for (const device of safeReaddir(join(root, ns))) {
      for (const hook of HOOKS) {
        const at = { device, hook, ...(ns !== HOST_DIR ? { netns: ns } : {}) };
        try {
          out.push({ ...TcxLink.readPinned(linkPinPath(pinRoot, at)), ...at });
        } catch {
          /* nothing pinned there, or not a tcx link */
        }
      }
    }
  }
  return out;
}

const HOOKS = ["ingress", "egress"] as const;

/**
 * The programs on each hook that carries one of reconcile's pinned tcx links (BPF_PROG_QUERY, one
 * per hook), ours and foreign ones, in run order. Foreign programs are reported, never touched.
 * The links are those the last observation read when nothing was applied since (a no-op resync
 * opens each pinned link once, not twice), else read now.
 */
export function tcxChains(ctx: KernelContext): TcxChain[] {
  const chains: TcxChain[] = [];
  const names = new Map<number, string>();
  const nameOf = (id: number): string => {
    let name = names.get(id);
    if (name === undefined) {
      try {
        const prog = BpfProgram.fromId(id);
        try {
          name = prog.info().name;
        } finally {
          prog.close();
        }
      } catch {
        name = ""; // detached and freed since the query
      }
      names.set(id, name);
    }
    return name;
  };
  for (const link of ctx.observedTcxLinks() ?? readPinnedLinks(ctx.pinRoot)) {
    if (link.ifindex === 0) continue; // its device is gone
    const seen = withNetns(link.netns, () => queryTcx(link.ifindex, link.hook));
    const programs = seen.progIds.map((progId, i): TcxProgramOnHook => {
      const linkId = seen.linkIds[i] ?? 0;
      return { progId, linkId, program: nameOf(progId), owner: linkId === link.id ? "reconcile" : "foreign" };
    });
    chains.push({ device: link.device, hook: link.hook, ...(link.netns ? { netns: link.netns } : {}), programs });
  }
  return chains;
}

/** A foreign program on one of reconcile's hooks, and whether it runs before reconcile's. */
/** programTags() of each program spec of this binary, computed once. */
const specTags = new WeakMap<object, [string, string]>();

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

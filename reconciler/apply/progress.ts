// Progress of a long run (a cold start writes a million entries and attaches thousands of links):
// the events the executor and the service report, and a pure fold of them into counts that the
// CLI's terminal line, its plain lines, the daemon's log and `reconcile status` all show the same
// way. No I/O here: the clock is passed in, rendering is the caller's.

import { RESOURCE_KINDS, type ResourceKind } from "../datapath/state.js";

/** What a run is doing: compiling the manifests, reading the kernel, or applying changes. */
export type ProgressPhase = "compile" | "observe" | "apply";

export type ProgressEvent =
  /** A phase starts; an apply phase says how many changes of each kind it is about to make. */
  | { type: "phase"; phase: ProgressPhase; planned?: Partial<Record<ResourceKind, number>> }
  /** A batch of one kind went to its target: `changes` were tried, `failed` of them failed. */
  | { type: "batch"; resource: ResourceKind; changes: number; failed: number }
  /** Inside a batch (targets that work object by object): `done` of its `of` changes are made. */
  | { type: "step"; resource: ResourceKind; done: number; of: number };

/** Where progress events go; called once per batch (and per object by per-object targets), so it must be cheap. */
export type ProgressSink = (event: ProgressEvent) => void;

/** Kinds whose changes are map entries (a cold start's million): "entries written". */
export const ENTRY_KINDS: readonly ResourceKind[] = ["ipcache", "policy"];

export interface KindProgress {
  resource: ResourceKind;
  /** Changes tried so far (made or failed). */
  done: number;
  /** Changes planned so far (a cold start plans the entries only once the maps exist). */
  total: number;
  failed: number;
}

export interface Count {
  done: number;
  total: number;
}

export interface ProgressSnapshot {
  phase: ProgressPhase;
  elapsedMs: number;
  /** Endpoint records (the endpoint kind) written of those planned. */
  endpoints: Count;
  /** Map entries (ipcache and policy) written of those planned. */
  entries: Count;
  /** Every other change (devices, addresses, routes, maps, attachments...). */
  other: Count;
  /** Kinds with planned changes, in apply order. */
  kinds: KindProgress[];
  done: number;
  total: number;
  failed: number;
}

/** Folds progress events into per-kind counts. */
export class ProgressTracker {
  // Unset until the first phase event (teardown has no compile phase).
  private phase: ProgressPhase | undefined;
  private readonly startedAt: number;
  private readonly kinds = new Map<ResourceKind, KindProgress>();
  // The step count of the batch in flight, until its batch event adds it for good.
  private inFlight: { resource: ResourceKind; done: number } | undefined;

  constructor(private readonly now: () => number) {
    this.startedAt = now();
  }

  /** Whether any phase began yet. */
  get started(): boolean {
    return this.phase !== undefined;
  }

  /** Folds one event; says whether the phase changed (plain output writes a line then). */
  on(event: ProgressEvent): boolean {
    switch (event.type) {
      case "phase": {
        for (const [resource, n] of Object.entries(event.planned ?? {}) as Array<[ResourceKind, number]>) if (n > 0) this.kind(resource).total += n;
        const changed = event.phase !== this.phase;
        this.phase = event.phase;
        return changed;
      }
      case "step":
        this.inFlight = { resource: event.resource, done: event.done };
        return false;
      case "batch": {
        const k = this.kind(event.resource);
        k.done += event.changes;
        k.failed += event.failed;
        this.inFlight = undefined;
        return false;
      }
    }
  }

  snapshot(): ProgressSnapshot {
    const kinds = RESOURCE_KINDS.flatMap((r) => {
      const k = this.kinds.get(r);
      if (!k) return [];
      const extra = this.inFlight?.resource === r ? this.inFlight.done : 0;
      return [{ ...k, done: Math.min(k.total, k.done + extra) }];
    });
    const count = (keep: (k: KindProgress) => boolean): Count => {
      const c = { done: 0, total: 0 };
      for (const k of kinds) if (keep(k)) (c.done += k.done), (c.total += k.total);
      return c;
    };
    const all = count(() => true);
    return {
      phase: this.phase ?? "compile",
      elapsedMs: this.now() - this.startedAt,
      endpoints: count((k) => k.resource === "endpoint"),
      entries: count((k) => ENTRY_KINDS.includes(k.resource)),
      other: count((k) => k.resource !== "endpoint" && !ENTRY_KINDS.includes(k.resource)),
      kinds,
      done: all.done,
      total: all.total,
      failed: kinds.reduce((n, k) => n + k.failed, 0),
    };
  }

  private kind(resource: ResourceKind): KindProgress {
    let k = this.kinds.get(resource);
    if (!k) this.kinds.set(resource, (k = { resource, done: 0, total: 0, failed: 0 }));
    return k;
  }
}

/** Plain output (a pipe, the journal): a line per phase, and between them at most one per this. */
export const PLAIN_INTERVAL_MS = 5000;

/**
 * When plain output writes a line: at every phase change, and otherwise at most once per
 * PLAIN_INTERVAL_MS after the last line written.
 */
export class PlainCadence {
  private last = -Infinity;

  constructor(
    private readonly now: () => number,
    private readonly intervalMs = PLAIN_INTERVAL_MS,
  ) {}

  due(phaseChanged: boolean): boolean {
    const t = this.now();
    if (!phaseChanged && t - this.last < this.intervalMs) return false;
    this.last = t;
    return true;
  }
}

/** "850ms", "12.3s", "1m02s". */
export function formatElapsed(ms: number): string {
  if (ms < 1000) return `${Math.floor(ms)}ms`;
  if (ms < 60_000) return `${(Math.floor(ms / 100) / 10).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

export const PHASE_LABEL: Record<ProgressPhase, string> = { compile: "compiling", observe: "reading the kernel", apply: "applying" };

/**
 * The counts as words, the parts with nothing planned left out:
 * ["endpoints 12/40", "entries 420,000/1,100,000", "other changes 30/80", "3 failed"].
 */
export function countParts(s: ProgressSnapshot): string[] {
  const n = (x: number) => x.toLocaleString("en-US");
  const part = (label: string, c: Count) => (c.total ? [`${label} ${n(c.done)}/${n(c.total)}`] : []);
  return [...part("endpoints", s.endpoints), ...part("entries", s.entries), ...part("other changes", s.other), ...(s.failed ? [`${n(s.failed)} failed`] : [])];
}

// Incremental compile: the next snapshot compiled from the memo of the previous one, recomputing only
// the identities whose selecting rules changed. The result equals compile() of the new model (a
// property test checks deep equality over random edits); unchanged endpoints keep their previous
// EndpointPolicy objects by reference, so later stages (desired state, diff) can skip them by
// identity.
//
// Reuse is allowed only when the identity universe is the same: the same options, the same Identity
// manifests, the same endpoints (names, addresses, nodes, labels, in the same order), the same
// nodes and the same CIDR prefixes. Then the identity allocation, the selector caches and every
// rule's subject selection are still valid, and an identity's policy is a function of the rules
// that select it. Anything else falls back to a full compile, which is always correct.
//
// This file decides what can be reused and matches the rules; the compile itself is the one path of
// policy/compile.ts (compileFrom), the same with or without a previous compile.
//
// A rule counts as changed when it was added or removed, or when its content OR provenance (file,
// line, name: entries carry them) differs; a rule that moved lines is changed. Rules are matched by
// object (the load cache hands out the same objects for unchanged files) and, failing that, by
// their JSON text. Matching by object assumes what every caller does: a Model is never modified
// after it was compiled (edit a copy instead).

import type { CIDRGroupManifest, EndpointManifest, IdentityManifest, Model, NodeManifest, RuleManifest } from "../manifest/model.js";
import { compileFrom, type CompileMemo, type CompileStart, type CompileWork } from "./compile.js";
import { effectiveRule, type EffectiveRule } from "./context.js";
import { type IdentityAllocatorOptions, modelCidrs } from "./identity.js";
import type { CompiledPolicy, CompileOptions } from "./types.js";

/** What an incremental compile did, for logs and benchmarks. */
export interface IncrementalReport extends CompileWork {
  /** True when everything was recomputed. */
  full: boolean;
  /** Why a full compile was needed (when `full`). */
  reason?: string;
}

export interface IncrementalResult {
  policy: CompiledPolicy;
  /** Pass to the next compileIncremental. */
  memo: CompileMemo;
  report: IncrementalReport;
}

/** Compile `model`, reusing what `previous` (the memo of an earlier compile) still makes valid;
 *  without `previous`, or when nothing can be reused, this is the full compile. Pure. */
export function compileIncremental(
  model: Model,
  opts: CompileOptions,
  previous: CompileMemo | undefined,
  idOpts: IdentityAllocatorOptions = {},
): IncrementalResult {
  const reason = previous === undefined ? "no previous compile" : (universeChange(previous, model, opts, idOpts) ?? repeatedRule(model));
  const start = previous !== undefined && reason === undefined ? reuseStart(previous, model) : undefined;
  const { policy, memo, work } = compileFrom(model, opts, idOpts, start);
  return { policy, memo, report: reason === undefined ? { full: false, ...work } : { full: true, reason, ...work } };
}

/** The start of a compile of `model` over `prev`'s identity universe: the previous evaluated form
 *  for every rule manifest that is the same object or has the same JSON text as a previous one; the
 *  others are changed, as are previous rules left unmatched. */
function reuseStart(prev: CompileMemo, model: Model): CompileStart {
  const effective = new Map<RuleManifest, EffectiveRule>();
  const fresh: RuleManifest[] = [];
  for (const m of model.rules) {
    const e = prev.effective.get(m);
    if (e !== undefined) effective.set(m, e);
    else fresh.push(m);
  }
  const changed: EffectiveRule[] = [];
  if (fresh.length > 0 || effective.size !== prev.effective.size) {
    const gone = new Map<string, EffectiveRule[]>();
    for (const [m, e] of prev.effective) {
      if (effective.has(m)) continue;
      const key = JSON.stringify(m);
      const list = gone.get(key);
      if (list) list.push(e);
      else gone.set(key, [e]);
    }
    for (const m of fresh) {
      const same = gone.get(JSON.stringify(m))?.pop();
      if (same !== undefined) {
        effective.set(m, same);
        continue;
      }
      const e = effectiveRule(m);
      effective.set(m, e);
      changed.push(e);
    }
    for (const list of gone.values()) for (const e of list) changed.push(e);
  }
  // Endpoint rules and host policies (nodeSelector) apart, as buildContext keeps them.
  const rules: EffectiveRule[] = [];
  const hostRules: EffectiveRule[] = [];
  for (const m of model.rules) (m.rule.nodeSelector === undefined ? rules : hostRules).push(effective.get(m)!);
  return { previous: prev, ctx: { ...prev.ctx, model, rules, hostRules }, effective, changed };
}

/** Why the identity universe of `model` may differ from the memo's, or undefined when it is the same. */
function universeChange(prev: CompileMemo, model: Model, opts: CompileOptions, idOpts: IdentityAllocatorOptions): string | undefined {
  // All of them, so that an option added later cannot be missed.
  if (!sameJson(opts, prev.opts)) return "options changed";
  if (idOpts !== prev.idOpts && (Object.keys(idOpts).length > 0 || Object.keys(prev.idOpts).length > 0)) return "identity allocator options changed";
  if (!sameList<EndpointManifest>(model.endpoints, prev.model.endpoints)) return "endpoints changed";
  if (!sameList<IdentityManifest>(model.identities, prev.model.identities)) return "Identity manifests changed";
  if (!sameList<NodeManifest>(model.nodes, prev.model.nodes)) return "nodes changed";
  // Rules that name CIDR groups resolve through them: a group change can change a rule's entries
  // without changing the rule.
  if (!sameList<CIDRGroupManifest>(model.cidrGroups ?? [], prev.model.cidrGroups ?? [])) return "CIDR groups changed";
  const cidrs = modelCidrs(model);
  const before = prev.ctx.alloc.byCidr;
  if (cidrs.length !== before.size) return "CIDR identities changed";
  let i = 0;
  for (const c of before.keys()) if (c !== cidrs[i++]) return "CIDR identities changed";
  return undefined;
}

/** A rule object listed twice (a loaded model never has one; a full compile keeps both copies). */
function repeatedRule(model: Model): string | undefined {
  return new Set(model.rules).size === model.rules.length ? undefined : "a rule object appears twice";
}

/** Same items in the same order: each the same object or one with the same JSON text. */
function sameList<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !sameJson(a[i], b[i])) return false;
  return true;
}

function sameJson(a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}


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
// A rule counts as changed when it was added or removed, or when its content OR provenance (file,
// line, name: entries carry them) differs; a rule that moved lines is changed. Rules are matched by
// object (the load cache hands out the same objects for unchanged files) and, failing that, by
// their JSON text. Matching by object assumes what every caller does: a Model is never modified
// after it was compiled (edit a copy instead).

import type { CIDRGroupManifest, EndpointManifest, IdentityManifest, ManifestProblem, Model, NodeManifest, RuleManifest } from "../manifest/model.js";
import {
  buildIpcache,
  byEndpointName,
  byFileLine,
  cidrRuleRefs,
  compileWithMemo,
  type CompileMemo,
  type RuleFacts,
  endpointPolicies,
  hostPolicy,
  internRefs,
  ruleFacts,
} from "./compile.js";
import { effectiveRule, type EffectiveRule } from "./context.js";
import { HOST_ENDPOINT, hostRuleWarnings } from "./host.js";
import { type IdentityAllocatorOptions, modelCidrs } from "./identity.js";
import type { CompiledPolicy, CompileOptions, EndpointPolicy } from "./types.js";

/** What an incremental compile did, for logs and benchmarks. */
export interface IncrementalReport {
  /** True when everything was recomputed. */
  full: boolean;
  /** Why a full compile was needed (when `full`). */
  reason?: string;
  /** Rules added, removed or changed. */
  changedRules: number;
  /** Identities whose policy was recomputed. */
  recomputedIdentities: number;
  /** Local endpoints (the host endpoint included) whose EndpointPolicy was recomputed (the rest
   *  are the previous objects). */
  recomputedEndpoints: number;
  /** Whether the ipcache array is the previous one. */
  ipcacheReused: boolean;
}

export interface IncrementalResult {
  policy: CompiledPolicy;
  /** Pass to the next compileIncremental. */
  memo: CompileMemo;
  report: IncrementalReport;
}

/** Compile `model`, reusing what `previous` (the memo of an earlier compile) still makes valid. Pure. */
export function compileIncremental(
  model: Model,
  opts: CompileOptions,
  previous: CompileMemo | undefined,
  idOpts: IdentityAllocatorOptions = {},
): IncrementalResult {
  const reason = previous === undefined ? "no previous compile" : (universeChange(previous, model, opts, idOpts) ?? repeatedRule(model));
  if (previous === undefined || reason !== undefined) {
    const { policy, memo } = compileWithMemo(model, opts, idOpts);
    return {
      policy,
      memo,
      report: { full: true, reason: reason ?? "no previous compile", changedRules: model.rules.length, recomputedIdentities: memo.localByIdentity.size, recomputedEndpoints: policy.endpoints.length, ipcacheReused: false },
    };
  }
  const prev = previous;

  // Rules: the previous evaluated form for every manifest that is the same object or has the same
  // JSON text as a previous one; the others are changed, as are previous rules left unmatched.
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
  const ctx = { ...prev.ctx, model, rules, hostRules };

  // Per-rule facts (subject selection, selector warnings) are kept per evaluated rule.
  const perRule = prev.perRule;
  const facts = (r: EffectiveRule): RuleFacts => {
    let f = perRule.get(r);
    if (f === undefined) perRule.set(r, (f = ruleFacts(r, prev.subjectIndex, prev.subjectCache, prev.resolver)));
    return f;
  };
  const dirty = new Set<number>();
  for (const r of changed) {
    if (r.manifest.rule.nodeSelector !== undefined) continue; // a host policy: the host endpoint's, below
    for (const id of facts(r).subjects) if (prev.localByIdentity.has(id)) dirty.add(id);
  }

  // Warnings in the order compile() produces them: allocation, rules (model order), sorted; then the ipcache's.
  const warnings: ManifestProblem[] = [...ctx.alloc.problems];
  const rulesFor = new Map<number, EffectiveRule[]>();
  for (const r of rules) {
    const f = facts(r);
    for (const w of f.warnings) warnings.push(w);
    if (dirty.size === 0) continue;
    for (const id of f.subjects) {
      if (!dirty.has(id)) continue;
      const list = rulesFor.get(id);
      if (list) list.push(r);
      else rulesFor.set(id, [r]);
    }
  }

  const recomputed = new Map<string, EndpointPolicy>();
  if (dirty.size > 0) {
    const singles = internRefs(rules);
    for (const id of dirty) {
      for (const p of endpointPolicies(id, prev.localByIdentity.get(id)!, rulesFor.get(id) ?? [], prev.resolver, opts, singles)) recomputed.set(p.endpoint, p);
    }
  }
  // The host endpoint's policy: the previous one while the host policies are the same rules (the
  // nodes, whose labels they select, are part of the universe).
  const prevHost = prev.policy.endpoints.find((p) => p.endpoint === HOST_ENDPOINT);
  const host = sameItems(hostRules, prev.ctx.hostRules) ? prevHost : hostPolicy(ctx, prev.resolver);
  warnings.push(...hostRuleWarnings(ctx));

  // The same local endpoints as before, in the same (name) order.
  let endpoints = prev.policy.endpoints;
  if (recomputed.size > 0 || host !== prevHost) {
    endpoints = [];
    for (const p of prev.policy.endpoints) if (p !== prevHost) endpoints.push(recomputed.get(p.endpoint) ?? p);
    if (host !== undefined) endpoints.push(host);
    endpoints.sort(byEndpointName);
  }

  warnings.sort(byFileLine);
  const cidrRefs = cidrRuleRefs(model);
  const ipcacheReused = sameMap(cidrRefs, prev.cidrRefs);
  let ipcache = prev.policy.ipcache;
  let ipcacheWarnings = prev.ipcacheWarnings;
  if (!ipcacheReused) {
    ipcacheWarnings = [];
    ipcache = buildIpcache(ctx, ipcacheWarnings, cidrRefs);
  }
  for (const w of ipcacheWarnings) warnings.push(w);

  const policy: CompiledPolicy = { revision: model.revision, node: opts.node, identities: ctx.alloc.identities, endpoints, ipcache, warnings };
  const memo: CompileMemo = { ...prev, model, ctx, effective, cidrRefs, ipcacheWarnings, policy };
  return {
    policy,
    memo,
    report: {
      full: false,
      changedRules: changed.length,
      recomputedIdentities: dirty.size,
      recomputedEndpoints: recomputed.size + (host !== undefined && host !== prevHost ? 1 : 0),
      ipcacheReused,
    },
  };
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

function sameItems<T>(a: readonly T[], b: readonly T[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameJson(a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

function sameMap<K, V>(a: ReadonlyMap<K, V>, b: ReadonlyMap<K, V>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

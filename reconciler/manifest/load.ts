// Snapshot → Model: parse every manifest file, validate every document against its kind's schema,
// run the cross-object checks, and return the model together with every problem found (sorted by
// file and line). Pure: the snapshot already holds the file contents.

import type {
  CIDRGroupManifest,
  EndpointManifest,
  IdentityManifest,
  ManifestProblem,
  Model,
  NodeManifest,
  RuleManifest,
} from "./model.js";
import { createHash } from "node:crypto";
import { labelSetKey } from "../policy/labels.js";
import { deserialize, serialize } from "node:v8";
import type { Snapshot, SnapshotFile } from "../source/snapshot.js";
import { Reader, describe, type Field } from "./fields.js";
import { DEFAULT_LIMITS, parseYamlWithLines, YamlParseError, type ParseLimits } from "./yaml.js";
import { readEndpoint } from "./endpoint.js";
import { readIdentity } from "./identity.js";
import { readNode } from "./node.js";
import { readRule } from "./rule.js";
import { readCIDRGroup } from "./cidrgroup.js";
import { ENFORCEMENT_KINDS, readEnforcementAnnotation, refuseEnforcementAnnotation, ruleIsAudit } from "./enforcement.js";

export interface LoadResult {
  /** The validated model; present only when there is no error (warnings may accompany it). */
  model?: Model;
  /** Every error and warning of the snapshot, sorted by file, then line. */
  problems: ManifestProblem[];
}

export interface LoadLimits extends ParseLimits {
  /** Largest accepted snapshot (sum of manifest file sizes), in bytes. */
  maxTotalBytes: number;
}

export const DEFAULT_LOAD_LIMITS: LoadLimits = { ...DEFAULT_LIMITS, maxTotalBytes: 64 * 1024 * 1024 };

/** Thrown by callers that want an exception for an invalid snapshot. */
export class ManifestError extends Error {
  constructor(
    /** All problems (errors and warnings) of the snapshot. */
    readonly problems: ManifestProblem[],
    options?: { cause?: unknown },
  ) {
    const errors = problems.filter((p) => p.severity === "error");
    const head = errors.slice(0, 20).map(formatProblem).join("\n");
    const more = errors.length > 20 ? `\n... and ${errors.length - 20} more` : "";
    super(`invalid manifests (${errors.length} error${errors.length === 1 ? "" : "s"}):\n${head}${more}`, options);
    this.name = "ManifestError";
  }
}

/** `path/to/file.yaml:LINE: Kind/name: spec.field.path: message` (warnings prefixed "warning: "). */
export function formatProblem(p: ManifestProblem): string {
  const parts = [`${p.file}:${p.line}`];
  if (p.object !== undefined) parts.push(p.object);
  if (p.path !== undefined) parts.push(p.path);
  parts.push(p.severity === "warning" ? `warning: ${p.message}` : p.message);
  return parts.join(": ");
}

const YAML_EXT = /\.ya?ml$/i;
const JSON_EXT = /\.json$/i;

/** What the cross-object checks need: the object and the fields to point at. */
interface Seen<T> {
  item: T;
  /** Where the fields a cross-object check may point at were written (packed once cached). */
  fields: Record<string, Field> | PackedFields;
}

/**
 * The fields of one cached object, packed: their lines in a table shared by the whole file, their
 * names and paths in arrays shared by every object with the same ones. A cache holding 100,000
 * endpoints keeps about 80 bytes each instead of six Field objects (≈ 300 bytes); a Field is made
 * only when a check reports a problem (fieldOf).
 */
class PackedFields {
  constructor(
    /** Field names ("name", "ipv4", ...). */
    readonly names: readonly string[],
    /** Their paths ("metadata.name", "spec.ipv4", ...), in the same order. */
    readonly paths: readonly string[],
    /** The file's table of lines. */
    readonly lines: Int32Array,
    /** Where this object's lines start in `lines`. */
    readonly at: number,
  ) {}
}

/** One field of a seen object, or undefined when it has none of that name. */
function fieldOf(s: Seen<unknown>, name: string): Field | undefined {
  const f = s.fields;
  if (!(f instanceof PackedFields)) return f[name];
  const i = f.names.indexOf(name);
  return i < 0 ? undefined : { value: undefined, path: f.paths[i]!, line: f.lines[f.at + i]! };
}

interface Collected {
  endpoints: Seen<EndpointManifest>[];
  identities: Seen<IdentityManifest>[];
  rules: Seen<RuleManifest>[];
  nodes: Seen<NodeManifest>[];
  cidrGroups: Seen<CIDRGroupManifest>[];
}

/** What loading one file on its own gives: its problems and its objects (cross-object checks aside). */
interface FileResult {
  problems: ManifestProblem[];
  got: Collected;
}

/**
 * Where a LoadCache keeps its per-file results between processes (the daemon's state directory),
 * so that a restart does not parse again the files it had already loaded. Results are opaque bytes
 * here; `key` names a file's path, content and limits for one build of the loader (storeKey).
 */
export interface LoadStore {
  /** The bytes stored under `key`, or undefined when there are none (or they are damaged). */
  read(key: string): Uint8Array | undefined;
  write(key: string, bytes: Uint8Array): void;
  /** Forgets every stored result whose key is not in `keys`. */
  retain(keys: ReadonlySet<string>): void;
}

/**
 * Per-file load results of earlier snapshots, reused for a file whose path and content are the same.
 * The content is recognised by the SHA-256 digest its source gives (a directory source, which keeps
 * the text packed: an unchanged file is then never unpacked), else by comparing the text itself
 * (a memcmp, cheaper than hashing it). Loading a file is a pure function of its path, content and the
 * limits, so a reused result is exactly what parsing again would give; the objects are shared between
 * the models of both snapshots, which is why nothing downstream may modify a Model. Only the files of
 * the last snapshot are kept. The cross-object checks run on the whole snapshot every time.
 *
 * With a `store`, a file the cache does not hold is looked up there (by a SHA-256 of the loader's
 * build, limits, path and content digest) before it is parsed, and persist() writes what was parsed since.
 */
export class LoadCache {
  /** Path → the content loaded (its digest when the source gave one, else the text), the limits it
   *  was loaded with, the result and its store key. */
  private readonly files = new Map<string, { content: Content; limits: ParseLimits; result: FileResult; key?: string }>();
  /** Store keys of results parsed since the last persist(). */
  private readonly unsaved = new Set<string>();
  /** A stored result's file left the cache (removed, or its content replaced): the store holds a record it no longer needs. */
  private storeHoldsStale = false;
  /** What the cached objects share (see Shared). */
  private shared = newShared();
  /** The endpoint cross-checks of the last load and the endpoints and nodes they were run on. */
  private checked: { endpoints: readonly unknown[]; nodes: readonly unknown[]; groups: ManifestProblem[][] } | undefined;
  /** Files of the last load taken from the cache, read from the store and parsed. */
  readonly last = { reused: 0, restored: 0, parsed: 0 };

  constructor(private readonly store?: { store: LoadStore; build: string }) {}

  /** The result for one file, parsed only when neither the cache nor its store holds one for this exact content. */
  file(file: SnapshotFile, limits: ParseLimits): FileResult {
    const { path } = file;
    const hit = this.files.get(path);
    if (hit !== undefined && sameContent(hit.content, file) && hit.limits === limits) {
      this.last.reused++;
      return hit.result;
    }
    if (this.shared.shapes.size > 10_000 || this.shared.labelSets.size > 200_000 || this.shared.nodeNames.size > 200_000) this.shared = newShared();
    const content: Content = file.digest !== undefined ? { digest: file.digest } : { text: file.content };
    const key = this.store && storeKey(this.store.build, path, content.digest ?? sha256(content.text!), limits);
    if (hit?.key !== undefined && hit.key !== key) this.storeHoldsStale = true;
    const stored = key !== undefined ? this.restore(key) : undefined;
    if (stored !== undefined) {
      this.last.restored++;
      this.files.set(path, { content, limits, result: stored, key: key! });
      return stored;
    }
    this.last.parsed++;
    const result = loadFileAlone(path, content.text ?? file.content, limits, this.shared);
    this.files.set(path, { content, limits, result, ...(key !== undefined ? { key } : {}) });
    if (key !== undefined) this.unsaved.add(key);
    return result;
  }

  /**
   * Writes results parsed since the last call to the store, until `maxBytes` have been written,
   * and forgets stored results of files no longer loaded. What is left is written by the next call
   * (`remaining`). Throws what the store throws; the results not written are tried again next time.
   */
  persist(maxBytes = Infinity): { written: number; bytes: number; remaining: number } {
    const out = { written: 0, bytes: 0, remaining: 0 };
    if (this.store === undefined || (this.unsaved.size === 0 && !this.storeHoldsStale)) return out;
    const keys = new Set<string>();
    for (const f of this.files.values()) {
      if (f.key === undefined) continue;
      keys.add(f.key);
      if (!this.unsaved.has(f.key)) continue;
      if (out.bytes >= maxBytes) {
        out.remaining++;
        continue;
      }
      const bytes = encodeFileResult(f.result);
      this.store.store.write(f.key, bytes);
      this.unsaved.delete(f.key);
      out.written++;
      out.bytes += bytes.length;
    }
    for (const k of this.unsaved) if (!keys.has(k)) this.unsaved.delete(k);
    if (out.written > 0 || this.storeHoldsStale) {
      this.store.store.retain(keys);
      this.storeHoldsStale = false;
    }
    return out;
  }

  /** A stored result, or undefined when there is none or it cannot be read (then it is parsed again). */
  private restore(key: string): FileResult | undefined {
    try {
      const bytes = this.store!.store.read(key);
      return bytes === undefined ? undefined : decodeFileResult(bytes, this.shared);
    } catch {
      return undefined;
    }
  }

  /** The endpoint cross-checks of the last load, when its endpoints and nodes were these same objects in this order. */
  endpointChecks(endpoints: readonly unknown[], nodes: readonly unknown[]): ManifestProblem[][] | undefined {
    const c = this.checked;
    return c !== undefined && sameItems(c.endpoints, endpoints) && sameItems(c.nodes, nodes) ? c.groups : undefined;
  }

  rememberEndpointChecks(endpoints: readonly unknown[], nodes: readonly unknown[], groups: ManifestProblem[][]): void {
    this.checked = { endpoints, nodes, groups };
  }

  /** Starts a load: counters reset. */
  begin(): void {
    this.last.reused = 0;
    this.last.restored = 0;
    this.last.parsed = 0;
  }

  /** Ends a load: forget files that are no longer in the snapshot. */
  keepOnly(paths: ReadonlySet<string>): void {
    for (const [p, f] of this.files) {
      if (paths.has(p)) continue;
      this.files.delete(p);
      if (f.key !== undefined) this.storeHoldsStale = true;
    }
  }
}

/** What a LoadCache knows of a file's content: the digest its source gave, or else its text. */
type Content = { digest: string; text?: undefined } | { digest?: undefined; text: string };

function sameContent(known: Content, file: SnapshotFile): boolean {
  return known.digest !== undefined ? known.digest === file.digest : file.digest === undefined && known.text === file.content;
}

function sha256(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** Names one file's load result in a store: the loader build, the limits, the path and the SHA-256 of the content. */
function storeKey(build: string, path: string, digest: string, limits: ParseLimits): string {
  return createHash("sha256").update(`${build}\0${JSON.stringify(limits)}\0${path}\0${digest}`).digest("hex");
}

/** A file's result as bytes (V8's serialization: the objects as they are, without prototypes). */
function encodeFileResult(result: FileResult): Uint8Array {
  return serialize(result);
}

/** The inverse of encodeFileResult: the packed fields become PackedFields again, their names and
 *  paths shared with the cache's other objects of the same shape. */
function decodeFileResult(bytes: Uint8Array, shared: Shared): FileResult {
  const result = deserialize(bytes) as FileResult;
  shareEndpointValues(result.got.endpoints, shared);
  for (const s of everySeen(result.got)) {
    const f = s.fields as unknown as { names: string[]; paths: string[]; lines: Int32Array; at: number };
    const shape = sharedShape(shared, f.names, f.paths);
    s.fields = new PackedFields(shape.names, shape.paths, f.lines, f.at);
  }
  return result;
}

/** Every object a file gave, of all kinds. */
function everySeen(got: Collected): Seen<unknown>[] {
  return [...got.endpoints, ...got.identities, ...got.rules, ...got.nodes, ...got.cidrGroups] as Seen<unknown>[];
}

/** The one shape of these field names and paths among the objects that share `shared`. */
function sharedShape(shared: Shared, names: string[], paths: string[]): { names: string[]; paths: string[] } {
  const key = shapeKey(names, paths);
  let shape = shared.shapes.get(key);
  if (shape === undefined) shared.shapes.set(key, (shape = { names, paths }));
  return shape;
}

/**
 * What the objects of the files one load (or one cache) holds share instead of each holding its
 * own copy: the names and paths of their fields (see PackedFields), endpoint label sets and node
 * names. At DESIGN scale 99,000 remote endpoints carry 500 label sets; one array per set (with its
 * labels, their strings and its memoized key) instead of one per endpoint keeps ≈ 15 MiB less
 * alive. They name 99 nodes: the parser and the store each give every endpoint its own copy of
 * the name (≈ 2 MiB), where one string per name does.
 */
interface Shared {
  shapes: Map<string, { names: string[]; paths: string[] }>;
  /** Label set key (labelSetKey) → the first endpoint's set of that key. */
  labelSets: Map<string, EndpointManifest["labels"]>;
  /** Node name → the one string of that name. */
  nodeNames: Map<string, string>;
}

function newShared(): Shared {
  return { shapes: new Map(), labelSets: new Map(), nodeNames: new Map() };
}

/** Points endpoints with equal label sets at one array (label sets are never written to), and
 *  endpoints on one node at one string of its name. */
function shareEndpointValues(endpoints: readonly Seen<EndpointManifest>[], shared: Shared): void {
  for (const s of endpoints) {
    const key = labelSetKey(s.item.labels);
    const first = shared.labelSets.get(key);
    if (first === undefined) shared.labelSets.set(key, s.item.labels);
    else s.item.labels = first;
    const node = s.item.node;
    if (node === undefined) continue;
    const name = shared.nodeNames.get(node);
    if (name === undefined) shared.nodeNames.set(node, node);
    else s.item.node = name;
  }
}

function shapeKey(names: readonly string[], paths: readonly string[]): string {
  return `${names.join("\u0000")}\u0001${paths.join("\u0000")}`;
}

function sameItems(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Load one file into its own result, its objects' fields packed (PackedFields): a cached result
 *  keeps their lines and paths, all the cross-object checks read, not the parsed YAML. */
function loadFileAlone(path: string, content: string, limits: ParseLimits, shared: Shared): FileResult {
  const result: FileResult = { problems: [], got: { endpoints: [], identities: [], rules: [], nodes: [], cidrGroups: [] } };
  loadFile(path, content, limits, result.problems, result.got);
  shareEndpointValues(result.got.endpoints, shared);
  const seen = everySeen(result.got);
  let count = 0;
  for (const s of seen) count += Object.keys(s.fields).length;
  const lines = new Int32Array(count);
  let at = 0;
  for (const s of seen) {
    const entries = Object.entries(s.fields as Record<string, Field>);
    const shape = sharedShape(
      shared,
      entries.map(([k]) => k),
      entries.map(([, f]) => f.path),
    );
    entries.forEach(([, f], i) => (lines[at + i] = f.line));
    s.fields = new PackedFields(shape.names, shape.paths, lines, at);
    at += entries.length;
  }
  return result;
}

/**
 * Validate a whole snapshot. Never throws for bad input; every problem is in `problems`. With a
 * `cache`, files whose content it already loaded are not parsed again (see LoadCache).
 */
export function loadSnapshot(snapshot: Snapshot, limits: LoadLimits = DEFAULT_LOAD_LIMITS, cache?: LoadCache): LoadResult {
  const problems: ManifestProblem[] = [];
  const got: Collected = { endpoints: [], identities: [], rules: [], nodes: [], cidrGroups: [] };
  const files = [...snapshot.files]
    .filter((f) => YAML_EXT.test(f.path) || JSON_EXT.test(f.path))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

  let total = 0;
  const shared = newShared();
  cache?.begin();
  for (const file of files) {
    total += file.size ?? Buffer.byteLength(file.content, "utf8");
    if (total > limits.maxTotalBytes) {
      problems.push({
        file: file.path,
        line: 1,
        severity: "error",
        message: `snapshot too large (expected at most ${limits.maxTotalBytes} bytes of manifests in total, got more than that by this file)`,
      });
      break;
    }
    // Without a cache each file's objects are packed too: what the cross-object checks keep of a
    // 100,000-endpoint tree until the end of the load is then ≈ 8 MiB of lines, not ≈ 40 MiB of Fields.
    const one = cache === undefined ? loadFileAlone(file.path, file.content, limits, shared) : cache.file(file, limits);
    for (const p of one.problems) problems.push(p);
    for (const s of one.got.endpoints) got.endpoints.push(s);
    for (const s of one.got.identities) got.identities.push(s);
    for (const s of one.got.rules) got.rules.push(s);
    for (const s of one.got.nodes) got.nodes.push(s);
    for (const s of one.got.cidrGroups) got.cidrGroups.push(s);
  }
  cache?.keepOnly(new Set(files.map((f) => f.path)));
  crossCheck(got, problems, cache);

  problems.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line));
  if (problems.some((p) => p.severity === "error")) return { problems };
  return {
    problems,
    model: {
      revision: snapshot.revision,
      endpoints: got.endpoints.map((s) => s.item),
      identities: got.identities.map((s) => s.item),
      rules: got.rules.map((s) => s.item),
      nodes: got.nodes.map((s) => s.item),
      cidrGroups: got.cidrGroups.map((s) => s.item),
    },
  };
}

function loadFile(path: string, content: string, limits: ParseLimits, problems: ManifestProblem[], got: Collected): void {
  let parsed;
  try {
    parsed = parseYamlWithLines(content, limits);
  } catch (err) {
    if (err instanceof YamlParseError) {
      problems.push({ file: path, line: err.line, severity: "error", message: err.message });
      return;
    }
    throw err;
  }
  if (JSON_EXT.test(path)) {
    loadJsonRules(path, parsed.documents, new Reader(path, parsed.lines, problems), got);
    return;
  }
  for (const doc of parsed.documents) {
    if (doc.value === null || doc.value === undefined) continue;
    loadDocument(new Reader(path, parsed.lines, problems), doc.value, doc.line, got);
  }
}

/** A `cilium policy import` file: one JSON array of rules, each named by its `name` label. */
function loadJsonRules(path: string, docs: { value: unknown; line: number }[], r: Reader, got: Collected): void {
  const nonEmpty = docs.filter((d) => d.value !== null && d.value !== undefined);
  if (nonEmpty.length === 0) return;
  const root = r.root(nonEmpty[0]!.value, nonEmpty[0]!.line);
  const items = r.list(root, true);
  if (items === undefined) return;
  items.forEach((item, i) => {
    // Paths inside a JSON rule start at the rule, which the object name and line already identify.
    const it: Field = { ...item, path: "" };
    const labels = r.child(it, "labels").value;
    const nameLabel = Array.isArray(labels)
      ? labels.find((l: unknown) => typeof l === "object" && l !== null && (l as Record<string, unknown>)["key"] === "name")
      : undefined;
    const nameValue = nameLabel !== undefined ? (nameLabel as Record<string, unknown>)["value"] : undefined;
    const name = typeof nameValue === "string" && nameValue !== "" ? nameValue : `${path}#${i}`;
    r.object = `Rule/${name}`;
    const rule = readRule(r, it);
    const audit = ruleIsAudit(r, it, undefined);
    if (rule !== undefined) {
      got.rules.push({
        item: { kind: "Rule", name, origin: "json", rule, ...(audit ? { audit } : {}), at: { file: path, line: it.line } },
        fields: { name: it },
      });
    }
  });
}

const KINDS: Record<string, readonly string[]> = {
  "reconcile/v1": ["Endpoint", "Identity", "Rule", "Node"],
  "cilium.io/v2": ["CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy", "CiliumCIDRGroup"],
  "cilium.io/v2alpha1": ["CiliumCIDRGroup"],
};

function loadDocument(r: Reader, value: unknown, line: number, got: Collected): void {
  const doc = r.root(value, line);
  if (r.mapping(doc, true) === undefined) return;
  const apiField = r.child(doc, "apiVersion");
  const kindField = r.child(doc, "kind");
  const earlyName = r.child(r.child(doc, "metadata"), "name").value;
  if (typeof kindField.value === "string" && typeof earlyName === "string") r.object = `${kindField.value}/${earlyName}`;
  const apiVersion = r.string(apiField, true);
  const kind = r.string(kindField, true);
  if (apiVersion === undefined || kind === undefined) return;
  const kinds = KINDS[apiVersion];
  if (kinds === undefined) {
    r.error(apiField, `unknown apiVersion (expected ${Object.keys(KINDS).join(" or ")}, got ${describe(apiVersion)})`);
    return;
  }
  if (!kinds.includes(kind)) {
    r.error(kindField, `unknown kind for ${apiVersion} (expected one of ${kinds.join(", ")}, got ${describe(kind)})`);
    return;
  }
  const cilium = kind === "CiliumNetworkPolicy" || kind === "CiliumClusterwideNetworkPolicy";
  r.onlyKeys(doc, cilium ? ["apiVersion", "kind", "metadata", "spec", "specs"] : ["apiVersion", "kind", "metadata", "spec"], {
    status: "status is written by Cilium and is not read by reconcile (remove it)",
  });

  const meta = r.child(doc, "metadata");
  if (r.mapping(meta, true) === undefined) return;
  const nameField = r.child(meta, "name");
  const rawName = typeof nameField.value === "string" ? nameField.value : undefined;
  r.object = `${kind}/${rawName ?? "?"}`;
  const name = r.name(nameField, true);
  const metaKeys = ["name", "labels", "annotations"];
  if (kind === "CiliumNetworkPolicy") metaKeys.push("namespace");
  r.onlyKeys(
    meta,
    metaKeys,
    kind === "CiliumClusterwideNetworkPolicy"
      ? { namespace: "a cluster-wide policy has no namespace (remove metadata.namespace)" }
      : kind === "CiliumCIDRGroup"
        ? { namespace: "a CiliumCIDRGroup is cluster-scoped and has no namespace (remove metadata.namespace)" }
        : {},
  );
  const annotations = r.child(meta, "annotations");
  if (r.mapping(annotations) !== undefined) {
    for (const k of Object.keys(annotations.value as object)) r.string(r.child(annotations, k), true);
  }
  if (!(ENFORCEMENT_KINDS as readonly string[]).includes(kind)) refuseEnforcementAnnotation(r, meta, kind);
  // Endpoint and Node read their labels themselves (they use them); others are only checked.
  if (kind !== "Endpoint" && kind !== "Node" && kind !== "CiliumCIDRGroup") r.labelMap(r.child(meta, "labels"), "k8s");
  if (name === undefined) return;

  switch (kind) {
    case "Endpoint": {
      const ep = readEndpoint(r, doc, name);
      if (ep !== undefined) got.endpoints.push({ item: ep, fields: endpointFields(r, doc) });
      return;
    }
    case "Identity": {
      const id = readIdentity(r, doc, name);
      const spec = r.child(doc, "spec");
      if (id !== undefined) got.identities.push({ item: id, fields: { name: nameField, id: r.child(spec, "id"), labels: r.child(spec, "labels") } });
      return;
    }
    case "Node": {
      const n = readNode(r, doc, name);
      if (n !== undefined) got.nodes.push({ item: n, fields: { name: nameField } });
      return;
    }
    case "Rule": {
      const spec = r.child(doc, "spec");
      const rule = readRule(r, spec);
      const audit = ruleIsAudit(r, spec, readEnforcementAnnotation(r, meta));
      if (rule !== undefined) {
        got.rules.push({ item: { kind: "Rule", name, origin: "Rule", rule, ...(audit ? { audit } : {}), at: { file: r.file, line: doc.line } }, fields: { name: nameField } });
      }
      return;
    }
    case "CiliumCIDRGroup": {
      const g = readCIDRGroup(r, doc, name);
      if (g !== undefined) got.cidrGroups.push({ item: g, fields: { name: nameField } });
      return;
    }
    default:
      loadCiliumPolicy(r, doc, kind as "CiliumNetworkPolicy" | "CiliumClusterwideNetworkPolicy", name, got);
  }
}

function loadCiliumPolicy(
  r: Reader,
  doc: Field,
  kind: "CiliumNetworkPolicy" | "CiliumClusterwideNetworkPolicy",
  name: string,
  got: Collected,
): void {
  const meta = r.child(doc, "metadata");
  const namespace = kind === "CiliumNetworkPolicy" ? r.name(r.child(meta, "namespace"), false) : undefined;
  const spec = r.child(doc, "spec");
  const specs = r.child(doc, "specs");
  const annotation = readEnforcementAnnotation(r, meta);
  const add = (f: Field, ruleName: string): void => {
    const rule = readRule(r, f);
    const audit = ruleIsAudit(r, f, annotation);
    if (rule === undefined) return;
    if (rule.nodeSelector !== undefined && kind === "CiliumNetworkPolicy") {
      // Cilium's host policies are cluster-wide: a namespaced policy cannot select nodes.
      r.error(r.child(f, "nodeSelector"), "a host policy (nodeSelector) must be a CiliumClusterwideNetworkPolicy (expected kind CiliumClusterwideNetworkPolicy or Rule, got CiliumNetworkPolicy)");
      return;
    }
    const item: RuleManifest = { kind: "Rule", name: ruleName, origin: kind, rule, ...(audit ? { audit } : {}), at: { file: r.file, line: f.line } };
    if (namespace !== undefined) item.namespace = namespace;
    got.rules.push({ item, fields: { name: f } });
  };
  if (spec.value == null && specs.value == null) {
    r.error(doc, "a policy needs rules (expected spec or specs, got neither)");
    return;
  }
  if (spec.value != null) add(spec, name);
  const items = r.list(specs);
  items?.forEach((it, i) => add(it, `${name}#${i}`));
}

function endpointFields(r: Reader, doc: Field): Record<string, Field> {
  const spec = r.child(doc, "spec");
  const iface = r.child(spec, "interface");
  return {
    name: r.child(r.child(doc, "metadata"), "name"),
    node: r.child(spec, "node"),
    ipv4: r.child(spec, "ipv4"),
    ipv6: r.child(spec, "ipv6"),
    interface: r.child(iface, "name"),
    create: r.child(iface, "create"),
  };
}

// ---- cross-object checks ----

/** Where the cross-object checks report: `problems`, or one group of the endpoint checks. */
class ProblemSink {
  constructor(private readonly out: ManifestProblem[]) {}

  push(file: string, f: Field, object: string, message: string, severity: "error" | "warning" = "error"): void {
    const p: ManifestProblem = { file, line: f.line, object, message, severity };
    if (f.path !== "") p.path = f.path;
    this.out.push(p);
  }

  /** Report every item whose key was already used by an earlier item. */
  unique<T extends { at: { file: string; line: number } }>(
    items: Seen<T>[],
    key: (s: Seen<T>) => string | undefined,
    field: string,
    object: (t: T) => string,
    what: (t: T) => string,
  ): void {
    const first = new Map<string, T>();
    for (const s of items) {
      const k = key(s);
      if (k === undefined) continue;
      const prev = first.get(k);
      if (prev === undefined) {
        first.set(k, s.item);
        continue;
      }
      const where = `${prev.at.file}:${prev.at.line}`;
      this.push(s.item.at.file, fieldOf(s, field) ?? fieldOf(s, "name")!, object(s.item), `${what(s.item)} (first used by ${object(prev)} at ${where})`);
    }
  }
}

const epObj = (e: EndpointManifest): string => `Endpoint/${e.name}`;
const idObj = (i: IdentityManifest): string => `Identity/${i.name}`;
const nodeOf = (e: EndpointManifest): string => e.node ?? "";

function crossCheck(got: Collected, problems: ManifestProblem[], cache?: LoadCache): void {
  const sink = new ProblemSink(problems);
  // The endpoint checks cost the most (five passes over every endpoint) and depend only on the
  // endpoints (and the nodes, for the last): reused from the last load while both are the same
  // objects. Run in three groups to keep the order of the problems what it is without a cache.
  const reused = cache?.endpointChecks(got.endpoints, got.nodes);
  const groups: ManifestProblem[][] = reused ?? [[], [], []];
  const endpointChecks = (group: number, checks: (sink: ProblemSink) => void): void => {
    if (reused === undefined) checks(new ProblemSink(groups[group]!));
    for (const p of groups[group]!) problems.push(p);
  };

  endpointChecks(0, (s) => s.unique(got.endpoints, (e) => e.item.name, "name", epObj, () => "duplicate Endpoint name"));
  sink.unique(got.identities, (s) => s.item.name, "name", idObj, () => "duplicate Identity name");
  sink.unique(got.nodes, (s) => s.item.name, "name", (n) => `Node/${n.name}`, () => "duplicate Node name");
  sink.unique(got.cidrGroups, (s) => s.item.name, "name", (g) => `CiliumCIDRGroup/${g.name}`, () => "duplicate CiliumCIDRGroup name");
  checkGroupRefs(sink, got);
  sink.unique(
    got.rules,
    (s) => `${s.item.namespace ?? ""}/${s.item.name}`,
    "name",
    (r) => `Rule/${r.namespace !== undefined ? `${r.namespace}/` : ""}${r.name}`,
    () => "duplicate rule name",
  );
  endpointChecks(1, (s) => checkEndpointAddresses(s, got));
  sink.unique(got.identities, (s) => String(s.item.id), "id", idObj, (i) => `duplicate identity number ${i.id}`);
  sink.unique(got.identities, (s) => JSON.stringify(s.item.labels), "labels", idObj, () => "duplicate label set (one label set has one identity)");
  endpointChecks(2, (s) => checkEndpointNodes(s, got));
  cache?.rememberEndpointChecks(got.endpoints, got.nodes, groups);
}

/** cidrGroupRef naming no CiliumCIDRGroup: Cilium keeps the rule and the reference selects no
 *  address until the group exists; say so. */
function checkGroupRefs(sink: ProblemSink, got: Collected): void {
  const groupNames = new Set(got.cidrGroups.map((g) => g.item.name));
  for (const s of got.rules) {
    const r = s.item.rule;
    for (const sec of [r.ingress, r.egress, r.ingressDeny, r.egressDeny]) {
      for (const p of sec) {
        for (const c of p.cidrs ?? []) {
          if (c.groupRef !== undefined && !groupNames.has(c.groupRef)) {
            sink.push(p.at.file, { value: undefined, path: "", line: p.at.line }, `Rule/${s.item.name}`, `cidrGroupRef ${JSON.stringify(c.groupRef)} names no CiliumCIDRGroup, so it selects no address`, "warning");
          }
        }
      }
    }
  }
}

/** Addresses and interfaces two endpoints of one node claim. */
function checkEndpointAddresses(sink: ProblemSink, got: Collected): void {
  sink.unique(got.endpoints, (s) => (s.item.ipv4 !== undefined ? `${nodeOf(s.item)}|${s.item.ipv4}` : undefined), "ipv4", epObj, (e) => `duplicate IPv4 address ${e.ipv4} on the same node`);
  sink.unique(got.endpoints, (s) => (s.item.ipv6 !== undefined ? `${nodeOf(s.item)}|${s.item.ipv6}` : undefined), "ipv6", epObj, (e) => `duplicate IPv6 address ${e.ipv6} on the same node`);
  // A macvlan's interface name lives inside its own namespace; a veth's host side shares the host's.
  sink.unique(
    got.endpoints,
    (s) => `${nodeOf(s.item)}|${s.item.create?.kind === "macvlan" ? `netns:${s.item.create.netns}/` : ""}${s.item.interfaceName}`,
    "interface",
    epObj,
    (e) => `duplicate interface name ${e.interfaceName} on the same node`,
  );
  sink.unique(
    got.endpoints,
    (s) => (s.item.create !== undefined ? `${nodeOf(s.item)}|${s.item.create.netns}|${s.item.create.ifname}` : undefined),
    "create",
    epObj,
    (e) => `interface ${e.create!.ifname} in netns ${e.create!.netns} is also created by another endpoint`,
  );
}

/** Endpoints on a node no Node manifest names (only when there are Node manifests). */
function checkEndpointNodes(sink: ProblemSink, got: Collected): void {
  if (got.nodes.length === 0) return;
  const names = new Set(got.nodes.map((n) => n.item.name));
  for (const s of got.endpoints) {
    if (s.item.node !== undefined && !names.has(s.item.node)) {
      sink.push(
        s.item.at.file,
        fieldOf(s, "node")!,
        epObj(s.item),
        `no Node manifest with this name (expected one of ${[...names].sort().join(", ")}, got "${s.item.node}")`,
        "warning",
      );
    }
  }
}

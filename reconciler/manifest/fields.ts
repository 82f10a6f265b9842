// Small typed readers over parsed YAML values. Each reader reports a problem with the field's own
// file, line and dotted path and returns undefined instead of throwing, so one pass collects every
// problem of a document.

import { canonicalIP, formatAddress, parseIPv4, parseIPv6, readPrefix, type Prefix } from "./ip.js";
import type { Label, ManifestProblem } from "./model.js";
import type { LineIndex } from "./yaml.js";

/** A value at a place in a document. */
export interface Field {
  /** The parsed value; undefined when the field is absent. */
  value: unknown;
  /** Dotted path from the document root, e.g. "spec.ingress[0].toPorts". "" for the root. */
  path: string;
  /** 1-based line of the field (its key's line, or its item's line). */
  line: number;
}

/** Collects problems for one document of one file. */
export class Reader {
  /** "Kind/name" of the object being read, once known. */
  object: string | undefined;

  constructor(
    /** File path relative to the source root. */
    readonly file: string,
    /** Key and item lines of the file's collections. */
    readonly lines: LineIndex,
    /** Where problems are appended. */
    readonly problems: ManifestProblem[],
  ) {}

  root(value: unknown, line: number): Field {
    return { value, path: "", line };
  }

  /** The field `key` of mapping field `f` (value undefined when absent or when f is no mapping). */
  child(f: Field, key: string): Field {
    const parent = isMapping(f.value) ? f.value : undefined;
    const value = parent !== undefined && Object.prototype.hasOwnProperty.call(parent, key) ? parent[key] : undefined;
    const keyLine = parent !== undefined ? this.lines.get(parent)?.keys.get(key) : undefined;
    return { value, path: joinPath(f.path, key), line: keyLine ?? f.line };
  }

  /** Item `i` of sequence field `f`. */
  item(f: Field, i: number): Field {
    const list = Array.isArray(f.value) ? (f.value as unknown[]) : [];
    const line = this.lines.get(list)?.items[i];
    return { value: list[i], path: `${f.path}[${i}]`, line: line ?? f.line };
  }

  error(f: Field, message: string): void {
    this.report(f, message, "error");
  }

  warn(f: Field, message: string): void {
    this.report(f, message, "warning");
  }

  report(f: Field, message: string, severity: "error" | "warning"): void {
    const p: ManifestProblem = { file: this.file, line: f.line, message, severity };
    if (this.object !== undefined) p.object = this.object;
    if (f.path !== "") p.path = f.path;
    this.problems.push(p);
  }

  /** Number of errors reported so far (to tell whether a section was clean). */
  errorCount(): number {
    return this.problems.filter((p) => p.severity === "error").length;
  }

  // ---- shape ----

  /** Require a mapping. Absent: error when required, else undefined without a problem. */
  mapping(f: Field, required = false): Record<string, unknown> | undefined {
    if (f.value === undefined || f.value === null) {
      if (required) this.error(f, "required field is missing (expected a mapping)");
      return undefined;
    }
    if (!isMapping(f.value)) {
      this.error(f, `wrong type (expected a mapping, got ${describe(f.value)})`);
      return undefined;
    }
    return f.value;
  }

  /** Require a list and return its item fields. */
  list(f: Field, required = false): Field[] | undefined {
    if (f.value === undefined || f.value === null) {
      if (required) this.error(f, "required field is missing (expected a list)");
      return undefined;
    }
    if (!Array.isArray(f.value)) {
      this.error(f, `wrong type (expected a list, got ${describe(f.value)})`);
      return undefined;
    }
    return f.value.map((_, i) => this.item(f, i));
  }

  /**
   * Report every key of mapping `f` that is not in `allowed`. Keys in `unsupported` are fields the
   * upstream format has but reconcile does not implement: their message says so (never ignored).
   */
  onlyKeys(f: Field, allowed: readonly string[], unsupported: Readonly<Record<string, string>> = {}): void {
    if (!isMapping(f.value)) return;
    for (const key of Object.keys(f.value)) {
      if (allowed.includes(key)) continue;
      const c = this.child(f, key);
      const why = Object.prototype.hasOwnProperty.call(unsupported, key) ? unsupported[key] : undefined;
      if (why !== undefined) {
        this.error(c, why);
      } else {
        this.error(c, `unknown field (expected one of ${allowed.join(", ")}, got "${key}")`);
      }
    }
  }

  // ---- scalars ----

  string(f: Field, required = false): string | undefined {
    if (f.value === undefined || f.value === null) {
      if (required) this.error(f, "required field is missing (expected a string)");
      return undefined;
    }
    if (typeof f.value !== "string") {
      this.error(f, `wrong type (expected a string, got ${describe(f.value)})`);
      return undefined;
    }
    return f.value;
  }

  bool(f: Field): boolean | undefined {
    if (f.value === undefined || f.value === null) return undefined;
    if (typeof f.value !== "boolean") {
      this.error(f, `wrong type (expected true or false, got ${describe(f.value)})`);
      return undefined;
    }
    return f.value;
  }

  /** An integer in [min, max]. Strings are not accepted. */
  int(f: Field, min: number, max: number, required = false): number | undefined {
    if (f.value === undefined || f.value === null) {
      if (required) this.error(f, `required field is missing (expected an integer ${min}..${max})`);
      return undefined;
    }
    if (typeof f.value !== "number" || !Number.isInteger(f.value)) {
      this.error(f, `wrong type (expected an integer ${min}..${max}, got ${describe(f.value)})`);
      return undefined;
    }
    if (f.value < min || f.value > max) {
      this.error(f, `out of range (expected an integer ${min}..${max}, got ${f.value})`);
      return undefined;
    }
    return f.value;
  }

  /** A string matching `check`; `expected` describes the format for the message. */
  formatted(f: Field, check: (s: string) => boolean, expected: string, required = false): string | undefined {
    const s = this.string(f, required);
    if (s === undefined) return undefined;
    if (!check(s)) {
      this.error(f, `invalid value (expected ${expected}, got ${describe(s)})`);
      return undefined;
    }
    return s;
  }

  /** An object name: DNS-1123 subdomain. */
  name(f: Field, required = true): string | undefined {
    return this.formatted(f, isDnsSubdomain, "a DNS-1123 name: lower-case letters, digits, '-' and '.', at most 253 characters", required);
  }

  /** An IPv4 address (dotted quad). */
  ipv4(f: Field, required = false): string | undefined {
    const s = this.string(f, required);
    if (s === undefined) return undefined;
    const b = parseIPv4(s);
    if (b === undefined) {
      this.error(f, `invalid IPv4 address (expected a dotted quad like 192.0.2.1, got ${describe(s)})`);
      return undefined;
    }
    return b.join(".");
  }

  /** An IPv6 address, returned in canonical compressed lower-case form. */
  ipv6(f: Field, required = false): string | undefined {
    const s = this.string(f, required);
    if (s === undefined) return undefined;
    const b = parseIPv6(s);
    if (b === undefined) {
      this.error(f, `invalid IPv6 address (expected an address like fd00::1, got ${describe(s)})`);
      return undefined;
    }
    return formatAddress(b, 0, 6);
  }

  /** An IPv4 or IPv6 address, canonical. */
  ip(f: Field, required = false): string | undefined {
    const s = this.string(f, required);
    if (s === undefined) return undefined;
    const canon = canonicalIP(s);
    if (canon === undefined) {
      this.error(f, `invalid IP address (expected IPv4 or IPv6 like 192.0.2.1 or fd00::1, got ${describe(s)})`);
    }
    return canon;
  }

  /** A CIDR prefix (a bare address means /32 or /128), canonical; host bits must be zero. */
  cidr(f: Field, required = false): Prefix | undefined {
    const s = this.string(f, required);
    if (s === undefined) return undefined;
    const r = parseCIDR(s);
    if (typeof r === "string") {
      this.error(f, r);
      return undefined;
    }
    return r;
  }

  /**
   * A label map (`key: value`, key optionally "source:key"). Keys without a source get
   * `defaultSource`. Returns the labels sorted by source then key.
   */
  labelMap(f: Field, defaultSource: string, forbiddenSources: readonly string[] = []): Label[] | undefined {
    const m = this.mapping(f);
    if (m === undefined) return f.value === undefined || f.value === null ? [] : undefined;
    const out: Label[] = [];
    const seen = new Map<string, string>();
    let ok = true;
    for (const rawKey of Object.keys(m)) {
      const c = this.child(f, rawKey);
      const parsed = parseLabelKey(rawKey, defaultSource);
      if (typeof parsed === "string") {
        this.error(c, parsed);
        ok = false;
        continue;
      }
      if (forbiddenSources.includes(parsed.source)) {
        this.error(c, `label source "${parsed.source}" cannot be used here (expected a source such as k8s or container, got "${rawKey}")`);
        ok = false;
        continue;
      }
      const value = this.labelValue(c);
      if (value === undefined) {
        ok = false;
        continue;
      }
      const id = `${parsed.source}:${parsed.key}`;
      const prev = seen.get(id);
      if (prev !== undefined) {
        this.error(c, `duplicate label ${id} (also written as "${prev}")`);
        ok = false;
        continue;
      }
      seen.set(id, rawKey);
      out.push({ source: parsed.source, key: parsed.key, value });
    }
    return ok ? sortLabels(out) : undefined;
  }

  /** A label value: a string of at most 63 characters in Kubernetes' label value syntax. */
  labelValue(f: Field): string | undefined {
    if (typeof f.value !== "string") {
      this.error(f, `wrong type for a label value (expected a string; quote it, got ${describe(f.value)})`);
      return undefined;
    }
    if (!isLabelValue(f.value)) {
      this.error(f, `invalid label value (expected at most 63 characters of letters, digits, '-', '_', '.', starting and ending alphanumeric, got ${describe(f.value)})`);
      return undefined;
    }
    return f.value;
  }
}

// ---- pure helpers ----

export function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function joinPath(parent: string, key: string): string {
  const part = /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? key : JSON.stringify(key);
  if (parent === "") return part.startsWith('"') ? `[${part}]` : part;
  return part.startsWith('"') ? `${parent}[${part}]` : `${parent}.${part}`;
}

/** Short description of a value for "got ..." in messages. */
export function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (v instanceof Date) return `a date (${v.toISOString()}; quote it)`;
  if (typeof v === "object") return "a mapping";
  if (typeof v === "string") {
    const s = JSON.stringify(v);
    return s.length > 66 ? `${s.slice(0, 60)}..." (${v.length} characters)` : s;
  }
  return String(v);
}

export function sortLabels(labels: Label[]): Label[] {
  return [...labels].sort((a, b) => cmp(a.source, b.source) || cmp(a.key, b.key));
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function isDnsSubdomain(s: string): boolean {
  return s.length > 0 && s.length <= 253 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(s);
}

export function isLabelValue(s: string): boolean {
  return s.length <= 63 && /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(s);
}

/** Label key (without source): optional DNS prefix "/", then a name of at most 63 characters. */
export function isLabelKey(s: string): boolean {
  const slash = s.indexOf("/");
  const prefix = slash >= 0 ? s.slice(0, slash) : undefined;
  const name = slash >= 0 ? s.slice(slash + 1) : s;
  if (prefix !== undefined && !isDnsSubdomain(prefix)) return false;
  return name.length > 0 && name.length <= 63 && /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(name);
}

/** Split "source:key" (source optional). Returns a message string when invalid. */
export function parseLabelKey(raw: string, defaultSource: string): { source: string; key: string } | string {
  const colon = raw.indexOf(":");
  const source = colon >= 0 ? raw.slice(0, colon) : defaultSource;
  const key = colon >= 0 ? raw.slice(colon + 1) : raw;
  if (colon >= 0 && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(source)) {
    return `invalid label source (expected lower-case letters, digits and '-' before ':', got ${describe(raw)})`;
  }
  if (!isLabelKey(key)) {
    return `invalid label key (expected [source:][prefix/]name, name at most 63 letters, digits, '-', '_', '.', got ${describe(raw)})`;
  }
  return { source, key };
}

/** Linux dev_valid_name plus printable ASCII: 1..15 characters, not "." or "..", no '/', ':' or space. */
export function isIfName(s: string): boolean {
  return s.length > 0 && s.length <= 15 && s !== "." && s !== ".." && /^[\x21-\x7e]+$/.test(s) && !/[/:]/.test(s);
}

/** Parse a CIDR; returns an error message string when invalid. */
export function parseCIDR(s: string): Prefix | string {
  const r = readPrefix(s);
  if (!r.ok) {
    if (r.reason === "address") return `invalid CIDR (expected a prefix like 192.0.2.0/24 or fd00::/64, got ${describe(s)})`;
    return `invalid prefix length (expected 0..${r.family === 4 ? 32 : 128}, got ${describe(s)})`;
  }
  if (r.hostBits) return `host bits set (expected a network address, got ${describe(s)}; did you mean ${r.prefix.text}?)`;
  return r.prefix;
}

/** A MAC address "aa:bb:cc:dd:ee:ff" (any case), returned lower-case; must be unicast and non-zero. */
export function parseMac(s: string): string | undefined {
  if (!/^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/.test(s)) return undefined;
  const lower = s.toLowerCase();
  const first = parseInt(lower.slice(0, 2), 16);
  if ((first & 1) === 1 || lower === "00:00:00:00:00:00") return undefined;
  return lower;
}

/**
 * Parse a CIDR as Cilium's netip.ParsePrefix does: host bits may be set, and the prefix is then
 * their network (`hostBits` tells the caller to warn). A bare address is a host prefix.
 */
export function parseCIDRLoose(s: string): { prefix: Prefix; hostBits: boolean } | string {
  const r = readPrefix(s);
  if (r.ok && r.hostBits) return { prefix: r.prefix, hostBits: true };
  const strict = parseCIDR(s);
  return typeof strict === "string" ? strict : { prefix: strict, hostBits: false };
}

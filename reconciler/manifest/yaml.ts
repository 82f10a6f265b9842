// Multi-document YAML (and JSON, which is YAML) parsing with source lines for every node, plus the
// limits that keep hostile input from exhausting memory or CPU.
//
// js-yaml 4 builds plain JS values and forgets where they came from. Its `listener` option reports
// every node it opens and closes; we keep a stack of open nodes and, when a mapping or sequence
// closes, record for it the line of each key (mappings) or item (sequences). Errors can then point
// at the offending field's own line.

import yaml from "js-yaml";

/** Lines recorded for one mapping or sequence (1-based). */
export interface NodeLines {
  /** Line where the node starts (for a mapping value: the line of its key). */
  line: number;
  /** Mapping: line of each key. */
  keys: Map<string, number>;
  /** Sequence: line of each item. */
  items: number[];
}

/** Where each collection of a parsed file came from. Scalars are located through their parent.
 *  A Map, not a WeakMap: it lives only while its file is validated, and half a million WeakMap
 *  entries cost the garbage collector (ephemeron marking) more than the lookups themselves. */
export type LineIndex = Map<object, NodeLines>;

/** One parsed YAML document. */
export interface ParsedDocument {
  /** The composed value (null for an empty document). */
  value: unknown;
  /** 1-based line where the document's content starts. */
  line: number;
}

export interface ParsedFile {
  documents: ParsedDocument[];
  lines: LineIndex;
}

/** Limits for hostile input. Defaults in DEFAULT_LIMITS. */
export interface ParseLimits {
  /** Largest accepted file, in bytes. */
  maxFileBytes: number;
  /** Most documents in one file. */
  maxDocuments: number;
  /** Most aliases (`*name`) to collections in one document. */
  maxAliases: number;
  /** Deepest nesting of collections. */
  maxDepth: number;
  /** Most nodes a document may have once aliases are expanded (what a validator walks). */
  maxExpandedNodes: number;
}

export const DEFAULT_LIMITS: ParseLimits = {
  maxFileBytes: 1024 * 1024,
  maxDocuments: 1000,
  maxAliases: 100,
  maxDepth: 64,
  maxExpandedNodes: 100_000,
};

/** A file could not be parsed, or broke a limit. `line` is 1-based. */
export class YamlParseError extends Error {
  constructor(
    message: string,
    readonly line: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "YamlParseError";
  }
}

interface Frame {
  /** 0-based line at open. */
  line: number;
  children: Closed[];
}

interface Closed {
  line: number;
  result: unknown;
}

/** The subset of js-yaml's parser state the listener reads. */
interface ListenerState {
  line: number;
  kind: string | null;
  result: unknown;
  documents: unknown[];
}

/** Parse `content` (all documents). Throws YamlParseError with the parser's line. */
export function parseYamlWithLines(content: string, limits: ParseLimits = DEFAULT_LIMITS): ParsedFile {
  const bytes = Buffer.byteLength(content, "utf8");
  if (bytes > limits.maxFileBytes) {
    throw new YamlParseError(
      `file too large (expected at most ${limits.maxFileBytes} bytes, got ${bytes})`,
      1,
    );
  }
  const lines: LineIndex = new Map();
  const docLines: number[] = [];
  const aliasCount: number[] = [];
  const stack: Frame[] = [];

  const listener = (event: "open" | "close", raw: unknown): void => {
    const state = raw as ListenerState;
    if (event === "open") {
      stack.push({ line: state.line, children: [] });
      return;
    }
    const frame = stack.pop();
    if (frame === undefined) return;
    const result = state.result;
    const doc = state.documents.length;
    if (typeof result === "object" && result !== null) {
      const passThrough = frame.children.some((c) => c.result === result);
      if (lines.has(result)) {
        // A collection closing a second time without being its own child's result is an alias.
        if (!passThrough && frame.children.length === 0) {
          aliasCount[doc] = (aliasCount[doc] ?? 0) + 1;
          if (aliasCount[doc]! > limits.maxAliases) {
            throw new YamlParseError(
              `too many aliases in one document (expected at most ${limits.maxAliases}, got more)`,
              frame.line + 1,
            );
          }
        }
      } else if (!passThrough) {
        lines.set(result, describe(result, frame));
      }
    }
    const closed: Closed = { line: frame.line + 1, result };
    const parent = stack[stack.length - 1];
    if (parent !== undefined) {
      parent.children.push(closed);
    } else {
      docLines[doc] = frame.line + 1;
      if (doc + 1 > limits.maxDocuments) {
        throw new YamlParseError(
          `too many documents (expected at most ${limits.maxDocuments}, got more)`,
          state.line + 1,
        );
      }
    }
  };

  let values: unknown[];
  try {
    values = yaml.loadAll(content, null, {
      listener: listener as (this: unknown, eventType: "open" | "close", state: unknown) => void,
      maxDepth: limits.maxDepth,
    } as yaml.LoadOptions) as unknown[];
  } catch (err) {
    if (err instanceof YamlParseError) throw err;
    if (err instanceof yaml.YAMLException) {
      const line = (err.mark?.line ?? 0) + 1;
      throw new YamlParseError(`invalid YAML: ${err.reason}`, line, { cause: err });
    }
    if (err instanceof RangeError) {
      // Deep recursion in the parser itself.
      throw new YamlParseError(`invalid YAML: ${err.message}`, 1, { cause: err });
    }
    throw err;
  }

  const documents: ParsedDocument[] = values.map((value, i) => ({ value, line: docLines[i] ?? 1 }));
  documents.forEach((d) => {
    const n = countExpanded(d.value, limits.maxExpandedNodes + 1, 0);
    if (n > limits.maxExpandedNodes) {
      throw new YamlParseError(
        `document expands to too many nodes through aliases (expected at most ${limits.maxExpandedNodes}, got more)`,
        d.line,
      );
    }
  });
  return { documents, lines };
}

/** Build the key/item lines of a just-closed collection from the nodes closed inside it. */
function describe(result: object, frame: Frame): NodeLines {
  const kids = frame.children;
  if (Array.isArray(result)) {
    const out: NodeLines = { line: frame.line + 1, keys: NO_KEYS, items: [] };
    // Usually one closed child per item; empty items (`-` alone) have none, so align by value.
    let k = 0;
    for (let i = 0; i < result.length; i++) {
      let found = -1;
      for (let j = k; j < kids.length; j++) {
        if (sameValue(kids[j]!.result, result[i])) {
          found = j;
          break;
        }
      }
      if (found >= 0) {
        out.items.push(kids[found]!.line);
        k = found + 1;
      } else {
        out.items.push(out.line);
      }
    }
    return out;
  }
  // Mapping: children alternate key, value (a trailing failed key attempt may follow).
  const out: NodeLines = { line: frame.line + 1, keys: new Map(), items: NO_ITEMS };
  const own = result as Record<string, unknown>;
  for (let i = 0; i < kids.length; ) {
    const k = kids[i]!.result;
    const name = typeof k === "string" || typeof k === "number" || typeof k === "boolean" ? String(k) : undefined;
    if (name !== undefined && Object.prototype.hasOwnProperty.call(own, name) && !out.keys.has(name)) {
      out.keys.set(name, kids[i]!.line);
      i += 2;
    } else {
      i += 1;
    }
  }
  return out;
}

/** What a sequence has for keys and a mapping for items (never written: describe fills only its own). */
const NO_KEYS: Map<string, number> = new Map();
const NO_ITEMS: number[] = [];

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  // Implicitly typed scalars (dates) construct new objects; NaN never equals itself.
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  return typeof a === "number" && typeof b === "number" && Number.isNaN(a) && Number.isNaN(b);
}

/** Count nodes with aliases expanded, stopping as soon as `stop` is reached. */
function countExpanded(value: unknown, stop: number, acc: number): number {
  let n = acc + 1;
  if (n >= stop || typeof value !== "object" || value === null) return n;
  const children = Array.isArray(value) ? value : Object.values(value);
  for (const c of children) {
    n = countExpanded(c, stop, n);
    if (n >= stop) return n;
  }
  return n;
}

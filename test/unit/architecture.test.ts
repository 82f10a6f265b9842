// The layering rules of docs/architecture.md, checked on the source: no import circle in
// reconciler/, the CLI is a leaf that reaches the kernel libraries only through the kernel port,
// and no function grows past 100 lines.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../reconciler");
const MAX_FUNCTION_LINES = 100;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith(".ts") ? [p] : [];
  });
}

/** file (relative to reconciler/) → the reconciler files it imports, statically or with import(), leaving out `import type`. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(ROOT)) {
    const sf = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest);
    const deps: string[] = [];
    const add = (spec: string) => {
      if (spec.startsWith(".")) deps.push(relative(ROOT, resolve(dirname(file), spec.replace(/\.js$/, ".ts"))));
    };
    const walk = (node: ts.Node) => {
      if (ts.isImportDeclaration(node) && !node.importClause?.isTypeOnly) add((node.moduleSpecifier as ts.StringLiteral).text);
      if (ts.isExportDeclaration(node) && !node.isTypeOnly && node.moduleSpecifier) add((node.moduleSpecifier as ts.StringLiteral).text);
      if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && ts.isStringLiteral(node.arguments[0]!)) add(node.arguments[0].text);
      ts.forEachChild(node, walk);
    };
    walk(sf);
    graph.set(relative(ROOT, file), deps);
  }
  return graph;
}

test("architecture: reconciler/ has no import circle", () => {
  const graph = importGraph();
  const state = new Map<string, "open" | "done">();
  const circles: string[] = [];
  const visit = (file: string, path: string[]) => {
    if (state.get(file) === "done") return;
    if (state.get(file) === "open") {
      circles.push([...path.slice(path.indexOf(file)), file].join(" → "));
      return;
    }
    state.set(file, "open");
    for (const dep of graph.get(file) ?? []) visit(dep, [...path, file]);
    state.set(file, "done");
  };
  for (const file of graph.keys()) visit(file, []);
  assert.deepEqual(circles, []);
});

test("architecture: cli/ reaches ebpf-loader/ and netlink/ only through the kernel port", () => {
  const offending: string[] = [];
  for (const file of sourceFiles(join(ROOT, "cli"))) {
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/from\s+"(\.\.\/(?:ebpf-loader|netlink)\/[^"]*)"|import\("(\.\.\/(?:ebpf-loader|netlink)\/[^"]*)"\)/g)) {
      offending.push(`${relative(ROOT, file)} imports ${m[1] ?? m[2]}`);
    }
  }
  assert.deepEqual(offending, []);
});

test(`architecture: no function in reconciler/ is longer than ${MAX_FUNCTION_LINES} lines`, () => {
  const long: string[] = [];
  for (const file of sourceFiles(ROOT)) {
    const sf = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
    const walk = (node: ts.Node) => {
      if (ts.isFunctionLike(node) && "body" in node && node.body) {
        const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
        const end = sf.getLineAndCharacterOfPosition(node.getEnd()).line;
        if (end - start + 1 > MAX_FUNCTION_LINES) long.push(`${relative(ROOT, file)}:${start + 1} (${end - start + 1} lines)`);
      }
      ts.forEachChild(node, walk);
    };
    walk(sf);
  }
  assert.deepEqual(long, []);
});

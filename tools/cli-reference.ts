// The README's command reference is the CLI's own --help: this writes it between the markers
// (`node --import tsx tools/cli-reference.ts`), and test/unit/cli-args.test.ts checks it is current.

import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "../reconciler/cli/args.js";
import { COMMAND_NAMES } from "../reconciler/cli/flags.js";

export const START = "<!-- cli-reference:start (written by tools/cli-reference.ts) -->";
export const END = "<!-- cli-reference:end -->";

/** One collapsed block per command, each holding `reconcile CMD --help`. */
export function cliReference(): string {
  const blocks = COMMAND_NAMES.map((name) => {
    const argv = name === "run" ? ["--help"] : [name, "--help"];
    const c = parseArgs(argv, {}, { node: "NODE" });
    if (c.name !== "help") throw new Error(`${argv.join(" ")} printed no help`);
    const title = name === "run" ? "reconcile (daemon, --once, --dry-run)" : `reconcile ${name}`;
    return `<details><summary><code>${title}</code></summary>\n\n\`\`\`\n$ reconcile ${argv.join(" ")}\n${c.text.trimEnd()}\n\`\`\`\n\n</details>`;
  });
  return `${START}\n${blocks.join("\n")}\n${END}`;
}

/** `text` with the section between the markers replaced by the current reference. */
export function withReference(text: string): string {
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  if (a < 0 || b < a) throw new Error(`README.md has no ${START} … ${END} section`);
  return text.slice(0, a) + cliReference() + text.slice(b + END.length);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const readme = new URL("../README.md", import.meta.url);
  writeFileSync(readme, withReference(readFileSync(readme, "utf8")));
}

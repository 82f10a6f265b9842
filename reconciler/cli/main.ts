#!/usr/bin/env node
// Entry point and the ONE error boundary: every failure ends here and becomes an exit code.
// 0 success with nothing to change, 2 --dry-run found changes, 1 error (invalid manifests included).

import { hostname } from "node:os";
import { parseArgs, UsageError } from "./args.js";
import { runCommand } from "./commands.js";
import { describeError } from "./errors.js";
import { tuneHeap } from "./heap.js";

tuneHeap();

async function main(): Promise<number> {
  let command;
  try {
    command = parseArgs(process.argv.slice(2), process.env, { node: hostname() });
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`reconcile: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  return runCommand(command, { stdout: process.stdout, stderr: process.stderr, env: process.env });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(describeError(err));
    process.exitCode = 1;
  },
);

// The error boundary: failures reconcile describes on purpose are shown as they are; anything else
// is reported as a bug, with its stack.

import assert from "node:assert/strict";
import { test } from "node:test";
import { KERNEL_ERRORS } from "../../reconciler/apply/errors.js";
import { describeError, knowKernelErrors, ReconcileError } from "../../reconciler/cli/errors.js";
import { BpfError } from "../../reconciler/ebpf-loader/index.js";
import { MessageFormatError } from "../../reconciler/netlink/index.js";
import { CapacityError } from "../../reconciler/plan/snapshot-to-desired.js";
import { PathEscapeError } from "../../reconciler/source/errors.js";
import { ManifestError } from "../../reconciler/manifest/load.js";
import { ExplainQueryError } from "../../reconciler/policy/explain.js";
import { PinRootError } from "../../reconciler/apply/kernel/context.js";

test("domain errors of every layer are shown as their message", () => {
  knowKernelErrors(KERNEL_ERRORS); // as opening the kernel does
  const kernel = [new PinRootError("pin root x is not on a bpf filesystem"), new BpfError("create map x", "BPF_MAP_CREATE", 1)];
  const others = [new ReconcileError("no daemon"), new CapacityError("policy map full", "policy", 10, 5), new PathEscapeError("a", "/b", "/c")];
  for (const err of [...kernel, ...others, Object.assign(new Error("open /etc/x: ENOENT"), { code: "ENOENT" })]) {
    assert.equal(describeError(err), `reconcile: ${err.message}\n`);
  }
  const explain = describeError(new ExplainQueryError("from", "x"));
  assert.doesNotMatch(explain, /this is a bug/);
});

test("manifest errors list every problem with file:line", () => {
  const text = describeError(new ManifestError([{ file: "a.yaml", line: 3, object: "Endpoint/x", path: "spec.ipv4", message: "bad", severity: "error" }]));
  assert.match(text, /^a\.yaml:3: Endpoint\/x: spec\.ipv4: bad\nreconcile: 1 error\(s\) in manifests; nothing was applied\n$/);
});

test("plain, built-in and unlisted errors are bugs, reported with their stack", () => {
  class SomeNewError extends Error {
    override name = "SomeNewError";
  }
  // A library told nonsense (a malformed message built by reconcile) is reconcile's bug, not the user's.
  const misuse = new MessageFormatError("attribute 3 truncated");
  for (const err of [new Error("boom"), new TypeError("x is undefined"), "a string", new SomeNewError("named, but not a user-facing class"), misuse]) {
    const text = describeError(err);
    assert.match(text, /^reconcile: internal error \(this is a bug, please report it\):\n/);
  }
  assert.match(describeError(new TypeError("x is undefined")), /\n\s+at /);
});

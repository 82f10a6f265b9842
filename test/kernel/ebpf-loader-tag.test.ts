// The tag computed from the ELF (no kernel) is the one the kernel reports for the loaded program:
// that is how reconcile recognises its own programs on links and decides to update them in place.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { loadCollection, parseElf, programTag, programTags } from "../../reconciler/ebpf-loader/index.js";

test("programTags() matches the kernel's tag for every datapath program", () => {
  const spec = parseElf(readFileSync("bpf/build/endpoint.o"));
  // Maps with pinning by_name are created unpinned when no pinRoot is given.
  const coll = loadCollection(spec);
  try {
    for (const [name, prog] of coll.programs) {
      const kernelTag = prog.info().tag;
      const ours = programTags(spec.programs.get(name)!);
      assert.ok(ours.includes(kernelTag), `${name}: kernel tag ${kernelTag}, computed ${ours.join(" / ")}`);
    }
    assert.notEqual(programTag(spec.programs.get("to_endpoint")!), programTag(spec.programs.get("from_endpoint")!));
  } finally {
    coll.close();
  }
});

// Labels and selectors: canonical form, parsing, Cilium matching semantics, the label index.
import { test } from "node:test";
import assert from "node:assert/strict";
import { canonicalLabels, DuplicateLabelError, labelSetKey, labelString, parseLabel } from "../../reconciler/policy/labels.js";
import { LabelIndex, matches, selectorKey } from "../../reconciler/policy/selector.js";
import { portRangeBlocks, portKeys } from "../../reconciler/policy/ports.js";
import { labels, sel } from "./helpers/policy-model.js";

test("labels: canonical order, string form, parsing", () => {
  const ls = canonicalLabels([
    { source: "k8s", key: "b", value: "2" },
    { source: "any", key: "z", value: "" },
    { source: "k8s", key: "a", value: "1" },
    { source: "k8s", key: "a", value: "1" },
  ]);
  assert.deepEqual(ls.map(labelString), ["any:z", "k8s:a=1", "k8s:b=2"]);
  assert.throws(() => canonicalLabels([{ source: "k8s", key: "a", value: "1" }, { source: "k8s", key: "a", value: "2" }]), DuplicateLabelError);
  assert.deepEqual(parseLabel("k8s:app=web"), { source: "k8s", key: "app", value: "web" });
  assert.deepEqual(parseLabel("app=a:b"), { source: "any", key: "app", value: "a:b" });
  assert.deepEqual(parseLabel("reserved:host"), { source: "reserved", key: "host", value: "" });
  assert.equal(labelSetKey([...ls].reverse()), labelSetKey(ls));
  assert.notEqual(labelSetKey(labels({ a: "1;k8s:b=2" })), labelSetKey(labels({ a: "1", b: "2" })));
});

test("selector: any source, In/NotIn/Exists/DoesNotExist, empty selector", () => {
  const web = labels({ app: "web", "container:tier": "front" });
  assert.equal(matches(sel({ app: "web" }), web), true, "any:app matches k8s:app");
  assert.equal(matches(sel({ "k8s:app": "web" }), web), true);
  assert.equal(matches(sel({ "container:app": "web" }), web), false, "source must match exactly");
  assert.equal(matches(sel({ tier: "front" }), web), true, "any:tier matches container:tier");
  assert.equal(matches(sel({}, [["app", "In", ["web", "db"]]]), web), true);
  assert.equal(matches(sel({}, [["app", "In", ["db"]]]), web), false);
  assert.equal(matches(sel({}, [["app", "NotIn", ["db"]]]), web), true);
  assert.equal(matches(sel({}, [["app", "NotIn", ["web"]]]), web), false);
  assert.equal(matches(sel({}, [["missing", "NotIn", ["x"]]]), web), true, "NotIn holds when the key is absent");
  assert.equal(matches(sel({}, [["app", "Exists"]]), web), true);
  assert.equal(matches(sel({}, [["missing", "Exists"]]), web), false);
  assert.equal(matches(sel({}, [["missing", "DoesNotExist"]]), web), true);
  assert.equal(matches(sel({}, [["app", "DoesNotExist"]]), web), false);
  assert.equal(matches(sel({}), web), true, "{} selects everything");
  assert.equal(matches(sel({}), []), true);
  assert.equal(matches(sel({ app: "web" }, [["env", "DoesNotExist"]]), web), true, "requirements are ANDed");
  assert.equal(selectorKey(sel({ a: "1", b: "2" })), selectorKey(sel({ b: "2", a: "1" })));
});

test("label index selects the same members as a full scan", () => {
  const sets = [labels({ app: "a" }), labels({ app: "b", env: "prod" }), labels({ env: "dev" }), labels({})];
  const idx = new LabelIndex();
  sets.forEach((s, i) => idx.add(i + 10, s));
  const sels = [
    sel({ app: "a" }),
    sel({}, [["env", "Exists"]]),
    sel({}, [["app", "DoesNotExist"]]),
    sel({}, [["env", "NotIn", ["prod"]]]),
    sel({ env: "prod" }, [["app", "In", ["a", "b"]]]),
    sel({}),
  ];
  for (const s of sels) {
    const expected = sets.map((x, i) => (matches(s, x) ? i + 10 : -1)).filter((x) => x >= 0);
    assert.deepEqual(idx.select(s), expected, selectorKey(s));
  }
});

test("ports: ranges become minimal aligned power-of-two blocks", () => {
  assert.deepEqual(portRangeBlocks(80, 80), [{ port: 80, endPort: 80, portPrefixLen: 16 }]);
  assert.deepEqual(portRangeBlocks(0, 65535), [{ port: 0, endPort: 65535, portPrefixLen: 0 }]);
  assert.deepEqual(portRangeBlocks(80, 83), [{ port: 80, endPort: 83, portPrefixLen: 14 }]);
  const blocks = portRangeBlocks(80, 444);
  assert.deepEqual(blocks.map((b) => `${b.port}/${b.portPrefixLen}`), ["80/12", "96/11", "128/9", "256/9", "384/11", "416/12", "432/13", "440/14", "444/16"]);
  // exact cover, no gaps or overlap, for many random ranges
  for (let s = 1; s < 3000; s += 37) {
    for (const e of [s, s + 1, s + 255, 65535]) {
      let next = s;
      for (const b of portRangeBlocks(s, e)) {
        assert.equal(b.port, next);
        assert.equal(b.port % (b.endPort - b.port + 1), 0, "aligned");
        next = b.endPort + 1;
      }
      assert.equal(next, e + 1);
    }
  }
  assert.deepEqual(portKeys([{ port: 53, endPort: 53, protocol: "ANY" }]).map((k) => k.protocol), [6, 17, 132]);
  assert.deepEqual(portKeys([{ port: 0, endPort: 65535, protocol: "UDP" }]), [{ protocol: 17, port: 0, endPort: 65535, portPrefixLen: 0 }]);
  assert.deepEqual(portKeys(undefined), [{ protocol: 0, port: 0, endPort: 65535, portPrefixLen: 0 }]);
});

// One address grammar: the datapath codecs accept exactly the addresses and prefixes manifests
// accept and write them as the manifests canonicalise them; policy's bigint prefixes agree.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseCIDRLoose } from "../../reconciler/manifest/fields.js";
import { canonicalIP, parseAddress, parsePrefix, prefixContains, prefixContainsAddress } from "../../reconciler/manifest/ip.js";
import { decodeAddress, decodeIpcacheKey, encodeAddress, encodeIpcacheKey, LayoutError } from "../../reconciler/datapath/layouts.js";
import { prng } from "./helpers/random-policy.js";

/** The shared deterministic PRNG (mulberry32), so a failure names its seed. */
const rng = (seed: number): (() => number) => prng(seed).next;

function samples(seed: number): string[] {
  const r = rng(seed);
  const out = ["::", "::1", "1::", "::ffff:1.2.3.4", "1.2.3.4", "0.0.0.0/0", "10.0.0.0/08", "010.1.1.1", "1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7:8", "fd00::1/64", ""];
  for (let i = 0; i < 60000; i++) {
    const alphabet = ["0125./", "01af:./8", "0f:.1/2"][i % 3]!;
    let s = "";
    for (let n = 1 + Math.floor(r() * 20); n > 0; n--) s += alphabet[Math.floor(r() * alphabet.length)];
    out.push(s);
  }
  for (let i = 0; i < 5000; i++) {
    const v4 = [0, 0, 0, 0].map(() => Math.floor(r() * 256)).join(".");
    const v6 = Array.from({ length: 8 }, () => (r() < 0.4 ? "0" : Math.floor(r() * 65536).toString(16))).join(":");
    out.push(v4, `${v4}/${Math.floor(r() * 34)}`, v6, `${v6}/${Math.floor(r() * 130)}`);
  }
  return out;
}

test("encodeAddress accepts exactly what canonicalIP accepts, and decodes to the canonical text", () => {
  const buf = Buffer.alloc(16);
  let valid = 0;
  for (const s of samples(3)) {
    const canon = canonicalIP(s);
    if (canon === undefined) {
      assert.throws(() => encodeAddress(s, buf, 0), LayoutError, s);
      continue;
    }
    valid++;
    const family = encodeAddress(s, buf, 0);
    assert.equal(decodeAddress(buf, 0, family), canon, s);
    assert.equal(family, canon.includes(":") ? 6 : 4);
  }
  assert.ok(valid > 10000, `${valid} valid samples`);
});

test("encodeIpcacheKey accepts exactly the prefixes a rule's CIDR accepts, keyed by their network", () => {
  const buf = Buffer.alloc(24);
  for (const s of samples(4)) {
    const p = parseCIDRLoose(s);
    if (typeof p === "string") {
      assert.throws(() => encodeIpcacheKey(s, buf, 0), LayoutError, s);
      continue;
    }
    assert.equal(encodeIpcacheKey(s, buf, 0), p.prefix.len, s);
    assert.equal(decodeIpcacheKey(buf, 0).prefix, p.prefix.text, s);
    // Policy's view of the same network: a canonical prefix parses strictly, contains itself and its address.
    const q = parsePrefix(p.prefix.text);
    assert.ok(prefixContains(q, p.prefix) && prefixContains(p.prefix, q));
    const a = parseAddress(p.prefix.text.split("/")[0]!);
    assert.ok(prefixContainsAddress(q, a.family, a.addr));
  }
});

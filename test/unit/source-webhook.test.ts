// The webhook signature check: exactly `sha256=` + 64 hex digits of the body's HMAC, nothing else.

import assert from "node:assert/strict";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import test from "node:test";
import { createWebhookHandler, signWebhookBody, verifyWebhookSignature } from "../../reconciler/source/webhook.js";

const secret = "s3cret";
const body = Buffer.from('{"ref":"refs/heads/main"}');
const good = signWebhookBody(secret, body);

test("verifyWebhookSignature: only sha256= and exactly 64 hex digits of the right MAC", () => {
  assert.match(good, /^sha256=[0-9a-f]{64}$/);
  assert.equal(verifyWebhookSignature(secret, body, good), true);
  assert.equal(verifyWebhookSignature(secret, body, `sha256=${good.slice(7).toUpperCase()}`), true, "uppercase digits name the same MAC");
  const refused: Record<string, string | undefined> = {
    missing: undefined,
    empty: "",
    "prefix only": "sha256=",
    "trailing junk": `${good}zz`,
    "trailing hex digit": `${good}0`,
    "trailing byte pair": `${good}00`,
    "trailing space inside": `${good} x`,
    "trailing NUL": `${good}\u0000`,
    "a second value": `${good},${good}`,
    truncated: good.slice(0, -2),
    "odd length": good.slice(0, -1),
    "leading junk": `x${good}`,
    "uppercase prefix": `SHA256=${good.slice(7)}`,
    "sha1 form": `sha1=${good.slice(7, 47)}`,
    "wrong secret": signWebhookBody("other", body),
    "non-hex in the middle": `sha256=${good.slice(7, 40)}g${good.slice(41)}`,
  };
  for (const [what, header] of Object.entries(refused)) {
    assert.equal(verifyWebhookSignature(secret, body, header), false, what);
  }
});

test("webhook handler: a valid MAC with trailing junk is 401 and triggers nothing; the exact header is 202", async (t) => {
  let pushes = 0;
  const server = createServer(createWebhookHandler({ secret, onPush: () => pushes++ }));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const post = (signature: string) =>
    new Promise<number>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path: "/hooks/git", method: "POST", headers: { "x-hub-signature-256": signature } }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      });
      req.on("error", reject);
      req.end(body);
    });
  assert.equal(await post(`${good}junk`), 401);
  assert.equal(await post(`${good}00`), 401);
  assert.equal(pushes, 0);
  assert.equal(await post(good), 202);
  assert.equal(pushes, 1);
});

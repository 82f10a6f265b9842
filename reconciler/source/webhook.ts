// Push webhook: a GitHub-style signed POST triggers an immediate fetch.
//
// The signature is `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` with a shared
// secret. The body itself is not interpreted: any authentic delivery (except a ping) means "fetch
// now", and the fetch decides what changed.

import { createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

export interface WebhookOptions {
  /** Shared secret (from RECONCILE_WEBHOOK_SECRET_FILE). Never logged. */
  secret: string;
  /** Called for every authentic delivery. */
  onPush: () => void;
  /** Largest body accepted, in bytes (default 1 MiB); larger → 413. */
  maxBodyBytes?: number;
}

/** Compute the header value GitHub would send for `body`. */
export function signWebhookBody(secret: string, body: Buffer | string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/**
 * The one accepted form of the header: `sha256=` and exactly 64 hex digits, nothing before or after.
 * GitHub (and Gitea, GitLab's compatible mode) send lowercase digits; uppercase digits name the same
 * MAC and are accepted too. The prefix is lowercase only, as GitHub writes it.
 */
const SIGNATURE_HEADER = /^sha256=([0-9a-fA-F]{64})$/;

/**
 * Check a `sha256=<64 hex digits>` header against the body. Anything but exactly that form is
 * refused (trailing bytes, a short or long MAC, other algorithms); the MAC itself is compared in
 * constant time on equal-length buffers.
 */
export function verifyWebhookSignature(secret: string, body: Buffer, header: string | undefined): boolean {
  if (header === undefined) return false;
  const m = SIGNATURE_HEADER.exec(header);
  if (!m) return false;
  const got = Buffer.from(m[1]!, "hex");
  const want = createHmac("sha256", secret).update(body).digest();
  return got.length === want.length && timingSafeEqual(got, want);
}

function reply(res: ServerResponse, code: number, message: string, headers: Record<string, string> = {}): void {
  res.writeHead(code, { "content-type": "text/plain; charset=utf-8", ...headers });
  res.end(`${message}\n`);
}

/** An HTTP request handler for node:http servers. */
export function createWebhookHandler(opts: WebhookOptions): (req: IncomingMessage, res: ServerResponse) => void {
  if (opts.secret === "") throw new Error("webhook secret is empty: refusing to accept unauthenticated pushes");
  const max = opts.maxBodyBytes ?? 1024 * 1024;
  return (req, res) => {
    if (req.method !== "POST") {
      req.resume();
      reply(res, 405, "method not allowed", { allow: "POST" });
      return;
    }
    const declared = Number(req.headers["content-length"] ?? "0");
    if (declared > max) {
      reply(res, 413, "body too large", { connection: "close" });
      req.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let aborted = false;
    req.on("data", (chunk: Buffer) => {
      if (aborted) return;
      size += chunk.length;
      if (size > max) {
        aborted = true;
        reply(res, 413, "body too large", { connection: "close" });
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("error", () => {
      aborted = true;
    });
    req.on("end", () => {
      if (aborted) return;
      const body = Buffer.concat(chunks);
      const header = req.headers["x-hub-signature-256"];
      if (!verifyWebhookSignature(opts.secret, body, Array.isArray(header) ? header[0] : header)) {
        reply(res, 401, "bad or missing X-Hub-Signature-256");
        return;
      }
      if (req.headers["x-github-event"] === "ping") {
        reply(res, 200, "pong");
        return;
      }
      opts.onPush();
      reply(res, 202, "fetch triggered");
    });
  };
}

// The daemon's LoadStore: one file per manifest file's load result under the state directory, so
// that a restart reads back what it had validated instead of parsing 17 MB of YAML again.
//
// A record is the CRC-32 of its payload followed by the payload. Records are renamed into place, so
// none is ever half-written; a damaged one does not match its checksum and reads as absent (the file
// is then parsed, and the record written again). CRC-32 rather than a cryptographic digest: it
// detects damage, the key already names the content, and it is ≈ 3× cheaper on the 28 MB a restart
// at DESIGN scale reads back.
// Records are named by their key, which already covers the loader's build, the limits, the path and
// the content: a record can only ever be read back for exactly the input it was made from.

import { createHash } from "node:crypto";
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { crc32 } from "node:zlib";
import type { LoadStore } from "./load.js";

// Set at bundle time by tools/build-binary.mjs: the SHA-256 of the bundle; undeclared from source.
declare const __RECONCILE_BUNDLE_ID__: string | undefined;

const CHECKSUM = 4;
const SUFFIX = ".v8";

export class DirLoadStore implements LoadStore {
  /** Creates `dir` (mode 0700) when it does not exist; throws when it cannot. */
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  read(key: string): Uint8Array | undefined {
    let data: Buffer;
    try {
      data = readFileSync(this.file(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    const payload = data.subarray(CHECKSUM);
    if (data.length < CHECKSUM || crc32(payload) !== data.readUInt32LE(0)) {
      this.remove(key + SUFFIX);
      return undefined;
    }
    return payload;
  }

  write(key: string, bytes: Uint8Array): void {
    const tmp = `${this.file(key)}.tmp`;
    const checksum = Buffer.alloc(CHECKSUM);
    checksum.writeUInt32LE(crc32(bytes), 0);
    // Two writes, not one of a concatenation: no second copy of the record in memory.
    const fd = openSync(tmp, "w", 0o600);
    try {
      writeSync(fd, checksum);
      writeSync(fd, bytes);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.file(key));
  }

  retain(keys: ReadonlySet<string>): void {
    for (const name of readdirSync(this.dir)) {
      if (!(name.endsWith(SUFFIX) && keys.has(name.slice(0, -SUFFIX.length)))) this.remove(name);
    }
  }

  private file(key: string): string {
    if (!/^[0-9a-f]{64}$/.test(key)) throw new Error(`load store key must be a hex SHA-256, got ${JSON.stringify(key)}`);
    return path.join(this.dir, key + SUFFIX);
  }

  private remove(name: string): void {
    try {
      unlinkSync(path.join(this.dir, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
}

/**
 * What a stored result was made by. The binary: its bundle's SHA-256, so an upgrade never reads
 * the results of another build. From source: the manifest loader's own files and the YAML parser's
 * version, which is all a file's load result depends on.
 */
export function loaderBuild(): string {
  if (typeof __RECONCILE_BUNDLE_ID__ !== "undefined") return `bundle:${__RECONCILE_BUNDLE_ID__}`;
  const here = path.dirname(fileURLToPath(import.meta.url));
  const h = createHash("sha256");
  for (const name of readdirSync(here).filter((n) => n.endsWith(".ts")).sort()) h.update(`${name}\0`).update(readFileSync(path.join(here, name)));
  const yaml = createRequire(import.meta.url)("js-yaml/package.json") as { version: string };
  return `source:${h.update(`js-yaml@${yaml.version}`).digest("hex")}`;
}

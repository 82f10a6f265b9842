// A snapshot is the whole manifest tree at one revision: the only thing manifest/ ever reads.

/** One manifest file. */
export interface SnapshotFile {
  /** Path relative to the source root, with forward slashes. */
  path: string;
  /** The file's text. A source may keep it packed and unpack it on each read (dir.ts): read it once. */
  content: string;
  /** SHA-256 (hex) of the content's UTF-8 bytes, when the source has it: what lets a loader tell
   *  content it has loaded before without reading it (manifest/load.ts LoadCache). */
  readonly digest?: string;
  /** Length of the content's UTF-8 bytes, when the source has it. */
  readonly size?: number;
}

export interface Snapshot {
  /** Git commit SHA, or "sha256:<hex>" content hash for a directory source. */
  revision: string;
  files: SnapshotFile[];
}

// A snapshot is the whole manifest tree at one revision: the only thing manifest/ ever reads.

/** One manifest file. */
export interface SnapshotFile {
  /** Path relative to the source root, with forward slashes. */
  path: string;
  content: string;
}

export interface Snapshot {
  /** Git commit SHA, or "sha256:<hex>" content hash for a directory source. */
  revision: string;
  files: SnapshotFile[];
}

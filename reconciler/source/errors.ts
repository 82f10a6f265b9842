// Errors raised by the sources. Each says what failed, for which path or ref, and keeps its cause.

/** Base class: anything that went wrong while producing a Snapshot. */
export class SourceError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A path (usually a symlink) resolves outside the directory it must stay in. */
export class PathEscapeError extends SourceError {
  constructor(
    /** The offending path, relative to the source root. */
    readonly path: string,
    /** Where it resolves to. */
    readonly target: string,
    /** The directory it must stay within. */
    readonly boundary: string,
  ) {
    super(`${path}: resolves to ${target}, outside ${boundary}; refusing to follow it`);
  }
}

/** A file or the whole tree is larger than allowed. */
export class SizeLimitError extends SourceError {
  constructor(
    /** The file (or "<total>" for the whole tree). */
    readonly path: string,
    readonly limit: number,
    readonly actual: number,
  ) {
    super(`${path}: ${actual} bytes exceeds the limit of ${limit} bytes`);
  }
}

/** A git operation failed (fetch, checkout, ...). The remote URL in it never carries credentials. */
export class GitSourceError extends SourceError {
  constructor(
    /** The operation that failed, e.g. "fetch main". */
    readonly operation: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`git ${operation}: ${message}`, options);
  }
}

/** A commit failed signature verification and was not applied. */
export class SignatureError extends SourceError {
  constructor(
    readonly commit: string,
    /** What git verify-commit said. */
    readonly detail: string,
  ) {
    super(`commit ${commit}: signature verification failed (expected a good signature from an allowed signer): ${detail}`);
  }
}

// The streams and environment a command runs with: the process's in main.ts, buffers in tests.

export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  /** isTTY and columns: whether progress is a redrawn line, and how wide it may be. */
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env: Readonly<Record<string, string | undefined>>;
}

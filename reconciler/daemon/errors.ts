// The daemon's user-facing failures, in a module of their own so that the CLI's error boundary can
// know them without loading the servers (and prom-client) at start-up.

/** The status socket or the metrics address cannot be served (a path, a permission, a port in use). */
export class StatusServerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StatusServerError";
  }
}

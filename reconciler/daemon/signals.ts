// Signals: SIGTERM/SIGINT stop the daemon cleanly, SIGHUP resyncs. Stopping never touches the
// datapath: pinned programs and maps keep enforcing the last applied state.

/** The part of `process` used here, so tests can pass an EventEmitter. */
export interface SignalSource {
  on(signal: NodeJS.Signals, listener: () => void): unknown;
  off(signal: NodeJS.Signals, listener: () => void): unknown;
}

export interface SignalHandlers {
  /** Resync now (SIGHUP; `systemctl reload`). */
  onReload: () => void;
  /**
   * Stop: send STOPPING=1, close watchers and servers, wait for a running reconcile. Called once;
   * a second SIGTERM/SIGINT while stopping calls `onForce` (if given) instead.
   */
  onStop: (signal: NodeJS.Signals) => Promise<void>;
  onForce?: (signal: NodeJS.Signals) => void;
  /** Stop failed (reported, the caller's error boundary decides the exit code). */
  onStopError?: (err: unknown) => void;
}

/** Install the handlers; returns a function removing them. */
export function installSignalHandlers(h: SignalHandlers, proc: SignalSource = process): () => void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      h.onForce?.(signal);
      return;
    }
    stopping = true;
    h.onStop(signal).catch((err: unknown) => h.onStopError?.(err));
  };
  const onTerm = () => stop("SIGTERM");
  const onInt = () => stop("SIGINT");
  const onHup = () => {
    if (!stopping) h.onReload();
  };
  proc.on("SIGTERM", onTerm);
  proc.on("SIGINT", onInt);
  proc.on("SIGHUP", onHup);
  return () => {
    proc.off("SIGTERM", onTerm);
    proc.off("SIGINT", onInt);
    proc.off("SIGHUP", onHup);
  };
}

/** Something to close on shutdown. */
export interface Closable {
  name: string;
  close: () => Promise<void> | void;
}

/**
 * Close everything in order, each even if an earlier one failed; report all failures together.
 * Typical order: notifier STOPPING=1, sources (watchers, git polling), the loop, servers.
 */
export async function closeAll(parts: Closable[]): Promise<void> {
  const failures: Error[] = [];
  for (const p of parts) {
    try {
      await p.close();
    } catch (err) {
      failures.push(new Error(`close ${p.name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
    }
  }
  if (failures.length > 0) throw new AggregateError(failures, `shutdown: ${failures.map((f) => f.message).join("; ")}`);
}

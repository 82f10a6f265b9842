// Undo steps of a benchmark, run in reverse at the end, on failure and on Ctrl-C, so the pin roots,
// namespaces and temp dirs it made never stay behind.

export class Cleanups {
  private readonly steps: Array<() => void> = [];

  constructor() {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      process.once(sig, () => {
        this.run();
        process.exit(130);
      });
    }
  }

  push(step: () => void): void {
    this.steps.push(step);
  }

  /** Runs every step registered so far, last first; a failing step is reported and skipped. */
  run(): void {
    while (this.steps.length) {
      try {
        this.steps.pop()!();
      } catch (err) {
        console.error(`cleanup: ${(err as Error).message}`);
      }
    }
  }
}

/** Runs a benchmark's main; a failure is printed and sets exit code 1; the cleanups run either way. */
export async function runBench(name: string, main: () => Promise<void>, cleanups: Cleanups): Promise<void> {
  try {
    await main();
  } catch (err) {
    console.error(`${name} benchmark failed: ${(err as Error).stack ?? String(err)}`);
    process.exitCode = 1;
  } finally {
    cleanups.run();
  }
}

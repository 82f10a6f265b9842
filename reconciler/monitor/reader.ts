// Reads an event stream until told to stop: drain what is there, decode each record, hand it on;
// wait (without blocking the event loop) when there is nothing. Shared by `reconcile monitor` and
// the daemon; the stream is the kernel's ring buffer or, in the tests, a fake.

import { setImmediate as yieldToLoop } from "node:timers/promises";
import type { EventStream } from "../apply/port.js";
import { decodeEvent, EVENT, type DatapathEvent } from "../datapath/layouts.js";

export interface ReadOptions {
  signal: AbortSignal;
  /** Records taken per drain before the event loop gets a turn (default 4096). */
  batch?: number;
  /** Longest wait for records, so that a stop is seen within it (default 200 ms). */
  waitMs?: number;
  /** A record that does not decode (a program and a reader out of step); counted either way. */
  onMalformed?: (err: Error) => void;
}

export interface ReadTotals {
  read: number;
  malformed: number;
}

/** Calls `onEvent` for every record until `signal` aborts; resolves to what was read. */
export async function readEvents(stream: EventStream, onEvent: (ev: DatapathEvent) => void, opts: ReadOptions): Promise<ReadTotals> {
  const batch = opts.batch ?? 4096;
  const totals: ReadTotals = { read: 0, malformed: 0 };
  const onRecord = (buf: Buffer, offset: number, length: number): void => {
    let ev: DatapathEvent;
    try {
      if (length < EVENT.size) throw new Error(`event record of ${length} bytes (expected ${EVENT.size})`);
      ev = decodeEvent(buf, offset);
    } catch (err) {
      totals.malformed++;
      opts.onMalformed?.(err as Error);
      return;
    }
    totals.read++;
    onEvent(ev);
  };
  while (!opts.signal.aborted) {
    const n = stream.drain(onRecord, batch);
    if (n >= batch) await yieldToLoop(); // more are waiting: take them after others had a turn
    else if (n === 0) await stream.wait(opts.waitMs ?? 200);
  }
  return totals;
}

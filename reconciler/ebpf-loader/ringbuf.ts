// SPDX-License-Identifier: Apache-2.0
// Consumer of a BPF_MAP_TYPE_RINGBUF map, read in place through shared mappings of its memory.
//
// The kernel lays the map out as: page 0 the consumer position (user space writes it), page 1 the
// producer position (the kernel writes it), then the data area, mapped twice in a row so that a
// record which wraps past the end of the ring is contiguous in the second copy. Each record is an
// 8-byte header (u32 length with the BUSY and DISCARD bits on top, u32 page offset the kernel uses)
// followed by the sample, padded to 8 bytes. Ordering: the producer position is read (acquire),
// then each header's length word (acquire: BUSY clear means the sample is complete), and the
// consumer position is stored (release) only after the sample was handed over, because storing it
// gives the bytes back to the producers. Atomics on the typed arrays give these orderings.
import * as sys from "./sys.js";
import type { BpfMap } from "./map.js";

const BUSY_BIT = 0x80000000; // reserved, not yet submitted or discarded: stop here
const DISCARD_BIT = 0x40000000; // discarded: skip it
const HEADER_BYTES = 8;

export class RingBuffer {
  private readonly consumerMap: sys.Mapping;
  private readonly producerMap: sys.Mapping;
  private readonly consumerPos: BigUint64Array;
  private readonly producerPos: BigUint64Array;
  /** The data area, twice over (see above). */
  private readonly data: Buffer;
  /** The same bytes as 32-bit words, for atomic loads of record headers. */
  private readonly words: Int32Array;
  private readonly size: number;
  private readonly epfd: number;
  private readonly name: string;
  private closed = false;
  private pendingWaits = 0;

  private constructor(map: BpfMap) {
    const op = `open ring buffer ${map.spec.name}`;
    if (map.spec.type !== "ringbuf") throw new TypeError(`${op}: not a ringbuf map (${map.spec.type})`);
    const page = sys.systemPageSize();
    this.name = map.spec.name;
    this.size = map.spec.maxEntries;
    this.consumerMap = sys.mmapShared(map.fd, page, sys.PROT_READ | sys.PROT_WRITE, 0, op);
    try {
      this.producerMap = sys.mmapShared(map.fd, page + 2 * this.size, sys.PROT_READ, page, op);
    } catch (err) {
      sys.munmap(this.consumerMap);
      throw err;
    }
    try {
      this.epfd = sys.epollFor(map.fd, op);
    } catch (err) {
      sys.munmap(this.producerMap);
      sys.munmap(this.consumerMap);
      throw err;
    }
    this.consumerPos = new BigUint64Array(this.consumerMap.memory, 0, 1);
    this.producerPos = new BigUint64Array(this.producerMap.memory, 0, 1);
    this.data = Buffer.from(this.producerMap.memory, page, 2 * this.size);
    this.words = new Int32Array(this.producerMap.memory, page, (2 * this.size) / 4);
  }

  /** A reader of `map` (a ringbuf): its consumer page mapped read-write, the producer page and the
   *  data read-only. The map stays the caller's: close it after the reader. */
  static open(map: BpfMap): RingBuffer {
    return new RingBuffer(map);
  }

  /** Hands each committed record now in the ring (at most `max`) to onRecord and gives its space
   *  back; discarded records are skipped. `buf` is the mapped ring itself: copy what must outlive
   *  the call. Returns the number of records handed over. */
  drain(onRecord: (buf: Buffer, offset: number, length: number) => void, max = Infinity): number {
    if (this.closed) throw new Error(`drain ring buffer ${this.name}: closed`);
    // Positions only grow; as doubles they stay exact up to 2^53 bytes written (years at any rate).
    let cons = Number(Atomics.load(this.consumerPos, 0));
    let prod = cons;
    let read = 0;
    while (read < max) {
      // The producer position is read again only once the records seen so far are consumed.
      if (cons >= prod && cons >= (prod = Number(Atomics.load(this.producerPos, 0)))) break;
      const off = cons % this.size;
      const header = Atomics.load(this.words, off >>> 2) >>> 0;
      if (header & BUSY_BIT) break; // not committed yet: everything after it waits too
      const length = header & ~(BUSY_BIT | DISCARD_BIT);
      cons += (length + HEADER_BYTES + 7) & ~7;
      try {
        if (!(header & DISCARD_BIT)) {
          read++;
          onRecord(this.data, off + HEADER_BYTES, length);
        }
      } finally {
        // Also when onRecord throws: that record counts as consumed, as in libbpf.
        Atomics.store(this.consumerPos, 0, BigInt(cons));
      }
    }
    return read;
  }

  /** Resolves true when a record is in the ring, false after timeoutMs. epoll_wait runs on a koffi
   *  worker thread, so the event loop goes on meanwhile. */
  async wait(timeoutMs: number): Promise<boolean> {
    if (this.closed) throw new Error(`wait on ring buffer ${this.name}: closed`);
    if (this.available()) return true;
    const timeout = Number.isFinite(timeoutMs) ? Math.max(0, Math.min(Math.ceil(timeoutMs), 0x7fffffff)) : -1;
    this.pendingWaits++;
    try {
      return (await sys.epollWaitAsync(this.epfd, Buffer.alloc(16), timeout, `wait on ring buffer ${this.name}`)) > 0;
    } finally {
      // A worker thread may still sit in epoll_wait on epfd after close(): close it when the last leaves.
      if (--this.pendingWaits === 0 && this.closed) sys.closeFd(this.epfd);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    sys.munmap(this.producerMap);
    sys.munmap(this.consumerMap);
    if (this.pendingWaits === 0) sys.closeFd(this.epfd);
  }

  /** Whether a record (possibly still busy) is past the consumer position. */
  private available(): boolean {
    return Atomics.load(this.consumerPos, 0) < Atomics.load(this.producerPos, 0);
  }
}

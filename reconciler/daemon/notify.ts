// sd_notify(3) without a helper process: one AF_UNIX datagram per message to $NOTIFY_SOCKET.
// Node has no unix datagram sockets, so the socket is made through libc with koffi.

import koffi from "koffi";

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
/** sizeof(struct sockaddr_un): sa_family_t (2 bytes) + sun_path[108]. */
const SUN_PATH_MAX = 108;

export class NotifyError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "NotifyError";
  }
}

interface Libc {
  socket: (domain: number, type: number, protocol: number) => number;
  sendto: (fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrlen: number) => number;
  close: (fd: number) => number;
}

let libc: Libc | undefined;
function getLibc(): Libc {
  if (!libc) {
    const lib = koffi.load("libc.so.6");
    libc = {
      socket: lib.func("int socket(int, int, int)") as Libc["socket"],
      sendto: lib.func("long sendto(int, const void *, size_t, int, const void *, uint32_t)") as Libc["sendto"],
      close: lib.func("int close(int)") as Libc["close"],
    };
  }
  return libc;
}

/**
 * Encode a struct sockaddr_un for `socketPath`: a filesystem path, or an abstract name written
 * "@name" (the kernel wants a leading NUL and no terminator). Returns the buffer and its length.
 */
export function sockaddrUn(socketPath: string): { addr: Buffer; len: number } {
  const abstract = socketPath.startsWith("@");
  const name = Buffer.from(abstract ? socketPath.slice(1) : socketPath, "utf8");
  const pathLen = abstract ? 1 + name.length : name.length + 1;
  if (socketPath.length <= (abstract ? 1 : 0) || pathLen > SUN_PATH_MAX) {
    throw new NotifyError(`socket address ${JSON.stringify(socketPath)}: empty or longer than ${SUN_PATH_MAX} bytes`);
  }
  const addr = Buffer.alloc(2 + SUN_PATH_MAX);
  addr.writeUInt16LE(AF_UNIX, 0); // sa_family_t in host order: little-endian on x86-64 and arm64
  name.copy(addr, abstract ? 3 : 2);
  return { addr, len: 2 + pathLen };
}

/** Send one notification datagram (e.g. "READY=1\nSTATUS=...") to `socketPath`. */
export function sendNotify(socketPath: string, message: string): void {
  const c = getLibc();
  const { addr, len } = sockaddrUn(socketPath);
  const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new NotifyError(`socket(AF_UNIX, SOCK_DGRAM): errno ${koffi.errno()}`);
  try {
    const buf = Buffer.from(message, "utf8");
    const n = c.sendto(fd, buf, buf.length, MSG_NOSIGNAL, addr, len);
    if (n < 0) throw new NotifyError(`sendto ${socketPath}: errno ${koffi.errno()}`);
  } finally {
    c.close(fd);
  }
}

export interface Notifier {
  /** Whether NOTIFY_SOCKET was set (otherwise every method is a no-op). */
  readonly enabled: boolean;
  ready(status?: string): void;
  status(text: string): void;
  stopping(): void;
  watchdog(): void;
  /** Ping the watchdog every WATCHDOG_USEC/2 when systemd asked for it; returns a stopper. */
  startWatchdog(): () => void;
}

/** Interval for WATCHDOG=1 pings in ms (half of WATCHDOG_USEC), or null when not requested. */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid = process.pid): number | null {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return null;
  if (env.WATCHDOG_PID !== undefined && Number(env.WATCHDOG_PID) !== pid) return null;
  return Math.max(1, Math.floor(usec / 2000));
}

/**
 * A notifier for this process. No-op when $NOTIFY_SOCKET is unset. Send failures are passed to
 * `onError` (a lost notification must not take the daemon down).
 */
export function createNotifier(env: NodeJS.ProcessEnv = process.env, onError: (err: Error) => void = () => {}): Notifier {
  const socketPath = env.NOTIFY_SOCKET;
  const send = (msg: string) => {
    if (!socketPath) return;
    try {
      sendNotify(socketPath, msg);
    } catch (err) {
      onError(err instanceof Error ? err : new Error(String(err)));
    }
  };
  // STATUS= is one line: newlines would start a new assignment.
  const oneLine = (s: string) => s.replace(/[\r\n]+/g, " ");
  return {
    enabled: Boolean(socketPath),
    ready: (status) => send(status === undefined ? "READY=1" : `READY=1\nSTATUS=${oneLine(status)}`),
    status: (text) => send(`STATUS=${oneLine(text)}`),
    stopping: () => send("STOPPING=1"),
    watchdog: () => send("WATCHDOG=1"),
    startWatchdog: () => {
      const every = socketPath ? watchdogIntervalMs(env) : null;
      if (every === null) return () => {};
      const h = setInterval(() => send("WATCHDOG=1"), every);
      h.unref();
      return () => clearInterval(h);
    },
  };
}

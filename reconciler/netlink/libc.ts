// Minimal libc binding for the netlink package (self-contained on purpose: netlink/ must not depend on
// its siblings). Every wrapper throws SyscallError with the errno name instead of returning -1, so
// callers never see bare errno numbers.
import koffi from "koffi";
import { constants as osConstants } from "node:os";

const libc = koffi.load("libc.so.6");

// Raw prototypes. Pointers are "void *" so Node Buffers pass straight through without copies.
const c = {
  socket: libc.func("int socket(int domain, int type, int protocol)"),
  bind: libc.func("int bind(int fd, void *addr, uint32_t addrlen)"),
  getsockname: libc.func("int getsockname(int fd, void *addr, void *addrlen)"),
  setsockopt: libc.func("int setsockopt(int fd, int level, int name, void *val, uint32_t len)"),
  sendto: libc.func("long sendto(int fd, void *buf, unsigned long len, int flags, void *addr, uint32_t addrlen)"),
  recv: libc.func("long recv(int fd, void *buf, unsigned long len, int flags)"),
  close: libc.func("int close(int fd)"),
  setns: libc.func("int setns(int fd, int nstype)"),
  unshare: libc.func("int unshare(int flags)"),
  mount: libc.func("int mount(const char *src, const char *target, const char *fstype, unsigned long flags, void *data)"),
  umount2: libc.func("int umount2(const char *target, int flags)"),
  getpid: libc.func("int getpid(void)"),
  gettid: libc.func("int gettid(void)"),
};

export const AF_NETLINK = 16;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const SOCK_NONBLOCK = 0o4000;
export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
export const MSG_DONTWAIT = 0x40;
export const CLONE_NEWNET = 0x40000000;
export const MS_BIND = 4096;
export const MS_REC = 16384;
export const MS_SHARED = 1 << 20;
export const MNT_DETACH = 2;

const errnoNames = new Map<number, string>();
// Several names share a number; prefer the ones the kernel sources use.
const PREFERRED = new Set(["EOPNOTSUPP", "EAGAIN", "EDEADLK"]);
for (const [name, num] of Object.entries(osConstants.errno)) {
  if (!errnoNames.has(num) || PREFERRED.has(name)) errnoNames.set(num, name);
}

/** Name for an errno number ("EEXIST"), or "errno N" if unknown. */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

/** A failed system call: which call, which errno (number and name). */
export class SyscallError extends Error {
  override readonly name = "SyscallError";
  constructor(
    /** The libc function that failed, e.g. "setns". */
    readonly syscall: string,
    /** The positive errno value. */
    readonly errno: number,
    /** What we were trying to do, e.g. "enter netns foo". */
    readonly context: string,
  ) {
    super(`${context}: ${syscall}: ${errnoName(errno)}`);
  }
  get code(): string {
    return errnoName(this.errno);
  }
}

function check(name: string, ret: number, context: string): number {
  if (ret < 0) throw new SyscallError(name, koffi.errno(), context);
  return ret;
}

export function socket(domain: number, type: number, protocol: number, context = "socket"): number {
  return check("socket", c.socket(domain, type, protocol) as number, context);
}

export function bind(fd: number, addr: Buffer, context = "bind"): void {
  check("bind", c.bind(fd, addr, addr.length) as number, context);
}

/** Returns the socket's local address bytes (sockaddr of up to `size` bytes). */
export function getsockname(fd: number, size: number, context = "getsockname"): Buffer {
  const addr = Buffer.alloc(size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(size, 0);
  check("getsockname", c.getsockname(fd, addr, len) as number, context);
  return addr.subarray(0, len.readUInt32LE(0));
}

export function setsockoptInt(fd: number, level: number, name: number, value: number, context = "setsockopt"): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value, 0);
  check("setsockopt", c.setsockopt(fd, level, name, v, 4) as number, context);
}

export function sendto(fd: number, buf: Buffer, addr: Buffer, context = "sendto"): number {
  return check("sendto", c.sendto(fd, buf, buf.length, 0, addr, addr.length) as number, context);
}

/**
 * recv(2). Returns the byte count, or -1 with errno EAGAIN when `flags` has MSG_DONTWAIT and nothing
 * is queued (the only error not thrown, so pollers need no try/catch on the hot path).
 */
export function recv(fd: number, buf: Buffer, flags: number, context = "recv"): number {
  const n = c.recv(fd, buf, buf.length, flags) as number;
  if (n < 0) {
    const e = koffi.errno();
    if (e === osConstants.errno.EAGAIN) return -1;
    throw new SyscallError("recv", e, context);
  }
  return n;
}

export function close(fd: number): void {
  // Errors from close are not actionable (the fd is gone either way), so they are ignored.
  c.close(fd);
}

export function setns(fd: number, nstype: number, context = "setns"): void {
  check("setns", c.setns(fd, nstype) as number, context);
}

export function unshare(flags: number, context = "unshare"): void {
  check("unshare", c.unshare(flags) as number, context);
}

export function mount(src: string, target: string, fstype: string | null, flags: number, context = "mount"): void {
  check("mount", c.mount(src, target, fstype, flags, null) as number, context);
}

export function umount2(target: string, flags: number, context = "umount2"): void {
  check("umount2", c.umount2(target, flags) as number, context);
}

export function getpid(): number {
  return c.getpid() as number;
}

export function gettid(): number {
  return c.gettid() as number;
}

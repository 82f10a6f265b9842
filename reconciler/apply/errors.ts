// The kernel-side failures a user can act on (a missing feature, a refusal by the kernel, a busy or
// foreign object, an unsupported host), as classes the CLI's error boundary matches by instanceof.
// The kernel libraries stand alone; this list is where the layers above learn of their errors.

import { BpfError, FeatureError, MapMismatchError, TcxLinkError, UnpinError, UnsupportedArchitectureError } from "../ebpf-loader/index.js";
import { LinkNotFoundError, NetlinkError, NetnsError, QdiscConflictError, SyscallError, SysctlError, UnsupportedHostError } from "../netlink/index.js";
import { PinRootError } from "./kernel/context.js";

// Errors thrown for a caller's mistake in the libraries (MessageFormatError, ElfError, BtfError,
// UnsupportedMapTypeError, SysctlKeyError, CpuListError, SocketClosedError) are not here: reconcile
// passing them bad input is a bug.
export const KERNEL_ERRORS: ReadonlyArray<abstract new (...args: never[]) => Error> = [
  BpfError, // and VerifierError, KeyNotFoundError, PinNotFoundError
  FeatureError,
  MapMismatchError,
  TcxLinkError,
  UnpinError,
  UnsupportedArchitectureError,
  NetlinkError,
  SyscallError,
  NetnsError,
  SysctlError,
  LinkNotFoundError,
  QdiscConflictError,
  UnsupportedHostError,
  PinRootError,
];

// Drop reasons in words: Cilium's wording where Cilium has the same reason (`cilium monitor`,
// Hubble's drop_reason_desc), so that its users read our lines as they read theirs.

import { DropReason } from "../datapath/layouts.js";

const REASON_NAMES: ReadonlyMap<number, string> = new Map([
  [DropReason.POLICY_DENIED, "Policy denied"],
  [DropReason.NO_POLICY, "Policy denied by default deny"],
  [DropReason.CT_INVALID, "CT: Invalid state"],
  [DropReason.MALFORMED, "Malformed"],
  [DropReason.UNSUPPORTED_L3, "Unsupported L3 protocol"],
]);

/** The words of a DROP_* reason; "" for 0 (an allow has none); "reason N" for a number this binary does not know. */
export function reasonName(reason: number): string {
  if (reason === 0) return "";
  return REASON_NAMES.get(reason) ?? `reason ${reason}`;
}

/** Whether a reason is a policy decision (a deny entry or default deny), not a packet the datapath refused. */
export function isPolicyReason(reason: number): boolean {
  return reason === DropReason.POLICY_DENIED || reason === DropReason.NO_POLICY;
}

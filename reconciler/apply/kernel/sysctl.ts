// Sysctls the desired state names (forwarding, proxy ARP on host-side veths). They are read and
// set, never "deleted": a sysctl no longer desired keeps its value.

import { sysctlId } from "../../datapath/desired.js";
import type { DesiredState, SysctlSpec, StateOf } from "../../datapath/state.js";
import { sysctlRead, sysctlWrite } from "../../netlink/index.js";
import type { Change } from "../../plan/diff.js";
import type { ObjectResult, Target } from "../target.js";
import { eachChange } from "./per-object.js";

export class SysctlTarget implements Target<"sysctl"> {
  readonly kind = "sysctl" as const;

  async observe(desired: DesiredState): Promise<StateOf<"sysctl">> {
    const out = new Map<string, SysctlSpec>();
    for (const s of desired.sysctls.values()) {
      let value: string;
      try {
        value = sysctlRead(s.key, s.netns).trim();
      } catch {
        continue; // the device (and so its conf/ directory) does not exist yet
      }
      out.set(sysctlId(s), { key: s.key, value, ...(s.netns ? { netns: s.netns } : {}) });
    }
    return out;
  }

  async apply(changes: readonly Change<"sysctl">[]): Promise<ObjectResult[]> {
    return eachChange(changes, (c) => {
      if (c.op === "delete") return;
      const s = c.after;
      sysctlWrite(s.key, s.value, s.netns);
    });
  }
}

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* policy_rev: a one-entry array holding the policy revision, the counter the verdicts cached in
 * conntrack (ct_verdict, conntrack.h) are valid for. reconcile seeds it when it creates the map and
 * bumps it after every batch that wrote endpoint, ipcache or policy entries. The programs only read
 * it. Mirrored by reconciler/datapath/layouts.ts (POLICY_REV_*). */
#ifndef RECONCILE_POLICY_REV_H
#define RECONCILE_POLICY_REV_H

#include <linux/types.h>

#define POLICY_REV_MAX_ENTRIES 1 /* key 0 */

/* 4 bytes. Never 0 once seeded (0 = no cached verdict is valid). */
struct policy_rev {
	__u32 rev; /* the current revision */
};

#endif /* RECONCILE_POLICY_REV_H */

// SPDX-License-Identifier: GPL-2.0
/* Test program for the ring buffer reader (test/kernel/ringbuf.test.ts). Each BPF_PROG_RUN writes
 * ctl.per_run records to "ring". Record number seq (counted across runs from 0) is
 * 8 + RECORD_TAIL(seq) bytes: the u64 seq, then byte j of the tail = (seq + j) & 0xff. Tail
 * lengths cycle through 4, 12 and 36, so record lengths are not all multiples of 8. Every
 * ctl.discard_every-th record (seq % discard_every == discard_every - 1) is reserved and then
 * discarded; 0 = none. A reserve that fails (ring full) counts in stats.failed, and still uses its
 * seq. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TC_ACT_OK 0
#define MAX_PER_RUN 64

struct ctl {
	__u32 per_run;       /* records per run, at most MAX_PER_RUN */
	__u32 discard_every; /* 0 = discard none */
};

struct stats {
	__u64 next_seq; /* seq of the next record */
	__u64 failed;   /* reserves that failed */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16384);
} ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ctl);
	__uint(max_entries, 1);
} control SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct stats);
	__uint(max_entries, 1);
} counters SEC(".maps");

/* Reserves a record of 8 + tail bytes, fills it and submits (or discards) it; 0 when the ring
 * was full. */
#define WRITE_RECORD(tail)                                                       \
	({                                                                       \
		__u8 *r = bpf_ringbuf_reserve(&ring, 8 + (tail), 0);             \
		if (r) {                                                         \
			*(__u64 *)r = seq;                                       \
			for (int j = 0; j < (tail); j++)                         \
				r[8 + j] = (seq + j) & 0xff;                     \
			if (discard)                                             \
				bpf_ringbuf_discard(r, 0);                       \
			else                                                     \
				bpf_ringbuf_submit(r, 0);                        \
		}                                                                \
		r != 0;                                                          \
	})

SEC("tc")
int write_records(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct ctl *c = bpf_map_lookup_elem(&control, &zero);
	struct stats *s = bpf_map_lookup_elem(&counters, &zero);

	if (!c || !s)
		return TC_ACT_OK;
	__u32 n = c->per_run;
	__u32 every = c->discard_every;
	for (__u32 i = 0; i < MAX_PER_RUN && i < n; i++) {
		__u64 seq = s->next_seq++;
		int discard = every && seq % every == every - 1;
		int ok;

		switch (seq % 3) {
		case 0:
			ok = WRITE_RECORD(4);
			break;
		case 1:
			ok = WRITE_RECORD(12);
			break;
		default:
			ok = WRITE_RECORD(36);
			break;
		}
		if (!ok)
			s->failed++;
	}
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";

// SPDX-License-Identifier: GPL-2.0
/*
 * The record of enforcing mode's refusals, rationed per container. Every
 * refusal shares one ring buffer with the tag, autotag and grant events:
 * a tagged root that loops a refused call (kill of contidd, `bpftool map
 * show id N`) would otherwise fill it with its own denials, and the
 * events of every other container would be lost, counted in events_lost
 * but not said whose. Each container gets a budget of recorded denials
 * (DenialRecordBurst= at once, DenialRecordRate= more per second); past
 * it a denial is counted against that container alone, in its
 * suppressed total, and takes no ring buffer space. The refusal itself
 * never depends on the budget: the callers return -EPERM either way.
 */
#include "contid.h"

/* The container's budget, made on its first denial; 0 when denial_budget
 * is full, and the caller then records the denial unrationed. */
static __always_inline struct denial_budget *denial_budget_of(__u64 id)
{
	struct denial_budget *b = bpf_map_lookup_elem(&denial_budget, &id);
	if (b)
		return b;
	struct denial_budget fresh = {};
	/* NOEXIST: a guard of the same container on another CPU may have
	 * made it in between, and its entry must not be reset. */
	bpf_map_update_elem(&denial_budget, &id, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&denial_budget, &id);
}

/* How often a racing CPU may move the schedule under us before the
 * denial is recorded anyway: contention errs towards the record. */
#define DENIAL_CAS_TRIES 4

/*
 * Whether one more denial fits the budget: a token bucket written as its
 * schedule (GCRA), so that one 64-bit word, moved by compare-and-swap,
 * is the whole state and no lock is needed in the guards. tat is when
 * the bucket is full again; each recorded denial pushes it one step (a
 * second / rate) on, and a denial that would push it more than burst
 * steps past now does not fit.
 */
static __always_inline int denial_fits(struct denial_budget *b, __u64 now, __u32 burst, __u32 rate)
{
	__u64 step = 1000000000ULL / rate;
	__u64 window = step * burst;

	for (int i = 0; i < DENIAL_CAS_TRIES; i++) {
		__u64 tat = *(volatile __u64 *)&b->tat;
		__u64 next = (tat > now ? tat : now) + step;
		if (next - now > window)
			return 0;
		if (__sync_val_compare_and_swap(&b->tat, tat, next) == tat)
			return 1;
	}
	return 1;
}

/*
 * Report a refusal of task t, tagged id with flags, of op: recorded in
 * the ring buffer with the container's suppressed total, or, over the
 * budget, added to that total. Each refusal is thus either an event or
 * one in the total, never both and never neither (short of a full ring
 * buffer, which events_lost counts as before).
 */
static __always_inline void record_denial(struct task_struct *t, __u64 id, __u32 flags, enum denied_op op)
{
	__u32 zero = 0;
	__u64 suppressed = 0;
	struct config_value *c = bpf_map_lookup_elem(&contid_config, &zero);

	if (c && c->denial_burst && c->denial_rate) {
		struct denial_budget *b = denial_budget_of(id);
		if (b) {
			if (!denial_fits(b, bpf_ktime_get_boot_ns(), c->denial_burst, c->denial_rate)) {
				__sync_fetch_and_add(&b->suppressed, 1);
				return;
			}
			/* Read before the event is made: one that another CPU
			 * suppresses meanwhile is carried by a later event or
			 * contidd's sweep, and user space journals only growth. */
			suppressed = *(volatile __u64 *)&b->suppressed;
		}
	}
	struct event *e = event_reserve(EV_DENIED, t);
	if (!e)
		return;
	e->id = id;
	e->flags = flags;
	e->op = op;
	e->count = suppressed;
	bpf_ringbuf_submit(e, 0);
}

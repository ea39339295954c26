/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared state of contid's eBPF programs: the map definitions, the records
 * and constants user space shares (bpf2go generates them for Go, see
 * kernel/gen.go), and the tagging rules.
 *
 * Each concern lives in its own file (fork.c, join.c, ...); contid.c
 * compiles them into one object, so every map is declared once and the
 * loader hands each program the one pinned instance (MapReplacements).
 */
#ifndef CONTID_H
#define CONTID_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define CONTID_MAX_DEPTH 8
/* cgroup2 nesting is far shallower in practice; the bound keeps the
 * verifier happy and the fork hook cheap. */
#define CONTID_CGROUP_WALK 32
#define CONTID_NAME_LEN 64
#define CONTID_ALLOC_TRIES 16

/*
 * The values user space shares with these programs are enums, not macros,
 * so they reach BTF and bpf2go generates them for Go (-type in
 * kernel/gen.go): no number is written twice.
 */

/* Bits of the tags' flags; contid.Flags is their public face and
 * kernel/types.go checks at compile time that it agrees. */
enum contid_flag {
	FLAG_ALLOW_NESTING = 1,
	FLAG_JOIN_IGNORE = 2,
	FLAG_AUTOTAG = 4,
	/* Per-container exceptions to enforcing mode's refusals (the
	 * AllowBPF and AllowModules options of the Tag* calls); the guards
	 * read them from the task's own tag beside the global allow bits. */
	FLAG_ALLOW_BPF = 8,
	FLAG_ALLOW_MODULES = 16,
};

/* What an event reports (kernel.EventKind). EV_LOST never comes from
 * here: user space makes it from events_lost, numbered in the same
 * sequence. */
enum event_kind {
	EV_TAGGED = 1,
	EV_AUTOTAG = 2,
	EV_DENIED = 3,
	EV_JOIN_REFUSED = 4,
	EV_LOST = 5,
	/* A guard let a tagged task through because its container was
	 * granted the exception (FLAG_ALLOW_BPF, FLAG_ALLOW_MODULES); op
	 * names what it would have refused. */
	EV_GRANT_USED = 6,
};

/* The operation an EV_DENIED event names; kernel/events.go gives each
 * its name on the bus and in the journal. */
enum denied_op {
	DENIED_BPF = 1,
	DENIED_BPF_MAP = 2,
	DENIED_BPF_PROG = 3,
	DENIED_NETLINK_SEND = 4,
	DENIED_TASK_ALLOC = 5,
	DENIED_UNLINK = 6,
	DENIED_RENAME = 7,
	DENIED_RMDIR = 8,
	DENIED_UMOUNT = 9,
	DENIED_KILL = 10,
	DENIED_PTRACE = 11,
	DENIED_SETRLIMIT = 12,
	DENIED_SCHED = 13,
	DENIED_OPEN_WRITE = 14,
	DENIED_BPF_PROG_LOAD = 15,
	DENIED_MODULE_LOAD = 16,
	DENIED_TRUNCATE = 17,
	DENIED_MOUNT = 18,
	DENIED_OOM_SCORE_ADJ = 19,
	DENIED_CGROUP_MOVE = 20,
	DENIED_USERMODE_HELPER = 21,
	DENIED_MODULE_REQUEST = 22,
	DENIED_FSFREEZE = 23,
	DENIED_FS_SHUTDOWN = 24,
};

/* Kinds of protected_ids keys. */
enum protect_kind {
	PROTECT_MAP = 1,
	PROTECT_PROG = 2,
	PROTECT_LINK = 3,
};

/* tag_iter modes. */
enum iter_mode {
	ITER_CGROUP = 1,
	ITER_PROCESS = 2,
};

/* tag_iter output records. */
enum iter_result {
	ITER_TAGGED = 1,
	ITER_REFUSED = 2,
	/* A live task of the cgroup's subtree that already had the ID (the
	 * fork program tagged it first, or it came from another cgroup of
	 * the same pod): only so user space knows the cgroup holds it. */
	ITER_PRESENT = 3,
};

#define EPERM 1
#define ENOMEM 12

struct cgroup_tag {
	__u64 id;
	__u64 parent;
	__u32 depth; /* entries used in chain */
	__u32 flags;
	__u64 chain[CONTID_MAX_DEPTH]; /* innermost first, chain[0] == id */
};

struct task_tag {
	__u64 id;
	__u32 flags;
	__u32 pad;
};

struct pid_record {
	__u64 id; /* 0: the process was untagged (kept so reuse shows) */
	__u64 start_ns; /* task->start_boottime of the thread-group leader */
	__u64 exit_ns; /* boottime when the last thread exited, 0 while alive */
};

struct pid_tag {
	struct pid_record cur;
	struct pid_record prev;
};

struct event {
	enum event_kind kind;
	__u32 pid;
	__u32 tid;
	enum denied_op op; /* EV_DENIED only */
	__u64 id;
	__u64 cgroup_id;
	__u64 parent_cgroup_id;
	/* EV_DENIED: the container's suppressed total (denial_budget) as
	 * the guard read it; user space journals its growth. */
	__u64 count;
	__u64 boottime_ns;
	__u32 depth;
	__u32 flags;
	__u64 chain[CONTID_MAX_DEPTH];
	__u8 name[CONTID_NAME_LEN]; /* EV_AUTOTAG: NUL-terminated */
};

struct iter_target {
	__u64 cgroup_id;
	__u32 tgid;
	enum iter_mode mode;
	struct cgroup_tag tag;
};

struct iter_record {
	__u32 tid;
	enum iter_result result;
};

/* Bits of config_value.allow: what enforcing mode lets tagged tasks do
 * after all ([Enforce] AllowBPF=, AllowModules=). */
enum allow_bit {
	ALLOW_BPF = 1,
	ALLOW_MODULES = 2,
};

/* A container's use of one of its exceptions, noted once: key of
 * grant_noted, what being an allow_bit. */
struct grant_key {
	__u64 id;
	enum allow_bit what;
	__u32 pad;
};

struct config_value {
	__u32 max_depth;
	__u32 allow;
	/* The inode number of the host's mount namespace (PID 1's), which
	 * the mount guards (statefs.c) tell from a container's own. */
	__u32 host_mnt_ns;
	/* How many denials a container may have recorded at once, and how
	 * many more per second ([Enforce] DenialRecordBurst=,
	 * DenialRecordRate=); either 0 records every denial (denial.c). */
	__u32 denial_burst;
	__u32 denial_rate;
	__u32 pad;
};

struct protected_key {
	enum protect_kind kind;
	__u32 id;
};

/* A directory that holds contid's pins, by superblock and inode. */
struct protected_inode {
	__u64 ino;
	__u32 dev;
	__u32 pad;
};

/*
 * struct event travels only through the ring buffer and struct
 * iter_record only through the iterator's seq file: no map and no CO-RE
 * access names them, so clang would leave them out of BTF and bpf2go
 * could not generate their Go types; nor would it keep the two enums of
 * bits, which no field is declared with. These never-read pointers keep
 * them in; their section is not one cilium/ebpf loads (no map, no
 * program).
 */
const struct event *contid_btf_event SEC("contid_btf_types");
const struct iter_record *contid_btf_iter_record SEC("contid_btf_types");
const enum contid_flag *contid_btf_flag SEC("contid_btf_types");
const enum allow_bit *contid_btf_allow_bit SEC("contid_btf_types");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct cgroup_tag);
} cgroup_tags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_tag);
} task_tags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct pid_tag);
} pid_tags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u32);
} autotag_parents SEC(".maps");

#define CONTID_SCOPE_PREFIX 32
#define CONTID_SCOPE_SUFFIX 16
#define CONTID_SCOPES_PER_PARENT 4

/* One PARENT/PREFIX*SUFFIX pattern (contid.ScopePattern); a pattern with
 * both lengths 0 is an unused slot. */
struct scope_pattern {
	__u8 prefix_len;
	__u8 suffix_len;
	char prefix[CONTID_SCOPE_PREFIX];
	char suffix[CONTID_SCOPE_SUFFIX];
};

struct autotag_scope {
	struct scope_pattern patterns[CONTID_SCOPES_PER_PARENT];
};

/* Parents, by cgroup ID, whose new children are containers only when
 * their names match: Docker's scopes beside the host's services. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, struct autotag_scope);
} autotag_scopes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

/* Reservations that failed because user space fell behind; user space
 * turns increases into EventLost. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} events_lost SEC(".maps");

/* A hint only: uniqueness comes from id_claims. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} id_counter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 17);
	__type(key, __u64);
	__type(value, __u8);
} id_claims SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config_value);
} contid_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct iter_target);
} iter_target SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct protected_key);
	__type(value, __u8);
} protected_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct protected_inode);
	__type(value, __u8);
} protected_inodes SEC(".maps");

/*
 * The containers whose use of a per-container exception (FLAG_ALLOW_BPF,
 * FLAG_ALLOW_MODULES) was reported: an agent that loads a program a
 * second loads them by the hundred, and the journal needs the first only.
 * Pinned like every map, so a restart of contidd does not report them
 * again; LRU, so a host with more containers that use the exception than
 * it holds reports an evicted one again rather than none.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct grant_key);
	__type(value, __u8);
} grant_noted SEC(".maps");

/* A container's denial budget (denial.c): the GCRA schedule of its
 * recorded denials and the monotonic total of those it did not record. */
struct denial_budget {
	__u64 tat; /* boottime at which the budget is full again */
	__u64 suppressed;
};

/*
 * One entry per container that was refused something, by its innermost
 * ID (the refused task's own tag). A plain HASH, not an LRU: an evicted
 * entry would take its suppressed total with it, unsaid. Sized like
 * cgroup_tags, so every tagged container fits; contidd removes an entry
 * when it releases the ID, after journaling what it held. Preallocated,
 * so a guard never waits for memory; when it is full after all, the
 * denial is recorded as before the budget (denial.c).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct denial_budget);
} denial_budget SEC(".maps");

/*
 * How much of each container's suppressed total contidd has journaled.
 * No program reads or writes it: user space alone does, and the kernel
 * only keeps it, pinned beside denial_budget, so that a contidd that
 * restarts neither says a count again nor skips one. A value of its own
 * rather than a field of denial_budget's: a write from user space
 * replaces the whole value, and would undo the guards' atomic updates.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} denial_said SEC(".maps");

/* contid's own daemon, by thread-group ID; the value is its start time in
 * clock ticks (as /proc/PID/stat gives it), so a reused PID is not
 * mistaken for it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} protected_tasks SEC(".maps");

/* Join outcomes; these programs' own, user space never sees them. */
enum join_outcome {
	JOIN_SAME = 0,
	JOIN_TAKE = 1,
	JOIN_REFUSE = 2,
};

/*
 * The write-once rule: an untagged task takes the cgroup's ID; a tagged
 * one takes it only when the cgroup's ID is nested below its own (its ID
 * appears further out in the cgroup's chain); otherwise it keeps its ID.
 */
static __always_inline enum join_outcome join_decision(__u64 current_id, const struct cgroup_tag *ct)
{
	if (current_id == 0)
		return JOIN_TAKE;
	if (current_id == ct->id)
		return JOIN_SAME;
	for (int i = 1; i < CONTID_MAX_DEPTH; i++) {
		if (i >= ct->depth)
			break;
		if (ct->chain[i] == current_id)
			return JOIN_TAKE;
	}
	return JOIN_REFUSE;
}

static __always_inline __u64 cgroup_id_of(struct cgroup *cg)
{
	return BPF_CORE_READ(cg, kn, id);
}

/* The parent through the cgroup's own css: kernfs_node->parent was renamed
 * (__parent) in 6.15, cgroup->self.parent is the same on 6.1 and 6.18. */
static __always_inline struct cgroup *cgroup_parent_of(struct cgroup *cg)
{
	return BPF_CORE_READ(cg, self.parent, cgroup);
}

static __always_inline struct cgroup *task_dfl_cgroup(struct task_struct *t)
{
	return BPF_CORE_READ(t, cgroups, dfl_cgrp);
}

/* The nearest tagged cgroup at or above cg, with its id in *cgid. */
static __always_inline struct cgroup_tag *nearest_tag(struct cgroup *cg, __u64 *cgid)
{
	for (int i = 0; i < CONTID_CGROUP_WALK; i++) {
		if (!cg)
			return 0;
		__u64 id = cgroup_id_of(cg);
		struct cgroup_tag *t = bpf_map_lookup_elem(&cgroup_tags, &id);
		if (t) {
			*cgid = id;
			return t;
		}
		cg = cgroup_parent_of(cg);
	}
	return 0;
}

/*
 * The ID belongs to the process: the thread-group leader's tag wins over a
 * thread's own. A join moves a whole process but fires once, for the
 * leader; threads that inherited the old ID at clone would otherwise keep
 * handing it to their children. The leader's task_struct, and with it its
 * storage, lives until the last thread is reaped.
 */
static __always_inline struct task_tag *task_tag_of(struct task_struct *t)
{
	struct task_tag *tt = bpf_task_storage_get(&task_tags, t->group_leader, 0, 0);
	if (tt && tt->id)
		return tt;
	return bpf_task_storage_get(&task_tags, t, 0, 0);
}

static __always_inline int set_task_tag(struct task_struct *t, __u64 id, __u32 flags)
{
	struct task_tag *tt = bpf_task_storage_get(&task_tags, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!tt)
		return -ENOMEM;
	tt->flags = flags;
	tt->id = id;
	return 0;
}

/*
 * Record the ID of a thread-group leader for attribution after exit. A
 * different start time means the PID was reused: the old record moves to
 * prev so user space can see both and refuse to guess. Untagged processes
 * only rotate an existing entry, which keeps the hot path free of inserts.
 */
static __always_inline void note_pid(struct task_struct *leader, __u64 id)
{
	__u32 tgid = BPF_CORE_READ(leader, tgid);
	__u64 start = BPF_CORE_READ(leader, start_boottime);
	struct pid_tag *pt = bpf_map_lookup_elem(&pid_tags, &tgid);

	if (pt) {
		if (pt->cur.start_ns == start) {
			pt->cur.id = id;
			return;
		}
		pt->prev = pt->cur;
		pt->cur.id = id;
		pt->cur.start_ns = start;
		pt->cur.exit_ns = 0;
		return;
	}
	if (!id)
		return;
	struct pid_tag fresh = {};
	fresh.cur.id = id;
	fresh.cur.start_ns = start;
	bpf_map_update_elem(&pid_tags, &tgid, &fresh, BPF_ANY);
}

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&events_lost, &zero);
	if (lost)
		__sync_fetch_and_add(lost, 1);
}

static __always_inline struct event *event_reserve(enum event_kind kind, struct task_struct *t)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost();
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->pid = BPF_CORE_READ(t, tgid);
	e->tid = BPF_CORE_READ(t, pid);
	e->boottime_ns = bpf_ktime_get_boot_ns();
	return e;
}

static __always_inline void event_set_tag(struct event *e, const struct cgroup_tag *ct)
{
	e->id = ct->id;
	e->depth = ct->depth;
	e->flags = ct->flags;
	for (int i = 0; i < CONTID_MAX_DEPTH; i++)
		e->chain[i] = ct->chain[i];
}

/* A task took ct's ID, or refused it (kind EV_JOIN_REFUSED). */
static __always_inline void emit_tag_event(enum event_kind kind, struct task_struct *t, const struct cgroup_tag *ct,
					   __u64 cgid)
{
	struct event *e = event_reserve(kind, t);
	if (!e)
		return;
	event_set_tag(e, ct);
	e->cgroup_id = cgid;
	bpf_ringbuf_submit(e, 0);
}

/*
 * Apply the join rule to one task for ct. Returns the outcome so callers
 * can count; emits the matching event.
 */
static __always_inline enum join_outcome apply_join(struct task_struct *t, const struct cgroup_tag *ct, __u64 cgid)
{
	__u64 cur = 0;
	struct task_tag *tt = task_tag_of(t);
	if (tt)
		cur = tt->id;

	enum join_outcome d = join_decision(cur, ct);
	if (d == JOIN_TAKE) {
		if (set_task_tag(t, ct->id, ct->flags) < 0)
			return JOIN_SAME;
		if (BPF_CORE_READ(t, pid) == BPF_CORE_READ(t, tgid))
			note_pid(t, ct->id);
		emit_tag_event(EV_TAGGED, t, ct, cgid);
	} else if (d == JOIN_REFUSE) {
		emit_tag_event(EV_JOIN_REFUSED, t, ct, cgid);
	}
	return d;
}

char LICENSE[] SEC("license") = "GPL";

#endif /* CONTID_H */

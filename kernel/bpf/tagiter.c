// SPDX-License-Identifier: GPL-2.0
/* Tags the tasks already inside a cgroup subtree (TagCgroup) or one
 * process (TagProcess), run by user space after it wrote cgroup_tags. */
#include "contid.h"

/* include/linux/sched.h */
#define PF_EXITING 0x00000004

/*
 * A task iterator visits every thread, so processes that were already
 * multi-threaded get all threads tagged, and it runs in the kernel with
 * the exact start_boottime needed for pid_tags. Each touched task writes
 * one iter_record to the seq file so user space can count.
 */
SEC("iter/task")
int contid_tag_iter(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	if (!task)
		return 0;

	__u32 zero = 0;
	struct iter_target *target = bpf_map_lookup_elem(&iter_target, &zero);
	if (!target)
		return 0;

	struct cgroup_tag *ct = 0;
	__u64 cgid = 0;
	if (target->mode == ITER_PROCESS) {
		if (BPF_CORE_READ(task, tgid) != target->tgid)
			return 0;
		ct = &target->tag;
	} else if (target->mode == ITER_CGROUP) {
		/* Inside the target's subtree? Remember the nearest tagged
		 * cgroup on the way up: a deeper tag wins. */
		struct cgroup *cg = task_dfl_cgroup(task);
		int inside = 0;
		for (int i = 0; i < CONTID_CGROUP_WALK; i++) {
			if (!cg)
				break;
			__u64 id = cgroup_id_of(cg);
			if (!ct) {
				ct = bpf_map_lookup_elem(&cgroup_tags, &id);
				if (ct)
					cgid = id;
			}
			if (id == target->cgroup_id) {
				inside = 1;
				break;
			}
			cg = cgroup_parent_of(cg);
		}
		if (!inside || !ct)
			return 0;
	} else {
		return 0;
	}

	enum join_outcome d = apply_join(task, ct, cgid);
	enum iter_result result = d == JOIN_TAKE ? ITER_TAGGED : ITER_REFUSED;
	if (target->mode == ITER_CGROUP) {
		/* The records of a cgroup's walk are every live task in its
		 * subtree, so user space knows from them alone whether the
		 * cgroup held processes when it was tagged, without reading
		 * cgroup.events before its reply. A task on its way out (past
		 * exit_signals, or a zombie not yet reaped) is tagged but not
		 * reported: its cgroup no longer shows it as populated, and a
		 * record would have user space take the cgroup for one that
		 * held processes, so its container would end at the first
		 * exit check, before the runtime puts its processes in. */
		if (BPF_CORE_READ(task, flags) & PF_EXITING)
			return 0;
		if (d == JOIN_SAME)
			result = ITER_PRESENT;
	} else if (d == JOIN_SAME) {
		return 0;
	}
	struct iter_record rec = {
		.tid = BPF_CORE_READ(task, pid),
		.result = result,
	};
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}

// SPDX-License-Identifier: GPL-2.0
/* Enforcing-mode fork inheritance: loaded only where the BPF LSM runs. */
#include "contid.h"

/*
 * security_task_alloc() runs inside copy_process() and may fail the fork.
 * Failing it when the child's storage cannot be created means a tagged
 * task can never produce an untagged child, even under memory pressure;
 * it also covers kernel-internal clones that skip the fork tracepoint
 * (io_uring workers).
 */
SEC("lsm/task_alloc")
int BPF_PROG(contid_task_alloc, struct task_struct *task, unsigned long clone_flags)
{
	struct task_struct *me = bpf_get_current_task_btf();
	struct task_tag *pt = task_tag_of(me);
	if (!pt || !pt->id)
		return 0;
	if (set_task_tag(task, pt->id, pt->flags) < 0) {
		record_denial(me, pt->id, pt->flags, DENIED_TASK_ALLOC);
		return -ENOMEM;
	}
	return 0;
}

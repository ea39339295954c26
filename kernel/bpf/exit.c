// SPDX-License-Identifier: GPL-2.0
/* Exit bookkeeping for attribution of audit records that arrive after the
 * process is gone. */
#include "contid.h"

/*
 * do_exit() decrements signal->live before this tracepoint, so the last
 * thread of a group sees 0 here; earlier threads leave the record alone.
 *
 * pid_tags is an LRU: a flood of short processes can evict the record of
 * a tagged process while it lives, and user space then reads its ID from
 * task_tags through a pidfd. Once it has exited that is impossible, and
 * its last system calls are often read after that. The group's task_tags
 * entry is still there (task storage goes when the task_struct is freed,
 * after this tracepoint), so the record is written again here, with the
 * exit time: the process holds its PID until it is reaped, so no later
 * life of the PID can be confused with it.
 */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(contid_exit, struct task_struct *p)
{
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;

	__u32 tgid = BPF_CORE_READ(p, tgid);
	__u64 start = BPF_CORE_READ(p, group_leader, start_boottime);
	struct pid_tag *pt = bpf_map_lookup_elem(&pid_tags, &tgid);
	if (!pt) {
		struct task_tag *tt = task_tag_of(p);
		if (!tt || !tt->id)
			return 0;
		struct pid_tag fresh = {};
		fresh.cur.id = tt->id;
		fresh.cur.start_ns = start;
		fresh.cur.exit_ns = bpf_ktime_get_boot_ns();
		bpf_map_update_elem(&pid_tags, &tgid, &fresh, BPF_NOEXIST);
		return 0;
	}

	if (pt->cur.start_ns == start && pt->cur.exit_ns == 0)
		pt->cur.exit_ns = bpf_ktime_get_boot_ns();
	return 0;
}

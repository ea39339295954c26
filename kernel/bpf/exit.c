// SPDX-License-Identifier: GPL-2.0
/* Exit bookkeeping for attribution of audit records that arrive after the
 * process is gone. */
#include "contid.h"

/*
 * do_exit() decrements signal->live before this tracepoint, so the last
 * thread of a group sees 0 here; earlier threads leave the record alone.
 */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(contid_exit, struct task_struct *p)
{
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;

	__u32 tgid = BPF_CORE_READ(p, tgid);
	struct pid_tag *pt = bpf_map_lookup_elem(&pid_tags, &tgid);
	if (!pt)
		return 0;

	__u64 start = BPF_CORE_READ(p, group_leader, start_boottime);
	if (pt->cur.start_ns == start && pt->cur.exit_ns == 0)
		pt->cur.exit_ns = bpf_ktime_get_boot_ns();
	return 0;
}

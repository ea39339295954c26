// SPDX-License-Identifier: GPL-2.0
/* Tamper-proofing (enforcing mode), continued: contidd's standing with the
 * OOM killer and the scheduler through procfs. 1000 in
 * /proc/<contidd>/oom_score_adj makes it the first process killed under
 * memory pressure, which a container can create at will; -1000 elsewhere
 * shields the attacker's own. /proc/<contidd>/autogroup sets the nice of
 * contidd's autogroup, its CPU weight wherever it sits in the root task
 * group; the kernel asks task_setnice about the writer there, not about
 * contidd, so guard.c's setnice guard never sees it. */

/* The task a /proc/<pid> or /proc/<pid>/task/<tid> inode stands for, as
 * the kernel's get_proc_task() finds it: the first task attached to the
 * inode's struct pid. */
static __always_inline struct task_struct *proc_inode_task(struct inode *inode)
{
	struct proc_inode *pi = (void *)inode - bpf_core_field_offset(struct proc_inode, vfs_inode);
	struct pid *pid = BPF_CORE_READ(pi, pid);
	if (!pid)
		return 0;
	struct hlist_node *first = BPF_CORE_READ(pid, tasks[PIDTYPE_PID].first);
	if (!first)
		return 0;
	return (void *)first - bpf_core_field_offset(struct task_struct, pid_links[PIDTYPE_PID]);
}

/* The operation a write of the file d names would be, 0 for none;
 * umh_name (umhelper.c) reads the name as two words, compared without a
 * loop: a byte loop that remembers two verdicts makes the verifier walk
 * every combination of them. Longer names differ within the 15
 * characters read. */
static __always_inline enum denied_op proc_guarded_name(struct dentry *d)
{
	__u64 w[2];
	umh_name(d, w);
	if (w[0] == WORD8('o', 'o', 'm', '_', 's', 'c', 'o', 'r') &&
	    w[1] == WORD8('e', '_', 'a', 'd', 'j', 0, 0, 0))
		return DENIED_OOM_SCORE_ADJ;
	if (w[0] == WORD8('o', 'o', 'm', '_', 'a', 'd', 'j', 0) && w[1] == 0)
		return DENIED_OOM_SCORE_ADJ;
	if (w[0] == WORD8('a', 'u', 't', 'o', 'g', 'r', 'o', 'u') &&
	    w[1] == WORD8('p', 0, 0, 0, 0, 0, 0, 0))
		return DENIED_SCHED;
	return 0;
}

/* oom_score_adj and the older oom_adj, opened for write, of contidd's
 * process or any of its threads (/proc/<pid>/task/<tid>/ sets the same
 * process-wide value), and its autogroup. A second program on file_open, beside guard.c's,
 * so the common write-open that is no procfs file costs one more read. */
SEC("lsm/file_open")
int BPF_PROG(contid_guard_oom_adj, struct file *file)
{
	if (!(BPF_CORE_READ(file, f_mode) & FMODE_WRITE))
		return 0;
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	if (BPF_CORE_READ(inode, i_sb, s_magic) != PROC_SUPER_MAGIC)
		return 0;
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	enum denied_op op = proc_guarded_name(BPF_CORE_READ(file, f_path.dentry));
	if (!op)
		return 0;
	struct task_struct *t = proc_inode_task(inode);
	if (t && is_protected_task(t))
		return deny(tt, op);
	return 0;
}

// SPDX-License-Identifier: GPL-2.0
/* Fork inheritance in every mode; in enforcing mode forklsm.c copies the
 * parent's tag earlier and this program adds the cgroup part. */
#include "contid.h"

/*
 * sched_process_fork fires in kernel_clone() after copy_process() has put
 * the child in its cgroup (cgroup_post_fork, which also handles
 * CLONE_INTO_CGROUP) and before wake_up_new_task(), so the child carries
 * its tag before it first runs.
 *
 * The child's cgroup is consulted on every fork, not only when it differs
 * from the parent's: TagCgroup writes cgroup_tags before it walks the tasks
 * already inside, so a fork racing with it is either seen by the walk or
 * sees the cgroup tag here. JoinPolicy is ignored for the same reason.
 */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(contid_fork, struct task_struct *parent, struct task_struct *child)
{
	__u64 id = 0;
	__u32 flags = 0;
	struct task_tag *pt = task_tag_of(parent);
	if (pt) {
		id = pt->id;
		flags = pt->flags;
	}

	struct cgroup *child_cg = task_dfl_cgroup(child);
	__u64 cgid = 0;
	struct cgroup_tag *ct = nearest_tag(child_cg, &cgid);
	int took = 0, refused = 0;
	if (ct) {
		enum join_outcome d = join_decision(id, ct);
		if (d == JOIN_TAKE) {
			id = ct->id;
			flags = ct->flags;
			took = 1;
		} else if (d == JOIN_REFUSE && child_cg != task_dfl_cgroup(parent)) {
			/* Only a CLONE_INTO_CGROUP into a foreign container is
			 * news; ordinary forks of a task that once refused a
			 * join would flood the ring buffer. */
			refused = 1;
		}
	}

	if (id)
		set_task_tag(child, id, flags);

	if (BPF_CORE_READ(child, pid) == BPF_CORE_READ(child, tgid))
		note_pid(child, id);

	if (took)
		emit_tag_event(EV_TAGGED, child, ct, cgid);
	else if (refused)
		emit_tag_event(EV_JOIN_REFUSED, child, ct, cgid);
	return 0;
}

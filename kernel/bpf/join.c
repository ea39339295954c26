// SPDX-License-Identifier: GPL-2.0
/* Tag on join: machinectl shell, systemd-run -M, nsenter plus a cgroup
 * move all end in cgroup_attach_task. */
#include "contid.h"

/*
 * cgroup_attach_task fires once per migration, after the move, with the
 * thread-group leader when a whole process moves (threads without their
 * own tag act with the leader's, see task_tag_of). A fork in the short
 * window before it still lands in the tagged cgroup and is caught by
 * fork.c. Moves on the cgroup v1 hierarchies of a hybrid host also fire
 * it; their cgroup ids live in another id space and are ignored.
 */
SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(contid_join, struct cgroup *dst, const char *path, struct task_struct *task, bool threadgroup)
{
	if (BPF_CORE_READ(dst, root) != BPF_CORE_READ(task, cgroups, dfl_cgrp, root))
		return 0;

	__u64 cgid = 0;
	struct cgroup_tag *ct = nearest_tag(dst, &cgid);
	if (!ct || (ct->flags & FLAG_JOIN_IGNORE))
		return 0;

	apply_join(task, ct, cgid);
	return 0;
}

// SPDX-License-Identifier: GPL-2.0
/* Tamper-proofing (enforcing mode), continued: contidd's place in the
 * cgroup tree. The file_open guard keeps a tagged task from writing the
 * limits of contidd's cgroup, but moving contidd into a cgroup of the
 * attacker's own (echo PID > /sys/fs/cgroup/evil/cgroup.procs) puts it
 * under limits the attacker sets there: memory.max, pids.max,
 * cgroup.freeze, cgroup.kill. Nor may a tagged task put processes into
 * contidd's cgroup, where they would use up its pids.max and memory.max. */

#define CGROUP2_SUPER_MAGIC 0x63677270
#define CGROUP_SUPER_MAGIC 0x27e0eb
#define MAY_WRITE 0x2
#define MAY_ACCESS 0x10
#define MAY_OPEN 0x20

/* kernfs_node->parent before 6.15, where it became __parent. */
struct kernfs_node___parent {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

static __always_inline struct kernfs_node *kernfs_parent_of(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(struct kernfs_node___parent, parent))
		return BPF_CORE_READ((struct kernfs_node___parent *)kn, parent);
	return BPF_CORE_READ(kn, __parent);
}

/* The cgroup whose directory holds a cgroupfs file (a cgroup's directory
 * node holds the cgroup), and the file's own node. */
static __always_inline struct cgroup *cgroup_of_file(struct inode *inode, struct kernfs_node **file)
{
	struct kernfs_node *kn = BPF_CORE_READ(inode, i_private);
	if (!kn)
		return NULL;
	struct kernfs_node *dir = kernfs_parent_of(kn);
	if (!dir)
		return NULL;
	*file = kn;
	return BPF_CORE_READ(dir, priv);
}

/*
 * Every cgroup2 migration, by cgroup.procs, by cgroup.threads, or by
 * clone3(CLONE_INTO_CGROUP), asks inode_permission(MAY_WRITE) of the
 * cgroup.procs file of the common ancestor of the source and the
 * destination (cgroup_procs_write_permission); clone3 asks it of the
 * destination's as well. A move of contidd out of its cgroup, and a move
 * of any process into contidd's cgroup or below it, has a common ancestor
 * among contidd's cgroup and its ancestors: the loader lists those below
 * the root in protected_inodes (the file_open guard's directories), and
 * the root is recognised by having no parent. So a tagged task is refused
 * exactly the moves whose common ancestor lies on that chain. Moves inside
 * a container's own subtree have their common ancestor there and pass;
 * moves across the top of the tree (the root their common ancestor) are
 * refused whichever process they carry, for the hook does not see it.
 *
 * Opens (MAY_OPEN) and access(2) (MAY_ACCESS) ask for MAY_WRITE too; they
 * move nothing, and the file_open guard already refuses the write-opens of
 * these files below the root. cgroup v1 hierarchies check no ancestor:
 * contid_guard_cgroup_v1_attach below covers them.
 */
SEC("lsm/inode_permission")
int BPF_PROG(contid_guard_cgroup_move, struct inode *inode, int mask)
{
	/* Path walks ask MAY_EXEC on every component: they leave here. */
	if (!(mask & MAY_WRITE) || (mask & (MAY_OPEN | MAY_ACCESS)))
		return 0;
	if (BPF_CORE_READ(inode, i_sb, s_magic) != CGROUP2_SUPER_MAGIC)
		return 0;
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	struct kernfs_node *kn;
	struct cgroup *cg = cgroup_of_file(inode, &kn);
	/* The cgroup knows its cgroup.procs node, which tells that file
	 * from the others. */
	if (!cg || BPF_CORE_READ(cg, procs_file.kn) != kn)
		return 0;
	if (!cgroup_parent_of(cg))
		return deny(tt, DENIED_CGROUP_MOVE);
	struct protected_inode k = {
		.ino = BPF_CORE_READ(cg, kn, id),
		.dev = BPF_CORE_READ(inode, i_sb, s_dev),
	};
	__u8 *v = bpf_map_lookup_elem(&protected_inodes, &k);
	if (v && *v == PROTECTED_DIRECTORY)
		return deny(tt, DENIED_CGROUP_MOVE);
	return 0;
}

/*
 * A controller that no cgroup2 cgroup has enabled (the v1 freezer, on a
 * kernel that still builds it) can be mounted as a cgroup v1 hierarchy,
 * where every process starts in its root. Moving contidd into a cgroup of
 * that hierarchy and freezing or limiting it there stops contidd as surely
 * as cgroup2 would; a v1 move asks no common ancestor, so the hook above
 * never sees it. A tagged task may therefore not open for writing the
 * task lists (tasks, cgroup.procs) of a v1 hierarchy that carries a
 * controller, whatever the process it means to move. A named hierarchy
 * without controllers (name=systemd, which legacy systemd inside a
 * container mounts) limits nothing and stays open to it.
 */
SEC("lsm/file_open")
int BPF_PROG(contid_guard_cgroup_v1_attach, struct file *file)
{
	if (!(BPF_CORE_READ(file, f_mode) & FMODE_WRITE))
		return 0;
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	if (BPF_CORE_READ(inode, i_sb, s_magic) != CGROUP_SUPER_MAGIC)
		return 0;
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	struct kernfs_node *kn;
	struct cgroup *cg = cgroup_of_file(inode, &kn);
	if (!cg)
		return 0;
	char name[16] = {};
	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(kn, name));
	int tasks = name[0] == 't' && name[1] == 'a' && name[2] == 's' && name[3] == 'k' &&
		    name[4] == 's' && name[5] == 0;
	int procs = name[0] == 'c' && name[1] == 'g' && name[2] == 'r' && name[3] == 'o' &&
		    name[4] == 'u' && name[5] == 'p' && name[6] == '.' && name[7] == 'p' &&
		    name[8] == 'r' && name[9] == 'o' && name[10] == 'c' && name[11] == 's' &&
		    name[12] == 0;
	if ((!tasks && !procs) || BPF_CORE_READ(cg, root, subsys_mask) == 0)
		return 0;
	return deny(tt, DENIED_CGROUP_MOVE);
}

// SPDX-License-Identifier: GPL-2.0
/* Tamper-proofing (enforcing mode), continued: contid's state on the
 * filesystem, which the open, unlink, rename and rmdir guards (guard.c)
 * leave two ways to destroy or hide. A path-based truncate(2) opens
 * nothing, and a mount over the pins or the state directory leaves every
 * file in place but out of reach. */

/* truncate(2) by path: the kernel asks no file_open, so the registry
 * (its names and the sealed ID mark) would be emptied under the open
 * guard's nose. ftruncate(2) needs a descriptor opened for write, which
 * that guard already refuses. */
SEC("lsm/path_truncate")
int BPF_PROG(contid_guard_path_truncate, const struct path *path)
{
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	struct dentry *d = BPF_CORE_READ(path, dentry);
	if (is_protected_inode(BPF_CORE_READ(d, d_inode)) ||
	    is_protected_inode(BPF_CORE_READ(d, d_parent, d_inode)))
		return deny(tt, DENIED_TRUNCATE);
	return 0;
}

#define MS_REMOUNT 32
#define MS_BIND 4096
#define MS_UNBINDABLE (1 << 17)
#define MS_PRIVATE (1 << 18)
#define MS_SLAVE (1 << 19)
#define MS_SHARED (1 << 20)

/*
 * A mount whose target d would hide contid's state: a tmpfs on
 * /sys/fs/bpf makes the next contidd create empty maps beside the pinned
 * ones (and its tags, IDs and links are gone for it); one on /var/lib
 * makes it start from an empty registry and reuse IDs. Mounting on any
 * ancestor hides the directory as well as mounting on it does, and the
 * guard sees only the target, not what lies below it: so the loader lists
 * the ancestors of the pin and state directories (PROTECTED_ANCESTOR) next
 * to the directories themselves, / excepted (see ancestorKeys). A mount over one file of a protected
 * directory (a bind over the registry) is caught by its parent.
 */
static __always_inline int hides_state(struct dentry *d)
{
	if (protected_inode_value(BPF_CORE_READ(d, d_inode)))
		return 1;
	return protected_inode_value(BPF_CORE_READ(d, d_parent, d_inode)) == PROTECTED_DIRECTORY;
}

/* mount(2): a new mount, a bind or a move onto such a target. Two kinds
 * pass, as they hide nothing: a change of propagation (container runtimes
 * make it on / in their own mount namespace), and a remount. Runtimes
 * remount the sysfs they mount for a container read-only, and in the
 * host's network namespace that sysfs is the host's superblock, whose
 * root is /sys, an ancestor here. Mounts in a private namespace, which
 * contidd would not see, are refused as well: whether a mount propagates
 * back is not known here. The source of a move (mount --move /sys/fs/bpf
 * elsewhere) is a path string this hook does not resolve; move_mount(2)
 * below sees it. */
SEC("lsm/sb_mount")
int BPF_PROG(contid_guard_sb_mount, const char *dev_name, const struct path *path, const char *type,
	     unsigned long flags, void *data)
{
	if (flags & MS_REMOUNT)
		return 0;
	if (!(flags & MS_BIND) && (flags & (MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE)))
		return 0;
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	if (hides_state(BPF_CORE_READ(path, dentry)))
		return deny(tt, DENIED_MOUNT);
	return 0;
}

/* The new mount API (fsopen, fsmount, open_tree, then move_mount(2)),
 * which mount(8) of util-linux 2.39 and later uses: the attach onto such
 * a target, or moving the bpffs mount that holds the pins (or a mount
 * above the state directory) away from its place. */
SEC("lsm/move_mount")
int BPF_PROG(contid_guard_move_mount, const struct path *from_path, const struct path *to_path)
{
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	if (hides_state(BPF_CORE_READ(to_path, dentry)) ||
	    protected_inode_value(BPF_CORE_READ(from_path, dentry, d_inode)))
		return deny(tt, DENIED_MOUNT);
	return 0;
}

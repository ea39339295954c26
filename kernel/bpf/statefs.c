// SPDX-License-Identifier: GPL-2.0
/* Tamper-proofing (enforcing mode), continued: contid's state on the
 * filesystem, which the open, unlink, rename and rmdir guards (guard.c)
 * leave several ways to destroy or hide. A path-based truncate(2) opens
 * nothing; a mount over the pins or the state directory (or the cgroup2
 * tree, or the host's /), a move of their mount elsewhere, leaves every
 * file in place but out of reach; a read-only remount leaves them in
 * reach but unwritable, and a freeze (FIFREEZE) leaves them readable
 * but every write waiting. */

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
#define MS_MOVE 8192
#define MS_UNBINDABLE (1 << 17)
#define MS_PRIVATE (1 << 18)
#define MS_SLAVE (1 << 19)
#define MS_SHARED (1 << 20)
#define MS_PROPAGATION (MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE)
#define CGROUP2_SUPER_MAGIC 0x63677270
#define MNT_SHARED 0x1000

/*
 * A mount whose target d would hide contid's state: a tmpfs on
 * /sys/fs/bpf makes the next contidd create empty maps beside the pinned
 * ones (and its tags, IDs and links are gone for it); one on /var/lib
 * makes it start from an empty registry and reuse IDs. Mounting on any
 * ancestor hides the directory as well as mounting on it does, and the
 * guard sees only the target, not what lies below it: so the loader lists
 * the ancestors of the pin and state directories (PROTECTED_ANCESTOR) next
 * to the directories themselves, / apart (PROTECTED_ROOT, below). A
 * mount over one file of a protected directory (a bind over the
 * registry) is caught by its parent.
 */
static __always_inline int hides_state(struct dentry *d)
{
	__u8 v = protected_inode_value(BPF_CORE_READ(d, d_inode));
	if (v && v != PROTECTED_ROOT)
		return 1;
	return protected_inode_value(BPF_CORE_READ(d, d_parent, d_inode)) == PROTECTED_DIRECTORY;
}

/* The superblock of the pins' bpffs or of the state directory's
 * filesystem, which the loader lists as inode 0 of its device. */
static __always_inline int holds_state(struct super_block *sb)
{
	struct protected_inode k = { .dev = BPF_CORE_READ(sb, s_dev) };
	return bpf_map_lookup_elem(&protected_inodes, &k) != 0;
}

/* Whether the current task works in the host's mount namespace, the one
 * PID 1 starts contidd from (contidd's own, under ProtectSystem=, is a
 * slave of it and sees what happens there). Unknown counts as the host's. */
static __always_inline int in_host_mnt_ns(void)
{
	__u32 zero = 0;
	struct config_value *c = bpf_map_lookup_elem(&contid_config, &zero);
	if (!c || !c->host_mnt_ns)
		return 1;
	struct task_struct *t = bpf_get_current_task_btf();
	return BPF_CORE_READ(t, nsproxy, mnt_ns, ns.inum) == c->host_mnt_ns;
}

/* Whether a mount on path can show in the host's namespace: made there,
 * or on a shared mount, whose peers may be the host's (a raw
 * unshare(CLONE_NEWNS) keeps them; runtimes make a container's mounts
 * slave or private). */
static __always_inline int reaches_host(const struct path *path)
{
	if (BPF_CORE_READ(path, mnt, mnt_flags) & MNT_SHARED)
		return 1;
	return in_host_mnt_ns();
}

/* The host's / as a target. A mount on it hides nothing from a running
 * process, whose root stays the mount below, but systemd sets up a
 * service's namespace (ProtectSystem=, as contidd has) by a recursive
 * bind of / which takes the mount on top along, then moves that onto /
 * and chroots: a restarted contidd would find the attacker's filesystem
 * as its root. Container managers move a container's root onto / of
 * their own namespace, which is the same directory but neither the
 * host's namespace nor shared with it, so only a mount that reaches the
 * host is refused. */
static __always_inline int covers_host_root(struct dentry *d, const struct path *path)
{
	return protected_inode_value(BPF_CORE_READ(d, d_inode)) == PROTECTED_ROOT && reaches_host(path);
}

/* mount(2), each of its kinds in the kernel's order of precedence:
 *
 * A remount without MS_BIND changes the superblock, so every mount of it
 * in every namespace: read-only, the state directory's filesystem stops
 * the registry's writes, and the bpffs its pins. It is refused from any
 * namespace for those two superblocks. Runtimes remount the sysfs they
 * mount for a container read-only; in the host's network namespace that
 * sysfs is the host's superblock, whose root /sys is an ancestor here, so
 * no ancestor's superblock is listed, and a bind remount (MS_BIND, the
 * one mount's flags) is refused only in the host's namespace, where it
 * is contidd's view of the target.
 *
 * A change of propagation hides nothing by itself, but the kernel moves
 * no mount whose parent is shared, and systemd shares every mount: making
 * /sys private is what lets mount --move take the bpffs away. Refused on
 * protected targets and ancestors in the host's namespace; container
 * runtimes make / of their own namespace rslave or private, which passes.
 *
 * A move (MS_MOVE): its source is a path string this hook does not
 * resolve, so every move in the host's namespace is refused; a move in a
 * container's own namespace moves that namespace's copies, which no
 * contidd sees (runtimes move the container's root there). The target of
 * a move, a bind or a new mount is judged as hides_state says, in any
 * namespace (whether it propagates back is not known here), and a
 * cgroup2 directory is refused as a target where the mount reaches the
 * host (reaches_host): a mount on /sys/fs/cgroup hides the whole tree
 * from systemd and contidd, one on a cgroup's directory its control
 * files. Runtimes mount a container's own cgroup2 in its namespace. */
SEC("lsm/sb_mount")
int BPF_PROG(contid_guard_sb_mount, const char *dev_name, const struct path *path, const char *type,
	     unsigned long flags, void *data)
{
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	struct dentry *d = BPF_CORE_READ(path, dentry);
	if (flags & MS_REMOUNT) {
		if (!(flags & MS_BIND)) {
			if (holds_state(BPF_CORE_READ(d, d_sb)))
				return deny(tt, DENIED_MOUNT);
			return 0;
		}
		if (hides_state(d) && in_host_mnt_ns())
			return deny(tt, DENIED_MOUNT);
		return 0;
	}
	if (!(flags & MS_BIND) && (flags & MS_PROPAGATION)) {
		if (hides_state(d) && in_host_mnt_ns())
			return deny(tt, DENIED_MOUNT);
		return 0;
	}
	if (hides_state(d))
		return deny(tt, DENIED_MOUNT);
	if ((flags & MS_MOVE) && !(flags & MS_BIND) && in_host_mnt_ns())
		return deny(tt, DENIED_MOUNT);
	if (BPF_CORE_READ(d, d_sb, s_magic) == CGROUP2_SUPER_MAGIC && reaches_host(path))
		return deny(tt, DENIED_MOUNT);
	if (covers_host_root(d, path))
		return deny(tt, DENIED_MOUNT);
	return 0;
}

/* The new mount API (fsopen, fsmount, open_tree, then move_mount(2)),
 * which mount(8) of util-linux 2.39 and later uses: the attach onto such
 * a target (or, where it reaches the host, onto a cgroup2 directory), or
 * moving the bpffs mount that holds the pins (or a mount above the state
 * directory) away from its place. */
SEC("lsm/move_mount")
int BPF_PROG(contid_guard_move_mount, const struct path *from_path, const struct path *to_path)
{
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	struct dentry *to = BPF_CORE_READ(to_path, dentry);
	if (hides_state(to) || hides_state(BPF_CORE_READ(from_path, dentry)))
		return deny(tt, DENIED_MOUNT);
	if (BPF_CORE_READ(to, d_sb, s_magic) == CGROUP2_SUPER_MAGIC && reaches_host(to_path))
		return deny(tt, DENIED_MOUNT);
	if (covers_host_root(to, to_path))
		return deny(tt, DENIED_MOUNT);
	return 0;
}

/* A remount by the new mount API: fspick(2) then
 * fsconfig(FSCONFIG_CMD_RECONFIGURE) reconfigures the superblock itself,
 * read-only or with other options, without any sb_mount call. The kernel
 * asks sb_remount of every reconfiguration, mount(2)'s remounts as well,
 * so the superblocks sb_mount keeps from a remount are refused here too:
 * the bpffs that holds the pins and the state directory's filesystem. */
SEC("lsm/sb_remount")
int BPF_PROG(contid_guard_sb_remount, struct super_block *sb, void *mnt_opts)
{
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	if (holds_state(sb))
		return deny(tt, DENIED_MOUNT);
	return 0;
}

/* _IOWR('X', 119, int) */
#define FIFREEZE 0xc0045877
/* _IOR('X', 125, __u32): EXT4_IOC_SHUTDOWN and XFS_IOC_GOINGDOWN are the
 * same number (f2fs's F2FS_IOC_SHUTDOWN and the generic FS_IOC_SHUTDOWN
 * of newer headers as well). */
#define FS_IOC_SHUTDOWN 0x8004587d

/* FIFREEZE: every write to the frozen filesystem waits until a thaw,
 * which the freezer may never send. On the state directory's filesystem
 * that stalls the registry's writes and with them every registration;
 * on the one under /var/log (the same one, often) journald, and with it
 * contidd's audit records. The shutdown ioctl is worse: every write, and
 * every later open, fails until the filesystem is unmounted and mounted
 * again, which the host must notice and do by hand. Both are refused to
 * tagged tasks on any filesystem, not only the state-holding ones:
 * journald's, the spool's and the state directory's may each be a
 * different one, a container freezes or shuts down no filesystem of the
 * host's for a purpose of its own, and snapshot and test tools that do
 * run on the host, untagged. Every ioctl in the system passes here, so
 * the command is compared before anything is read. */
SEC("lsm/file_ioctl")
int BPF_PROG(contid_guard_freeze, struct file *file, unsigned int cmd, unsigned long arg)
{
	if (cmd != FIFREEZE && cmd != FS_IOC_SHUTDOWN)
		return 0;
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	return deny(tt, cmd == FIFREEZE ? DENIED_FSFREEZE : DENIED_FS_SHUTDOWN);
}

// SPDX-License-Identifier: GPL-2.0
/* Tamper-proofing (enforcing mode), continued: the files that name a
 * program the kernel runs itself, through a usermode helper. The helper
 * is a child of a kernel thread: untagged, root with every capability, in
 * the host's namespaces. A tagged root that points one of them at a
 * program of its own runs it there the next time the kernel asks:
 * core_pattern with a "|/path" pipe at the next crash of any process,
 * modprobe at the next request_module, the uevent helper at the next
 * device event, poweroff_cmd at the next orderly poweroff, and a
 * binfmt_misc registration at every exec of a matching file, by any
 * process, and a cgroup v1 hierarchy's release_agent when the last task
 * of a notify_on_release cgroup leaves it (given as a mount option
 * instead, guard.c's fs_context_parse_param program refuses it).
 * guard.c's file_open program asks umh_control_file() only once the
 * opener is known tagged and the open is for write, so other opens pay
 * nothing for it. */

#define PROC_SUPER_MAGIC 0x9fa0
#define SYSFS_MAGIC 0x62656572
#define BINFMTFS_MAGIC 0x42494e4d
#define CGROUP_SUPER_MAGIC 0x27e0eb
#define UMH_NAME_LEN 16

/* Eight characters as the little-endian word they make in memory. */
#define WORD8(a, b, c, d, e, f, g, h)                                                              \
	((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24 | (__u64)(e) << 32 |    \
	 (__u64)(f) << 40 | (__u64)(g) << 48 | (__u64)(h) << 56)

/* A dentry's name as two words, zero-padded: every name compared here is
 * shorter than 16 characters, and a longer one differs within them. */
static __always_inline void umh_name(struct dentry *d, __u64 w[2])
{
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	w[0] = 0;
	w[1] = 0;
	bpf_probe_read_kernel_str(w, UMH_NAME_LEN, name);
}

static __always_inline int umh_is_kernel_dir(struct dentry *d)
{
	__u64 w[2];
	umh_name(d, w);
	return w[0] == WORD8('k', 'e', 'r', 'n', 'e', 'l', 0, 0) && w[1] == 0;
}

static __always_inline int umh_is_release_agent(const __u64 w[2])
{
	return w[0] == WORD8('r', 'e', 'l', 'e', 'a', 's', 'e', '_') &&
	       w[1] == WORD8('a', 'g', 'e', 'n', 't', 0, 0, 0);
}

/* /proc/sys/kernel/{modprobe,core_pattern,poweroff_cmd,hotplug} (hotplug
 * is the uevent helper's sysctl), /sys/kernel/uevent_helper,
 * binfmt_misc's register, and release_agent in the root of any cgroup v1
 * hierarchy (a named one with no controller is a plain mount away for
 * any root, and the kernel runs its agent untagged in the host's
 * namespaces). Matched by the filesystem and the names, so a
 * procfs or sysfs mounted elsewhere, or a bind mount of the directory,
 * is caught too. */
static __always_inline int umh_control_file(struct file *file)
{
	struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
	unsigned long magic = BPF_CORE_READ(d, d_sb, s_magic);
	__u64 w[2];

	if (magic == BINFMTFS_MAGIC) {
		umh_name(d, w);
		return w[0] == WORD8('r', 'e', 'g', 'i', 's', 't', 'e', 'r') && w[1] == 0;
	}
	if (magic == CGROUP_SUPER_MAGIC) {
		umh_name(d, w);
		return umh_is_release_agent(w);
	}
	if (magic == PROC_SUPER_MAGIC) {
		umh_name(d, w);
		if (!((w[0] == WORD8('m', 'o', 'd', 'p', 'r', 'o', 'b', 'e') && w[1] == 0) ||
		      (w[0] == WORD8('c', 'o', 'r', 'e', '_', 'p', 'a', 't') &&
		       w[1] == WORD8('t', 'e', 'r', 'n', 0, 0, 0, 0)) ||
		      (w[0] == WORD8('p', 'o', 'w', 'e', 'r', 'o', 'f', 'f') &&
		       w[1] == WORD8('_', 'c', 'm', 'd', 0, 0, 0, 0)) ||
		      (w[0] == WORD8('h', 'o', 't', 'p', 'l', 'u', 'g', 0) && w[1] == 0)))
			return 0;
		return umh_is_kernel_dir(BPF_CORE_READ(d, d_parent));
	}
	if (magic == SYSFS_MAGIC) {
		umh_name(d, w);
		if (!(w[0] == WORD8('u', 'e', 'v', 'e', 'n', 't', '_', 'h') &&
		      w[1] == WORD8('e', 'l', 'p', 'e', 'r', 0, 0, 0)))
			return 0;
		return umh_is_kernel_dir(BPF_CORE_READ(d, d_parent));
	}
	return 0;
}

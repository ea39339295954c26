// SPDX-License-Identifier: GPL-2.0
/* Tamper-proofing (enforcing mode): a tagged task may not reach contid's
 * BPF objects or their pins, change the kernel's audit configuration,
 * signal, trace, limit or deprioritise contidd, write its cgroup's
 * control files or its state directory, or put code of its own into the
 * kernel (BPF programs, modules) unless the configuration allows it. */
#include "contid.h"

#define NETLINK_AUDIT 9
#define AUDIT_SET 1001
#define AUDIT_SIGNAL_INFO 1010
#define AUDIT_ADD_RULE 1011
#define AUDIT_DEL_RULE 1012
#define AUDIT_TRIM 1014
#define AUDIT_MAKE_EQUIV 1015
#define AUDIT_TTY_SET 1017
#define AUDIT_SET_FEATURE 1018
/* audit_receive() processes every message of an skb; more than this many
 * from a tagged task is refused rather than left uninspected. */
#define NLMSG_INSPECT 16

static __always_inline struct task_tag *current_tag(void)
{
	struct task_tag *tt = task_tag_of(bpf_get_current_task_btf());
	if (tt && tt->id)
		return tt;
	return 0;
}

/* Returns whether the event went into the ring buffer; a full buffer is
 * counted in events_lost by event_reserve. Denials go through deny, which
 * rations them per container (denial.c); a grant's first use is one
 * event per container already. */
static __always_inline int report(struct task_tag *tt, enum event_kind kind, enum denied_op op)
{
	struct event *e = event_reserve(kind, bpf_get_current_task_btf());
	if (!e)
		return 0;
	e->id = tt->id;
	e->flags = tt->flags;
	e->op = op;
	bpf_ringbuf_submit(e, 0);
	return 1;
}

/* The refusal does not depend on whether it is recorded. */
static __always_inline int deny(struct task_tag *tt, enum denied_op op)
{
	record_denial(bpf_get_current_task_btf(), tt->id, tt->flags, op);
	return -EPERM;
}

/* An exception the configuration grants ([Enforce] AllowBPF=,
 * AllowModules=); the loader writes it before any guard attaches. */
static __always_inline int allowed(enum allow_bit what)
{
	__u32 zero = 0;
	struct config_value *c = bpf_map_lookup_elem(&contid_config, &zero);
	return c && (c->allow & what);
}

/*
 * The same exception granted to the task's own container (the AllowBPF,
 * AllowModules tag options), asked only where the guard would otherwise
 * refuse: the tag is the innermost container's, so a container nested in
 * a granted one is not granted unless tagged so itself. The first use per
 * container is reported (EV_GRANT_USED), so the journal shows which
 * container put code into the kernel by right rather than by accident.
 */
static __always_inline int granted(struct task_tag *tt, enum allow_bit what, enum denied_op op)
{
	__u32 flag = what == ALLOW_BPF ? FLAG_ALLOW_BPF : FLAG_ALLOW_MODULES;
	if (!(tt->flags & flag))
		return 0;
	struct grant_key k = { .id = tt->id, .what = what };
	__u8 one = 1;
	/* Marked before it is reported, so that racing threads report once;
	 * unmarked again if the ring buffer was full, so that the next use
	 * is journaled instead of none. */
	if (bpf_map_update_elem(&grant_noted, &k, &one, BPF_NOEXIST) == 0 &&
	    !report(tt, EV_GRANT_USED, op))
		bpf_map_delete_elem(&grant_noted, &k);
	return 1;
}

static __always_inline int is_protected(enum protect_kind kind, __u32 id)
{
	struct protected_key k = { .kind = kind, .id = id };
	return bpf_map_lookup_elem(&protected_ids, &k) != 0;
}

/*
 * The bpf() syscall: turning an ID into an fd for contid's objects, or
 * opening any pin, or detaching/replacing any link. The fd checks below
 * catch the same objects again at fd creation, whichever command got there.
 *
 * BPF_PROG_LOAD too: a program of the tagged task's own, attached beside
 * contid's, sees and changes what contid's do not guard (a kprobe's
 * bpf_override_return, bpf_probe_write_user into contidd, a cgroup or
 * LSM program of its own). Every attach command needs a program fd; the
 * only ones a tagged task can get without loading are other processes'
 * programs, by ID, which the bpf_prog guard below refuses unless
 * AllowBPF= (attaching a tracer's kprobe program where it likes is as
 * good as loading one). BPF_BTF_LOAD and BPF_MAP_CREATE pass: type
 * information and maps run no code.
 */
SEC("lsm/bpf")
int BPF_PROG(contid_guard_bpf, int cmd, union bpf_attr *attr, unsigned int size)
{
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;

	switch (cmd) {
	case BPF_MAP_GET_FD_BY_ID:
		if (is_protected(PROTECT_MAP, BPF_CORE_READ(attr, map_id)))
			return deny(tt, DENIED_BPF);
		break;
	case BPF_PROG_GET_FD_BY_ID:
		if (is_protected(PROTECT_PROG, BPF_CORE_READ(attr, prog_id)))
			return deny(tt, DENIED_BPF);
		break;
	case BPF_LINK_GET_FD_BY_ID:
		if (is_protected(PROTECT_LINK, BPF_CORE_READ(attr, link_id)))
			return deny(tt, DENIED_BPF);
		break;
	case BPF_OBJ_GET:
	case BPF_LINK_DETACH:
	case BPF_LINK_UPDATE:
		return deny(tt, DENIED_BPF);
	case BPF_PROG_LOAD:
		if (!allowed(ALLOW_BPF) && !granted(tt, ALLOW_BPF, DENIED_BPF_PROG_LOAD))
			return deny(tt, DENIED_BPF_PROG_LOAD);
		break;
	}
	return 0;
}

/* Every map fd creation (by ID, from a pin, by inheritance of an iterator)
 * passes here. */
SEC("lsm/bpf_map")
int BPF_PROG(contid_guard_bpf_map, struct bpf_map *map, fmode_t fmode)
{
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	if (is_protected(PROTECT_MAP, BPF_CORE_READ(map, id)))
		return deny(tt, DENIED_BPF_MAP);
	return 0;
}

/* Every program fd creation (by ID, from a pin, at load). contid's are
 * never handed to a tagged task, not even a granted one; without AllowBPF
 * (global or the container's own) no program is. */
SEC("lsm/bpf_prog")
int BPF_PROG(contid_guard_bpf_prog, struct bpf_prog *prog)
{
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	if (is_protected(PROTECT_PROG, BPF_CORE_READ(prog, aux, id)))
		return deny(tt, DENIED_BPF_PROG);
	if (!allowed(ALLOW_BPF) && !granted(tt, ALLOW_BPF, DENIED_BPF_PROG))
		return deny(tt, DENIED_BPF_PROG);
	return 0;
}

static __always_inline int audit_control_type(__u16 type)
{
	switch (type) {
	case AUDIT_SET:
	case AUDIT_ADD_RULE:
	case AUDIT_DEL_RULE:
	case AUDIT_TRIM:
	case AUDIT_MAKE_EQUIV:
	case AUDIT_TTY_SET:
	case AUDIT_SET_FEATURE:
	case AUDIT_SIGNAL_INFO:
		return 1;
	}
	return 0;
}

/* Audit control through netlink: a tagged root could otherwise switch
 * auditing off or delete the rules that watch it. User messages pass. */
SEC("lsm/netlink_send")
int BPF_PROG(contid_guard_netlink_send, struct sock *sk, struct sk_buff *skb)
{
	if (BPF_CORE_READ(sk, sk_protocol) != NETLINK_AUDIT)
		return 0;
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;

	unsigned char *data = BPF_CORE_READ(skb, data);
	__u32 len = BPF_CORE_READ(skb, len);
	__u32 off = 0;
	for (int i = 0; i < NLMSG_INSPECT; i++) {
		if (off + sizeof(struct nlmsghdr) > len)
			return 0;
		struct nlmsghdr h = {};
		if (bpf_probe_read_kernel(&h, sizeof(h), data + off) < 0)
			return deny(tt, DENIED_NETLINK_SEND);
		if (audit_control_type(h.nlmsg_type))
			return deny(tt, DENIED_NETLINK_SEND);
		if (h.nlmsg_len < sizeof(struct nlmsghdr))
			return 0;
		off += (h.nlmsg_len + 3) & ~3U;
	}
	if (off < len)
		return deny(tt, DENIED_NETLINK_SEND);
	return 0;
}

/* --- contid's pins: removing or renaming a pin drops the last reference
 * to a link once contidd is not running, which detaches the program. --- */

#define BPF_FS_MAGIC 0xcafe4a11

/* Values of protected_inodes (kernel/loader.go): a directory whose entries
 * are guarded, a file, an ancestor of a protected directory, and the
 * host's /; only the mount guards (statefs.c) look at the last two. */
#define PROTECTED_DIRECTORY 1
#define PROTECTED_FILE 2
#define PROTECTED_ANCESTOR 3
#define PROTECTED_ROOT 4

/* protected_inodes' value for inode, 0 when it is not listed. */
static __always_inline __u8 protected_inode_value(struct inode *inode)
{
	if (!inode)
		return 0;
	struct protected_inode k = {
		.ino = BPF_CORE_READ(inode, i_ino),
		.dev = BPF_CORE_READ(inode, i_sb, s_dev),
	};
	__u8 *v = bpf_map_lookup_elem(&protected_inodes, &k);
	return v ? *v : 0;
}

static __always_inline int is_protected_inode(struct inode *inode)
{
	__u8 v = protected_inode_value(inode);
	return v == PROTECTED_DIRECTORY || v == PROTECTED_FILE;
}

/* rm of a pin, or of a file in contid's state directory (the registry). */
SEC("lsm/inode_unlink")
int BPF_PROG(contid_guard_inode_unlink, struct inode *dir, struct dentry *dentry)
{
	struct task_tag *tt = current_tag();
	if (tt && is_protected_inode(dir))
		return deny(tt, DENIED_UNLINK);
	return 0;
}

/* mv of a pin out of the directory (to unlink it elsewhere), of another
 * file over a pin, or of the pin directory itself. */
SEC("lsm/inode_rename")
int BPF_PROG(contid_guard_inode_rename, struct inode *old_dir, struct dentry *old_dentry,
	     struct inode *new_dir, struct dentry *new_dentry)
{
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	if (is_protected_inode(old_dir) || is_protected_inode(new_dir) ||
	    is_protected_inode(BPF_CORE_READ(old_dentry, d_inode)))
		return deny(tt, DENIED_RENAME);
	return 0;
}

/* rmdir of the pin directory (only possible once it is empty, but a
 * subdirectory contid adds later must not be removable either). */
SEC("lsm/inode_rmdir")
int BPF_PROG(contid_guard_inode_rmdir, struct inode *dir, struct dentry *dentry)
{
	struct task_tag *tt = current_tag();
	if (tt && (is_protected_inode(dir) || is_protected_inode(BPF_CORE_READ(dentry, d_inode))))
		return deny(tt, DENIED_RMDIR);
	return 0;
}

/* umount of the bpffs that holds the pins drops them all at once. */
SEC("lsm/sb_umount")
int BPF_PROG(contid_guard_sb_umount, struct vfsmount *mnt, int flags)
{
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	struct super_block *sb = BPF_CORE_READ(mnt, mnt_sb);
	if (BPF_CORE_READ(sb, s_magic) != BPF_FS_MAGIC)
		return 0;
	/* The loader lists the pins' superblock as inode 0, which no real
	 * inode has. */
	struct protected_inode k = { .dev = BPF_CORE_READ(sb, s_dev) };
	if (bpf_map_lookup_elem(&protected_inodes, &k))
		return deny(tt, DENIED_UMOUNT);
	return 0;
}

/* --- contidd itself: killed, it stops writing the journal; traced or
 * robbed of its fds (pidfd_getfd), it hands over the maps. --- */

#define USER_HZ_NS 10000000ULL /* /proc/PID/stat counts start time in 1/100 s */
#define PTRACE_MODE_ATTACH 0x02
#define PTRACE_MODE_NOAUDIT 0x04

static __always_inline int is_protected_task(struct task_struct *t)
{
	__u32 tgid = BPF_CORE_READ(t, tgid);
	__u64 *start = bpf_map_lookup_elem(&protected_tasks, &tgid);
	if (!start)
		return 0;
	return BPF_CORE_READ(t, group_leader, start_boottime) / USER_HZ_NS == *start;
}

/* Any signal but 0 (which only asks whether the process exists). */
SEC("lsm/task_kill")
int BPF_PROG(contid_guard_task_kill, struct task_struct *p, struct kernel_siginfo *info, int sig,
	     const struct cred *cred)
{
	if (sig == 0)
		return 0;
	struct task_tag *tt = current_tag();
	if (tt && is_protected_task(p))
		return deny(tt, DENIED_KILL);
	return 0;
}

/* ptrace attach, pidfd_getfd, process_vm_readv/writev and /proc/PID/mem
 * all ask for PTRACE_MODE_ATTACH. /proc/PID/fd/N asks for
 * PTRACE_MODE_READ: through it a process could open contidd's audit
 * spool (a memfd) and plant records for the next contidd to replay. The
 * reads of /proc/PID/stat that `ps` makes are PTRACE_MODE_NOAUDIT:
 * refused quietly, they only blank a few fields.
 *
 * PID 1 holds the same spool and audit socket in its file descriptor
 * store: attaching to it (pidfd_getfd takes any of its descriptors) is
 * refused as well. Reads stay open, since tools read /proc/1/root; the
 * spool's reopening through /proc/1/fd/N is the file_open guard's. */
SEC("lsm/ptrace_access_check")
int BPF_PROG(contid_guard_ptrace, struct task_struct *child, unsigned int mode)
{
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	if (!is_protected_task(child)) {
		if (!(mode & PTRACE_MODE_ATTACH))
			return 0;
		if (BPF_CORE_READ(child, tgid) == 1)
			return deny(tt, DENIED_PTRACE);
		/* A container's AllowBPF or AllowModules is its own: a tracer
		 * that lacks a bit its target holds would make the target load
		 * for it and take the program or module fd out with
		 * pidfd_getfd. */
		struct task_tag *target = task_tag_of(child);
		__u32 grants = FLAG_ALLOW_BPF | FLAG_ALLOW_MODULES;
		if (target && (target->flags & grants & ~tt->flags))
			return deny(tt, DENIED_PTRACE);
		return 0;
	}
	if (mode & PTRACE_MODE_NOAUDIT)
		return -EPERM;
	return deny(tt, DENIED_PTRACE);
}

/* prlimit(2) on contidd: RLIMIT_NOFILE of 8 leaves it unable to open a
 * file, socket or pidfd; RLIMIT_AS or RLIMIT_CPU starve or kill it. */
SEC("lsm/task_setrlimit")
int BPF_PROG(contid_guard_task_setrlimit, struct task_struct *p, unsigned int resource,
	     struct rlimit *new_rlim)
{
	struct task_tag *tt = current_tag();
	if (tt && is_protected_task(p))
		return deny(tt, DENIED_SETRLIMIT);
	return 0;
}

/* renice, ionice and chrt on contidd: at the lowest priority, or behind a
 * real-time spinner, it falls behind the audit stream it must follow. */
SEC("lsm/task_setnice")
int BPF_PROG(contid_guard_task_setnice, struct task_struct *p, int nice)
{
	struct task_tag *tt = current_tag();
	if (tt && is_protected_task(p))
		return deny(tt, DENIED_SCHED);
	return 0;
}

SEC("lsm/task_setioprio")
int BPF_PROG(contid_guard_task_setioprio, struct task_struct *p, int ioprio)
{
	struct task_tag *tt = current_tag();
	if (tt && is_protected_task(p))
		return deny(tt, DENIED_SCHED);
	return 0;
}

SEC("lsm/task_setscheduler")
int BPF_PROG(contid_guard_task_setscheduler, struct task_struct *p)
{
	struct task_tag *tt = current_tag();
	if (tt && is_protected_task(p))
		return deny(tt, DENIED_SCHED);
	return 0;
}

#define FMODE_WRITE 0x2
#define O_TRUNC 01000

/* Opening for write a file in a protected directory: the control files
 * of contidd's cgroup and of its ancestors below the root (cgroup.freeze,
 * cgroup.kill, memory.max, pids.max: each stops, kills or starves
 * contidd), and the files of its state directory (truncating the registry
 * would lose names and the sealed ID mark). The loader lists those
 * directories in protected_inodes. Or a protected file itself: contidd's
 * audit spool, a memfd that /proc/1/fd/N reopens from systemd's store.
 * O_TRUNC counts as a write even with O_RDONLY, for Linux truncates then
 * too: since 6.2 the kernel asks file_truncate, not path_truncate, about
 * that truncation (statefs.c), and the flag is still set here. */
SEC("lsm/file_open")
int BPF_PROG(contid_guard_file_open, struct file *file)
{
	/* Most opens read: they skip the task storage lookup. */
	if (!(BPF_CORE_READ(file, f_mode) & FMODE_WRITE) && !(BPF_CORE_READ(file, f_flags) & O_TRUNC))
		return 0;
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	if (is_protected_inode(BPF_CORE_READ(file, f_path.dentry, d_parent, d_inode)) ||
	    is_protected_inode(BPF_CORE_READ(file, f_inode)))
		return deny(tt, DENIED_OPEN_WRITE);
	if (umh_control_file(file))
		return deny(tt, DENIED_USERMODE_HELPER);
	return 0;
}

/* --- kernel modules: module code runs with the kernel's privilege,
 * beyond every guard here (it can unhook contid's programs, edit its maps
 * or switch audit off from inside). Modules the kernel asks for itself
 * (request_module) are loaded by a usermode helper, which is not tagged. --- */

/* finit_module(2), which modprobe and insmod use: the kernel reads the
 * module's file through kernel_read_file. The id is what tells a module
 * from firmware, a kexec image or a policy read the same way. */
SEC("lsm/kernel_read_file")
int BPF_PROG(contid_guard_kernel_read_file, struct file *file, enum kernel_read_file_id id, bool contents)
{
	if (id != bpf_core_enum_value(enum kernel_read_file_id, READING_MODULE))
		return 0;
	struct task_tag *tt = current_tag();
	if (tt && !allowed(ALLOW_MODULES) && !granted(tt, ALLOW_MODULES, DENIED_MODULE_LOAD))
		return deny(tt, DENIED_MODULE_LOAD);
	return 0;
}

/* init_module(2): the image comes from user memory, never through a file,
 * so only this hook sees it (before the kernel copies it in). */
SEC("lsm/kernel_load_data")
int BPF_PROG(contid_guard_kernel_load_data, enum kernel_load_data_id id, bool contents)
{
	if (id != bpf_core_enum_value(enum kernel_load_data_id, LOADING_MODULE))
		return 0;
	struct task_tag *tt = current_tag();
	if (tt && !allowed(ALLOW_MODULES) && !granted(tt, ALLOW_MODULES, DENIED_MODULE_LOAD))
		return deny(tt, DENIED_MODULE_LOAD);
	return 0;
}

/* request_module(): a tagged task that uses what an unloaded module
 * provides (a socket family, a filesystem type, a link type) has the
 * kernel run modprobe for it, untagged. With a module of its own dropped
 * under /lib/modules (or a modules.dep that names one), that loads its
 * code past the two guards above. The task asking is the tagged one: the
 * request fails (the socket, mount or link with it), and the modules the
 * host loads itself, or loaded before, stay available. */
SEC("lsm/kernel_module_request")
int BPF_PROG(contid_guard_kernel_module_request, char *kmod_name)
{
	struct task_tag *tt = current_tag();
	if (tt && !allowed(ALLOW_MODULES) && !granted(tt, ALLOW_MODULES, DENIED_MODULE_REQUEST))
		return deny(tt, DENIED_MODULE_REQUEST);
	return 0;
}

/* The release agent given as a mount option: "release_agent=" on a cgroup
 * v1 mount(2), on its remount, or through fsconfig(2) on an fsopen'd or
 * fspick'd context. None of them opens the release_agent file, but every
 * one passes each option through here before the filesystem sees it. No
 * other filesystem takes an option of that name, so the key alone names
 * it. The hook's answer for "not the LSM's business" is -ENOPARAM, not 0:
 * the kernel hands an option to the filesystem only on -ENOPARAM, so
 * every option this program does not refuse must get it, or every mount
 * with options in the system would silently lose them. */
#define ENOPARAM 519

SEC("lsm/fs_context_parse_param")
int BPF_PROG(contid_guard_release_agent_param, struct fs_context *fc, struct fs_parameter *param)
{
	struct task_tag *tt = current_tag();
	if (!tt)
		return -ENOPARAM;
	__u64 w[2] = {};
	bpf_probe_read_kernel_str(w, UMH_NAME_LEN, BPF_CORE_READ(param, key));
	if (umh_is_release_agent(w))
		return deny(tt, DENIED_USERMODE_HELPER);
	return -ENOPARAM;
}

// SPDX-License-Identifier: GPL-2.0
/* Tamper-proofing (enforcing mode): a tagged task may not reach contid's
 * BPF objects or change the kernel's audit configuration. */
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

static __always_inline int deny(struct task_tag *tt, __u32 op)
{
	struct event *e = event_reserve(EV_DENIED, bpf_get_current_task_btf());
	if (e) {
		e->id = tt->id;
		e->flags = tt->flags;
		e->op = op;
		bpf_ringbuf_submit(e, 0);
	}
	return -EPERM;
}

static __always_inline int is_protected(__u32 kind, __u32 id)
{
	struct protected_key k = { .kind = kind, .id = id };
	return bpf_map_lookup_elem(&protected_ids, &k) != 0;
}

/*
 * The bpf() syscall: turning an ID into an fd for contid's objects, or
 * opening any pin, or detaching/replacing any link. The fd checks below
 * catch the same objects again at fd creation, whichever command got there.
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
			return deny(tt, OP_BPF);
		break;
	case BPF_PROG_GET_FD_BY_ID:
		if (is_protected(PROTECT_PROG, BPF_CORE_READ(attr, prog_id)))
			return deny(tt, OP_BPF);
		break;
	case BPF_LINK_GET_FD_BY_ID:
		if (is_protected(PROTECT_LINK, BPF_CORE_READ(attr, link_id)))
			return deny(tt, OP_BPF);
		break;
	case BPF_OBJ_GET:
	case BPF_LINK_DETACH:
	case BPF_LINK_UPDATE:
		return deny(tt, OP_BPF);
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
		return deny(tt, OP_BPF_MAP);
	return 0;
}

SEC("lsm/bpf_prog")
int BPF_PROG(contid_guard_bpf_prog, struct bpf_prog *prog)
{
	struct task_tag *tt = current_tag();
	if (!tt)
		return 0;
	if (is_protected(PROTECT_PROG, BPF_CORE_READ(prog, aux, id)))
		return deny(tt, OP_BPF_PROG);
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
			return deny(tt, OP_NETLINK_SEND);
		if (audit_control_type(h.nlmsg_type))
			return deny(tt, OP_NETLINK_SEND);
		if (h.nlmsg_len < sizeof(struct nlmsghdr))
			return 0;
		off += (h.nlmsg_len + 3) & ~3U;
	}
	if (off < len)
		return deny(tt, OP_NETLINK_SEND);
	return 0;
}

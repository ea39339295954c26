// SPDX-License-Identifier: GPL-2.0
/* Autotag: containers created under a configured parent (machine.slice)
 * get an ID in the kernel, so no user-space round trip leaves a window. */
#include "contid.h"

static __always_inline __u64 alloc_id(void)
{
	__u32 zero = 0;
	__u64 *next = bpf_map_lookup_elem(&id_counter, &zero);
	if (!next)
		return 0;

	__u8 one = 1;
	for (int i = 0; i < CONTID_ALLOC_TRIES; i++) {
		__u64 id = __sync_fetch_and_add(next, 1) + 1;
		if (id == 0 || id == (__u64)-1)
			continue;
		/* User space claims IDs in the same map: a failed NOEXIST
		 * insert means someone else holds it, try the next one. */
		if (bpf_map_update_elem(&id_claims, &id, &one, BPF_NOEXIST) == 0)
			return id;
	}
	return 0;
}

static __always_inline __u32 max_depth(void)
{
	__u32 zero = 0;
	struct config_value *c = bpf_map_lookup_elem(&contid_config, &zero);
	if (c && c->max_depth > 0 && c->max_depth < CONTID_MAX_DEPTH)
		return c->max_depth;
	return CONTID_MAX_DEPTH;
}

/*
 * A slice groups units and never holds processes of its own (systemd puts
 * them in the scopes and services below it), so a slice created under an
 * autotag parent (machine.slice/machine-pods.slice) is no container:
 * tagging it would give every unit later placed inside it the slice's ID.
 * kernfs names are NUL-terminated and at most NAME_MAX (255) bytes.
 */
static __always_inline int is_slice(struct cgroup *cg)
{
	char name[256];
	long n = bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(cg, kn, name));
	if (n < 7 || n > (long)sizeof(name))
		return 0;
	__u32 i = (__u32)(n - 7);
	if (i > sizeof(name) - 7)
		return 0;
	return name[i] == '.' && name[i + 1] == 's' && name[i + 2] == 'l' &&
	       name[i + 3] == 'i' && name[i + 4] == 'c' && name[i + 5] == 'e';
}

/*
 * podman runs conmon, its per-container monitor, in a scope of its own
 * beside the container's: machine.slice/libpod-conmon-<ID>.scope next to
 * libpod-<ID>.scope. conmon is no container. It starts the runtime, which
 * may fork the container's init in conmon's scope before it moves the init
 * into the container's; tagged, conmon's scope would give that init its ID
 * first, and the write-once rule would keep it from taking the
 * container's own. The runtime's OCI hook, a child of conmon, would also
 * run inside a container and could not name the one it is not in.
 */
static __always_inline int is_monitor_scope(struct cgroup *cg)
{
	static const char prefix[] = "libpod-conmon-";
	char name[sizeof(prefix)];
	long n = bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(cg, kn, name));
	if (n < (long)sizeof(name))
		return 0;
	for (int i = 0; i < (int)sizeof(prefix) - 1; i++)
		if (name[i] != prefix[i])
			return 0;
	return 1;
}

/*
 * Docker's systemd cgroup driver creates each container as
 * system.slice/docker-<ID>.scope, beside every host service: only the name
 * says which children of that parent are containers. The lengths come
 * from user space, so each is bounded before it indexes anything.
 */
static __always_inline int matches_scope(struct cgroup *cg, const struct autotag_scope *sc)
{
	char name[256];
	long n = bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(cg, kn, name));
	if (n <= 1 || n > (long)sizeof(name))
		return 0;
	__u32 len = (__u32)(n - 1);

	for (int k = 0; k < CONTID_SCOPES_PER_PARENT; k++) {
		const struct scope_pattern *p = &sc->patterns[k];
		__u32 plen = p->prefix_len, slen = p->suffix_len;
		if ((plen == 0 && slen == 0) || plen > CONTID_SCOPE_PREFIX ||
		    slen > CONTID_SCOPE_SUFFIX || len <= plen + slen)
			continue;
		int ok = 1;
		for (__u32 i = 0; i < CONTID_SCOPE_PREFIX; i++) {
			if (i >= plen)
				break;
			if (name[i] != p->prefix[i]) {
				ok = 0;
				break;
			}
		}
		for (__u32 i = 0; ok && i < CONTID_SCOPE_SUFFIX; i++) {
			if (i >= slen)
				break;
			if (name[(len - slen + i) & 0xff] != p->suffix[i])
				ok = 0;
		}
		if (ok)
			return 1;
	}
	return 0;
}

/*
 * cgroup_mkdir() fires this tracepoint after the cgroup and its files are
 * created but before kernfs_activate() makes the directory visible, all
 * under cgroup_mutex: no process can enter the cgroup before its
 * cgroup_tags entry exists.
 */
SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(contid_autotag, struct cgroup *cg, const char *path)
{
	struct task_struct *me = bpf_get_current_task_btf();
	if (BPF_CORE_READ(cg, root) != BPF_CORE_READ(me, cgroups, dfl_cgrp, root))
		return 0;

	struct cgroup *parent = cgroup_parent_of(cg);
	if (!parent)
		return 0;
	__u64 parent_id = cgroup_id_of(parent);
	__u32 flags = 0;
	__u32 *pflags = bpf_map_lookup_elem(&autotag_parents, &parent_id);
	if (pflags) {
		if (is_slice(cg) || is_monitor_scope(cg))
			return 0;
		flags = *pflags;
	} else {
		struct autotag_scope *sc = bpf_map_lookup_elem(&autotag_scopes, &parent_id);
		if (!sc || !matches_scope(cg, sc))
			return 0;
	}

	struct cgroup_tag nt = {};
	__u64 anc_cgid = 0;
	struct cgroup_tag *anc = nearest_tag(parent, &anc_cgid);
	if (anc && (anc->flags & FLAG_ALLOW_NESTING)) {
		/* Too deep: leave it untagged rather than tag it top-level,
		 * which would let it escape its ancestor. */
		if (anc->depth >= max_depth())
			return 0;
		nt.parent = anc->id;
		nt.depth = anc->depth + 1;
		for (int i = 0; i < CONTID_MAX_DEPTH - 1; i++)
			nt.chain[i + 1] = anc->chain[i];
	} else {
		nt.depth = 1;
	}

	__u64 id = alloc_id();
	if (!id)
		return 0;
	nt.id = id;
	nt.chain[0] = id;
	nt.flags = FLAG_AUTOTAG | flags;

	__u64 cgid = cgroup_id_of(cg);
	if (bpf_map_update_elem(&cgroup_tags, &cgid, &nt, BPF_NOEXIST) != 0) {
		/* cgroup_tags is full (or the cgroup was tagged meanwhile):
		 * the ID reached nothing and no event names it, so nothing
		 * else would ever release its claim. The counter has moved
		 * past it, so no allocator hands it out again. */
		bpf_map_delete_elem(&id_claims, &id);
		return 0;
	}

	struct event *e = event_reserve(EV_AUTOTAG, me);
	if (!e)
		return 0;
	event_set_tag(e, &nt);
	e->cgroup_id = cgid;
	e->parent_cgroup_id = parent_id;
	bpf_probe_read_kernel_str(e->name, sizeof(e->name), BPF_CORE_READ(cg, kn, name));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

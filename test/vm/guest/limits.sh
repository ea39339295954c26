# shellcheck shell=bash
# Attacks that would stop, starve or blind contidd without touching its
# BPF objects: resource limits, scheduling, its cgroup's control files and
# its state directory, and code of the attacker's own in the kernel (a BPF
# program, a module). Sourced by suite.sh, whose run_denial drives them:
# each atk_NAME runs in a tagged scope (denied with EPERM, a TamperDenied
# signal and a journal entry) and again in an untagged one (the control,
# which must succeed).
#
# The guards refuse the operation itself, whatever the value, so most
# attacks here write the value already in force: the control then shows
# the write is open to untagged root without starving the contidd that the
# rest of the suite needs. An attacker would write 8 open files, nice 19,
# 4 MB or 1 task instead.

contidd_cgroup() { echo "/sys/fs/cgroup$(sed -n 's/^0:://p' "/proc/$CONTIDD_PID/cgroup")"; }
# rewrite FILE: write a cgroup file's current value back to it.
rewrite() {
	local v
	v=$(cat "$1") || return
	echo "$v" >"$1" && echo "wrote $v to $1"
}

atk_prlimit_contidd() {
	local lim
	lim=$(prlimit --pid "$CONTIDD_PID" --nofile --raw --noheadings -o SOFT,HARD | awk '{ print $1 ":" $2 }')
	prlimit --pid "$CONTIDD_PID" --nofile="$lim" && echo "set RLIMIT_NOFILE of $CONTIDD_PID to $lim"
}
atk_renice_contidd() { renice -n "$(ps -o ni= -p "$CONTIDD_PID" | tr -d ' ')" -p "$CONTIDD_PID"; }
atk_ionice_contidd() { ionice -c 2 -n 4 -p "$CONTIDD_PID" && echo "set the I/O priority of $CONTIDD_PID"; }
# cgroup.freeze: 0 thaws, which is also what the control leaves.
atk_cgroup_freeze_contidd() { echo 0 >"$(contidd_cgroup)/cgroup.freeze" && echo "wrote cgroup.freeze of $(contidd_cgroup)"; }
atk_memory_max_contidd() { rewrite "$(contidd_cgroup)/memory.max"; }
atk_pids_max_contidd() { rewrite "$(contidd_cgroup)/pids.max"; }
# The parent slice's limits bind contidd as much as its own.
atk_slice_pids_max() { rewrite "$(dirname "$(contidd_cgroup)")/pids.max"; }

# The registry: a probe file stands in for registry.journal, so that the
# control does not destroy contid's real state.
STATE_PROBE=/var/lib/contid/vm-probe
export STATE_PROBE
atk_state_unlink() { rm -v "$STATE_PROBE"; }
pre_state_unlink() { echo probe >"$STATE_PROBE"; }
post_state_unlink() { rm -f "$STATE_PROBE"; }
atk_state_truncate() { : >"$STATE_PROBE" && echo "truncated $STATE_PROBE"; }
pre_state_truncate() { echo probe >"$STATE_PROBE"; }
post_state_truncate() { rm -f "$STATE_PROBE"; }

# truncate(2) by path opens nothing, so only its own guard sees it.
atk_state_truncate_path() { "$PROBE" truncate "$STATE_PROBE"; }
pre_state_truncate_path() { echo probe >"$STATE_PROBE"; }
post_state_truncate_path() { rm -f "$STATE_PROBE"; }
# O_RDONLY|O_TRUNC truncates too, with no FMODE_WRITE on the file. Judged
# by the probe's size, as the open itself succeeds where nothing guards.
atk_state_open_trunc() { "$PROBE" open-trunc "$STATE_PROBE"; }
effect_state_open_trunc() { [[ -f $STATE_PROBE && ! -s $STATE_PROBE ]]; }
pre_state_open_trunc() { echo probe >"$STATE_PROBE"; }
post_state_open_trunc() { rm -f "$STATE_PROBE"; }

# A tmpfs over /sys/fs/bpf hides the pins (the next contidd would create
# empty maps); one over /var/lib, an ancestor of the state directory,
# hides the registry; move_mount(2), the new mount API, onto the state
# directory itself. Each is judged by what is mounted there, and the
# control's tmpfs is unmounted at once.
tmpfs_on() { findmnt -rn -M "$1" -o FSTYPE | grep -qx tmpfs; }
untmpfs() { if tmpfs_on "$1"; then umount "$1"; fi; }
atk_bpffs_overmount() { "$PROBE" mount /sys/fs/bpf; }
effect_bpffs_overmount() { tmpfs_on /sys/fs/bpf; }
post_bpffs_overmount() { untmpfs /sys/fs/bpf; }
atk_state_overmount() { "$PROBE" mount /var/lib; }
effect_state_overmount() { tmpfs_on /var/lib; }
post_state_overmount() { untmpfs /var/lib; }
atk_state_move_mount() { "$PROBE" move-mount /var/lib/contid; }
effect_state_move_mount() { tmpfs_on /var/lib/contid; }
post_state_move_mount() { untmpfs /var/lib/contid; }

# The kernel moves no mount whose parent is shared, and systemd shares
# every mount, so taking the bpffs away by mount --move starts with a
# change of propagation of /sys, its parent: refused in the host's mount
# namespace. The attack makes /sys shared, as it already is.
atk_propagation_sys() { "$PROBE" make-shared /sys; }
op_propagation_sys() { echo mount; }
# mount(2)'s MS_MOVE names its source by a path the guard does not
# resolve, so every move in the host's mount namespace is refused. Shown
# on a tmpfs of its own under a private one, which the kernel lets move
# (nothing on a systemd host does); post unmounts both.
pre_mount_move() {
	MOVE_BASE=$SCRATCH/move
	export MOVE_BASE
	mkdir -p "$MOVE_BASE"
	mountpoint -q "$MOVE_BASE" || { mount -t tmpfs contid-vm-move "$MOVE_BASE" && mount --make-private "$MOVE_BASE"; }
	mkdir -p "$MOVE_BASE/a" "$MOVE_BASE/b"
	mountpoint -q "$MOVE_BASE/a" || mount -t tmpfs contid-vm-move-a "$MOVE_BASE/a"
}
atk_mount_move() { "$PROBE" move-and-back "$SCRATCH/move/a" "$SCRATCH/move/b"; }
post_mount_move() { umount -R "$MOVE_BASE" 2>/dev/null; return 0; }
op_mount_move() { echo mount; }
# A remount without MS_BIND changes the superblock in every namespace:
# read-only, the state directory's filesystem takes no registry write
# and the bpffs no pin. Each attack remounts with the flags in force.
# The kernel remounts only at a mount's root: the state directory's.
atk_state_remount() { "$PROBE" remount "$(findmnt -n -o TARGET -T /var/lib/contid | tail -n1)"; }
op_state_remount() { echo mount; }
atk_bpffs_remount() { "$PROBE" remount /sys/fs/bpf; }
op_bpffs_remount() { echo mount; }
# A bind remount changes the one mount, the host's view of the bpffs.
atk_bpffs_bind_remount() { "$PROBE" remount /sys/fs/bpf bind; }
op_bpffs_bind_remount() { echo mount; }
# fspick(2) + fsconfig(FSCONFIG_CMD_RECONFIGURE): the new API's remount
# of a superblock, which never calls sb_mount (lsm sb_remount). Read-only
# for a moment on the bpffs; as is on the state directory's filesystem
# (journald's open files would make ro fail with EBUSY there).
atk_fspick_bpffs_ro() { "$PROBE" fspick-reconfigure /sys/fs/bpf ro; }
op_fspick_bpffs_ro() { echo mount; }
atk_fspick_state() { "$PROBE" fspick-reconfigure "$(findmnt -n -o TARGET -T /var/lib/contid | tail -n1)"; }
op_fspick_state() { echo mount; }
# mount_setattr(2) makes one mount read-only or changes its propagation,
# the equivalents of the bind remount and the propagation change above,
# and the kernel (6.1 as later ones) asks no LSM about it: an open gap
# (docs/THREAT-MODEL.md), so no denial is asserted here. The probe keeps
# its setattr command to show it.

# FIFREEZE on the state directory's filesystem: every write to it (the
# registry's, and journald's on the same disk) waits until a thaw, and
# contidd's registrations with them. The control freezes it for 2 s.
atk_fsfreeze_state() { "$PROBE" fsfreeze /var/lib/contid; }
op_fsfreeze_state() { echo fsfreeze; }
# The shutdown ioctl (EXT4_IOC_SHUTDOWN, XFS_IOC_GOINGDOWN) on the state
# directory's filesystem, with flags no filesystem knows: the guard
# refuses it before the filesystem sees it (EPERM); the control reaches
# ext4, which checks the flags and answers EINVAL, so nothing is shut
# down either way.
atk_fs_shutdown_state() { "$PROBE" fs-shutdown-invalid /var/lib/contid; }
op_fs_shutdown_state() { echo fs_shutdown; }
# A tmpfs over a cgroup2 directory hides its control files from systemd
# and contidd (over /sys/fs/cgroup, the whole tree). A cgroup of the
# test's own stands for it.
OVERMOUNT_CG=/sys/fs/cgroup/contid-vm-overmount
pre_cgroup_overmount() { mkdir -p "$OVERMOUNT_CG"; }
atk_cgroup_overmount() { "$PROBE" mount "$OVERMOUNT_CG"; }
effect_cgroup_overmount() { tmpfs_on "$OVERMOUNT_CG"; }
post_cgroup_overmount() { untmpfs "$OVERMOUNT_CG"; rmdir "$OVERMOUNT_CG" 2>/dev/null; return 0; }

# A tmpfs on / of the host's namespace: running processes keep the root
# below it, but systemd builds a namespaced service's root by a recursive
# bind of /, which carries it along, so a restarted contidd
# (ProtectSystem=strict) would not find its state. The effect is judged
# by such a service; /.. reaches the mount on top (umount / would remount
# the real root read-only).
atk_root_overmount() { "$PROBE" mount /; }
effect_root_overmount() {
	tmpfs_on / || return 1
	! systemd-run --wait --quiet --collect -p ProtectSystem=strict test -d /var/lib/contid
}
post_root_overmount() { if tmpfs_on /; then umount /..; fi; return 0; }
op_root_overmount() { echo mount; }

# What a container does in a mount namespace of its own stays there: a
# bind remount of its copy of the bpffs, a change of propagation of its
# /sys and a move pass for a tagged scope.
atk_own_ns_mounts() {
	# shellcheck disable=SC2016 # expanded by the inner shell
	unshare -m --propagation private bash -c '
		set -e
		"$1" remount /sys/fs/bpf bind
		"$1" make-shared /sys
		mkdir -p "$2/own-a" "$2/own-b"
		mount -t tmpfs contid-vm-own "$2/own-a"
		"$1" move-and-back "$2/own-a" "$2/own-b"' own-ns "$PROBE" "$SCRATCH"
}

# Usermode helpers: files that name a program the kernel runs as
# untagged root (core_pattern's "|/path" at the next crash, modprobe at
# the next request_module, the uevent helper, poweroff_cmd). Each attack
# writes the value in force.
atk_umh_core_pattern() { rewrite /proc/sys/kernel/core_pattern; }
atk_umh_modprobe() { rewrite /proc/sys/kernel/modprobe; }
atk_umh_poweroff_cmd() { rewrite /proc/sys/kernel/poweroff_cmd; }
atk_umh_hotplug() { rewrite /proc/sys/kernel/hotplug; }
atk_umh_uevent_helper() { rewrite /sys/kernel/uevent_helper; }
# binfmt_misc: an interpreter registered for a magic runs at every exec
# of a matching file, by any process. The control's entry (an extension
# nothing has) is removed at once.
BINFMT=/proc/sys/fs/binfmt_misc
atk_umh_binfmt_register() { echo ':contid-vm:E::contidvm::/bin/true:' >"$BINFMT/register" && echo "registered contid-vm"; }
post_umh_binfmt_register() { [[ -e $BINFMT/contid-vm ]] && echo -1 >"$BINFMT/contid-vm"; return 0; }
for n in core_pattern modprobe poweroff_cmd hotplug uevent_helper binfmt_register; do
	eval "op_umh_$n() { echo usermode_helper; }"
done

# cgroup v1 release_agent: a named v1 hierarchy with no controller (so
# the v1 attach guard lets its task lists be written), its release_agent
# pointed at a script, a child cgroup with notify_on_release: when its
# last task leaves, a kworker runs the script as untagged root in the
# host's namespaces. Set by writing the file, or as a mount option by
# mount(2) or fsconfig(2), which open no file. Judged by whether the
# agent ran.
RA_MNT=/run/contid-vm-v1
RA_AGENT=/root/contid-vm-agent
RA_OUT=/root/contid-vm-agent.out
export RA_MNT RA_AGENT RA_OUT
ra_script() {
	printf '#!/bin/sh\n{ echo "agent pid $$ uid $(id -u) argv $*"; cat /proc/self/cgroup; } >%s\n' "$RA_OUT" >"$RA_AGENT" &&
		chmod 755 "$RA_AGENT"
}
# ra_release: a task enters the child cgroup and leaves; wait for the agent.
ra_release() {
	mkdir -p "$RA_MNT/x" && echo 1 >"$RA_MNT/x/notify_on_release" || return 1
	sh -c "echo \$\$ >$RA_MNT/x/cgroup.procs" || return 1
	local i
	for ((i = 0; i < 20; i++)); do
		[[ -s $RA_OUT ]] && break
		sleep 0.5
	done
	[[ -s $RA_OUT ]] || { echo "the agent did not run"; return 1; }
	echo "ok: release_agent ran: $(tr '\n' ' ' <"$RA_OUT")"
}
atk_umh_release_agent() {
	ra_script && mkdir -p "$RA_MNT" || return 1
	mount -t cgroup -o none,name=contidvm contidvm "$RA_MNT" || return 1
	echo "$RA_AGENT" >"$RA_MNT/release_agent" || return 1
	ra_release
}
atk_umh_release_agent_mount() {
	ra_script && mkdir -p "$RA_MNT" || return 1
	"$PROBE" cgroup1-agent mount "$RA_MNT" contidvmm "$RA_AGENT" || return 1
	ra_release
}
atk_umh_release_agent_fsconfig() {
	ra_script && mkdir -p "$RA_MNT" || return 1
	"$PROBE" cgroup1-agent fsconfig "$RA_MNT" contidvmf "$RA_AGENT" || return 1
	ra_release
}
for n in release_agent release_agent_mount release_agent_fsconfig; do
	eval "pre_umh_$n() { rm -f \"\$RA_OUT\"; }
effect_umh_$n() { [[ -s \$RA_OUT ]]; }
op_umh_$n() { echo usermode_helper; }
post_umh_$n() { ra_cleanup \"\$@\"; }"
done
ra_cleanup() {
	[[ -s $RA_OUT ]] && echo "agent ($1): $(tr '\n' ' ' <"$RA_OUT")" >>"$LOGS/release_agent.$1.log"
	if mountpoint -q "$RA_MNT"; then
		echo >"$RA_MNT/release_agent" 2>/dev/null
		rmdir "$RA_MNT/x" 2>/dev/null
		umount "$RA_MNT" 2>/dev/null
	fi
	rm -f "$RA_AGENT"
	return 0
}

# oom_score_adj 1000 makes contidd the OOM killer's first victim; the
# value of the older oom_adj, and either file under /proc/PID/task/TID of
# any thread, set the same. The attacks write the value in force.
atk_oom_score_adj_contidd() {
	local f=/proc/$CONTIDD_PID/oom_score_adj v
	v=$(cat "$f") && echo "$v" >"$f" && echo "wrote $v to $f"
}
atk_oom_adj_thread_contidd() {
	local t tid=$CONTIDD_PID f v
	for t in "/proc/$CONTIDD_PID/task/"*; do
		[[ ${t##*/} != "$CONTIDD_PID" ]] && tid=${t##*/} && break
	done
	f=/proc/$CONTIDD_PID/task/$tid/oom_adj
	v=$(cat "$f") && echo "$v" >"$f" && echo "wrote $v to $f"
}
# oom_adj's coarser scale may round the value in force: restore it.
pre_oom_adj_thread_contidd() { OOM_SCORE_ADJ=$(cat "/proc/$CONTIDD_PID/oom_score_adj"); }
post_oom_adj_thread_contidd() { echo "$OOM_SCORE_ADJ" >"/proc/$CONTIDD_PID/oom_score_adj"; }
# /proc/<contidd>/autogroup sets the nice of contidd's autogroup, its CPU
# weight while it sits in the root task group; the kernel asks
# task_setnice about the writer, not contidd. The value in force.
atk_autogroup_contidd() {
	local f=/proc/$CONTIDD_PID/autogroup n
	[[ -e $f ]] || { echo "no $f"; return 2; }
	n=$(awk '{ print $3 }' "$f")
	echo "$n" >"$f" && echo "wrote nice $n to $f ($(cat "$f"))"
}
op_autogroup_contidd() { echo sched; }

# The audit spool (a memfd) waits in PID 1's file descriptor store, where
# contidd keeps it across restarts: opened for writing through
# /proc/1/fd/N, it takes records planted for the next contidd to replay.
# The control opens it for appending and writes nothing.
spool_link() {
	local l
	for l in /proc/1/fd/*; do
		[[ $(readlink "$l") == *contid-audit-spool* ]] && echo "$l" && return
	done
}
pre_spool_open() { SPOOL_LINK=$(spool_link); export SPOOL_LINK; }
atk_spool_open() {
	[[ -n $SPOOL_LINK ]] || { echo "no audit spool in PID 1's store"; return 2; }
	(exec 3>>"$SPOOL_LINK") && echo "opened $SPOOL_LINK for writing"
}

# pidfd_getfd on PID 1 takes any descriptor of systemd's store, the spool
# and the audit socket included; the control copies one and closes it.
atk_steal_fd_pid1() { "$PROBE" pidfd-getfd 1; }

# Its control kills contidd; it runs with the other disruptive ones.
atk_cgroup_kill_contidd() { echo 1 >"$(contidd_cgroup)/cgroup.kill" && echo "killed $(contidd_cgroup)"; }
post_cgroup_kill_contidd() { kill -0 "$CONTIDD_PID" 2>/dev/null || restart_contidd; }

# A cgroup of the attacker's own at the top of the tree: the limits it
# sets there (memory.max, pids.max, cgroup.freeze) bind contidd once it is
# moved in, and the move's common ancestor is the root. Below contidd's
# own cgroup the common ancestor is that cgroup itself. Each is judged by
# where contidd is afterwards; the control's move is undone at once. On
# 6.1 a move across cpusets also asks task_setscheduler (cpuset's
# can_attach), which the sched guard refuses; later kernels ask it only
# when the CPUs or memory nodes change: the journal must name this guard.
MOVE_CG=/sys/fs/cgroup/contid-vm-attacker
export MOVE_CG
pre_cgroup_move_contidd() { CONTIDD_HOME=$(contidd_cgroup); export CONTIDD_HOME; }
atk_cgroup_move_contidd() { mkdir -p "$MOVE_CG" && move_contidd_to "$MOVE_CG"; }
effect_cgroup_move_contidd() { [[ $(contidd_cgroup) != "$CONTIDD_HOME" ]]; }
post_cgroup_move_contidd() { move_contidd_home "$MOVE_CG"; }
pre_cgroup_move_contidd_below() { pre_cgroup_move_contidd; }
atk_cgroup_move_contidd_below() { mkdir -p "$CONTIDD_HOME/evil" && move_contidd_to "$CONTIDD_HOME/evil"; }
effect_cgroup_move_contidd_below() { effect_cgroup_move_contidd; }
post_cgroup_move_contidd_below() { move_contidd_home "$CONTIDD_HOME/evil"; }
op_cgroup_move_contidd() { echo cgroup_move; }
op_cgroup_move_contidd_below() { echo cgroup_move; }
op_cgroup_clone_into_contidd() { echo cgroup_move; }
op_cgroup_v1_freeze_contidd() { echo cgroup_move; }
op_cgroup_threads_contidd() { echo cgroup_move; }
move_contidd_to() { echo "$CONTIDD_PID" >"$1/cgroup.procs" && echo "moved $CONTIDD_PID to $1"; }
# move_contidd_home CGROUP: back home, and CGROUP removed.
move_contidd_home() {
	[[ $(contidd_cgroup) == "$CONTIDD_HOME" ]] || echo "$CONTIDD_PID" >"$CONTIDD_HOME/cgroup.procs"
	rmdir "$1" 2>/dev/null
	return 0
}

# A process of the attacker's own in contidd's cgroup counts against its
# pids.max and memory.max. Writing that cgroup's cgroup.procs is the
# file_open guard's; clone3(CLONE_INTO_CGROUP) opens only the directory.
atk_cgroup_clone_into_contidd() { "$PROBE" clone-into-cgroup "$(contidd_cgroup)" /bin/true; }

# A container still arranges its own processes: a tagged scope moves a
# child between two cgroups it made below itself (by cgroup.procs, the
# common ancestor its own scope), and clones one into the first.
atk_cgroup_move_own() {
	local mine child rc=0 i
	mine=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)
	mkdir "$mine/a" "$mine/b" || return 1
	sleep 60 &
	child=$!
	{
		echo "$child" >"$mine/a/cgroup.procs" && echo "$child" >"$mine/b/cgroup.procs" &&
			grep -qx "0::${mine#/sys/fs/cgroup}/b" "/proc/$child/cgroup" && echo "moved $child from a to b" &&
			"$PROBE" clone-into-cgroup "$mine/a" /bin/true
	} || rc=1
	kill "$child"
	wait "$child" 2>/dev/null
	for ((i = 0; i < 20; i++)); do
		rmdir "$mine/a" "$mine/b" 2>/dev/null && break
		sleep 0.2
	done
	return $rc
}

# cgroup v1: the freezer controller is bound to no cgroup2 cgroup, so a
# tagged root may mount a v1 hierarchy of it and move contidd there, then
# FROZEN stops contidd (the control, untagged, does). A v1 move checks no
# common ancestor's cgroup.procs; the guard refuses the write-open of a
# controller-bearing v1 hierarchy's task lists instead. Judged by
# contidd's freezer cgroup; thawed and moved back at once.
V1_MNT=/run/contid-vm-v1
export V1_MNT
atk_cgroup_v1_freeze_contidd() {
	mkdir -p "$V1_MNT" || return 1
	mountpoint -q "$V1_MNT" || mount -t cgroup -o freezer contid-v1 "$V1_MNT" || return 1
	mkdir -p "$V1_MNT/contid-vm-evil" || return 1
	echo "$CONTIDD_PID" >"$V1_MNT/contid-vm-evil/cgroup.procs" || return 1
	echo FROZEN >"$V1_MNT/contid-vm-evil/freezer.state" || return 1
	sleep 1
	local t0=$SECONDS bus
	bus=$(timeout 5 busctl --auto-start=no get-property org.contid1 /org/contid1 org.contid1.Manager Version 2>&1) || bus="no answer ($?)"
	echo "moved $CONTIDD_PID to v1 freezer:/contid-vm-evil, freezer.state $(cat "$V1_MNT/contid-vm-evil/freezer.state"), contidd $(awk '/^State:/ { print $2 }' "/proc/$CONTIDD_PID/status"), bus Version in $((SECONDS - t0)) s: $bus"
}
effect_cgroup_v1_freeze_contidd() { grep -q 'freezer:/contid-vm-evil$' "/proc/$CONTIDD_PID/cgroup"; }
post_cgroup_v1_freeze_contidd() {
	echo THAWED >"$V1_MNT/contid-vm-evil/freezer.state" 2>/dev/null
	echo "$CONTIDD_PID" >"$V1_MNT/cgroup.procs" 2>/dev/null
	rmdir "$V1_MNT/contid-vm-evil" 2>/dev/null
	umount "$V1_MNT" 2>/dev/null
	return 0
}
# Only contidd's threads (not its thread group) into contidd's own
# cgroup's child: cgroup.threads asks the same common ancestor.
atk_cgroup_threads_contidd() {
	local home tid
	home=$(contidd_cgroup)
	mkdir -p "$home/contid-vm-thr" || return 1
	echo threaded >"$home/contid-vm-thr/cgroup.type" 2>/dev/null
	tid=$(ls "/proc/$CONTIDD_PID/task" | sort -n | tail -n1)
	echo "$tid" >"$home/contid-vm-thr/cgroup.threads" && echo "moved thread $tid of $CONTIDD_PID"
}
effect_cgroup_threads_contidd() { [[ -n $(cat "$(contidd_cgroup)/contid-vm-thr/cgroup.threads" 2>/dev/null) ]]; }
post_cgroup_threads_contidd() {
	local home t
	home=$(contidd_cgroup)
	for t in $(cat "$home/contid-vm-thr/cgroup.threads" 2>/dev/null); do echo "$t" >"$home/cgroup.threads"; done
	rmdir "$home/contid-vm-thr" 2>/dev/null
	return 0
}

# run_allowed NAME: what enforcing mode must leave to a tagged scope. The
# body must succeed there, with no TamperDenied signal for its container.
run_allowed() {
	local name=$1 rc log cid verdict=PASS a
	selected "$name" || return 0
	say "allowed $name"
	in_scope attack "$name"
	rc=$?
	log=$(log_of "$name" attack)
	cid=$(cid_in "$log")
	if [[ -z $cid ]]; then
		a="container unknown: the scope was not tagged"
		verdict=FAIL
	elif ((rc != 0)); then
		a="FAILED: $(grep -v -e '^cgroup:' -e '^container:' "$log" | tail -n1)"
		verdict=FAIL
	elif wait_signal "$cid"; then
		a="succeeded, but a TamperDenied signal came for $cid"
		verdict=FAIL
	else
		a="succeeded ($(grep -m1 '^moved' "$log")), no signal"
	fi
	result "$name" "$verdict" "tagged(contid=${cid:-?}): $a"
}

# run_limits NEEDS runs the attacks that leave contidd running.
run_limits() {
	NEEDS=$1 run_denial prlimit_contidd
	NEEDS=$1 run_denial renice_contidd
	NEEDS=$1 run_denial ionice_contidd
	NEEDS=$1 run_denial cgroup_freeze_contidd
	NEEDS=$1 run_denial memory_max_contidd
	NEEDS=$1 run_denial pids_max_contidd
	NEEDS=$1 run_denial slice_pids_max
	NEEDS=$1 run_denial state_unlink
	NEEDS=$1 run_denial state_truncate
	NEEDS=$1 run_denial state_truncate_path
	NEEDS=$1 run_denial state_open_trunc
	NEEDS=$1 run_denial oom_score_adj_contidd
	NEEDS=$1 run_denial oom_adj_thread_contidd
	NEEDS=$1 run_denial autogroup_contidd
	NEEDS=$1 run_denial cgroup_move_contidd
	NEEDS=$1 run_denial cgroup_move_contidd_below
	NEEDS=$1 run_denial cgroup_clone_into_contidd
	run_allowed cgroup_move_own
	NEEDS=$1 run_denial cgroup_v1_freeze_contidd
	NEEDS=$1 run_denial cgroup_threads_contidd
	run_denial bpffs_overmount
	run_denial state_overmount
	run_denial state_move_mount
	run_denial spool_open
	run_denial steal_fd_pid1
	run_denial propagation_sys
	run_denial mount_move
	run_denial state_remount
	run_denial bpffs_remount
	run_denial bpffs_bind_remount
	run_denial fspick_bpffs_ro
	run_denial fspick_state
	run_denial fsfreeze_state
	run_denial fs_shutdown_state
	run_denial cgroup_overmount
	run_denial root_overmount
	run_allowed own_ns_mounts
	run_denial umh_core_pattern
	run_denial umh_modprobe
	run_denial umh_poweroff_cmd
	run_denial umh_release_agent
	run_denial umh_release_agent_mount
	run_denial umh_release_agent_fsconfig
	# Both exist only with CONFIG_UEVENT_HELPER (Debian's kernel has none).
	local f n
	for f in /proc/sys/kernel/hotplug /sys/kernel/uevent_helper; do
		n=umh_${f##*/}
		if [[ -e $f ]]; then
			run_denial "$n"
		else
			selected "$n" && result "$n" SKIP "no $f in this kernel"
		fi
	done
	# systemd mounts binfmt_misc on first access (an automount).
	if ls "$BINFMT/" >/dev/null 2>&1 && [[ -e $BINFMT/register ]]; then
		run_denial umh_binfmt_register
	else
		selected umh_binfmt_register && result umh_binfmt_register SKIP "no binfmt_misc at $BINFMT"
	fi
}

# --- code of one's own in the kernel ------------------------------------------

atk_bpf_prog_load() { "$PROBE" bpf-prog-load; }
# Another process's program, by ID (systemd's cgroup programs, such as
# the IPAddressDeny= filter of contidd.service): attached where the
# attacker likes, it is as good as one of its own.
other_prog_id() { bpftool prog show 2>/dev/null | awk -F'[: ]+' '/^[0-9]+:/ && $0 !~ /name contid_/ { print $1; exit }'; }
pre_other_prog_open() { OTHER_PROG_ID=$(other_prog_id); export OTHER_PROG_ID; }
atk_other_prog_open() {
	[[ -n $OTHER_PROG_ID ]] || { echo "no program but contid's is loaded"; return 2; }
	bpftool prog show id "$OTHER_PROG_ID"
}

# modprobe is the attack as it would be made: kmod picks finit_module or
# init_module for the packaged (compressed) module. The probes make each
# call once, on an uncompressed copy, so both guards are shown.
MODULE=dummy
export MODULE
atk_module_load() { modprobe -v "$MODULE" && echo "loaded $MODULE"; }
atk_module_init() { "$PROBE" init-module "$MODULE_KO"; }
atk_module_finit() { "$PROBE" finit-module "$MODULE_KO"; }
# request_module: a link of a type whose module is not loaded has the
# kernel run modprobe, untagged. The kernel swallows the refusal's errno
# (ip says "Unknown device type"), so the module's absence, the signal
# and the journal entry show it.
atk_module_request() { ip link add contid-vm-dummy type dummy && echo "created contid-vm-dummy"; }
op_module_request() { echo module_request; }
effect_module_request() { module_loaded; }
pre_module_request() { module_unload; }
post_module_request() { ip link del contid-vm-dummy 2>/dev/null; module_unload; return 0; }
module_loaded() { [[ -d /sys/module/$MODULE ]]; }
module_unload() { module_loaded && { modprobe -r "$MODULE" 2>/dev/null || rmmod "$MODULE"; }; }
# module_image writes the module uncompressed to MODULE_KO.
module_image() {
	local src
	src=$(modinfo -n "$MODULE" 2>/dev/null) || return 1
	MODULE_KO=$SCRATCH/$MODULE.ko
	case $src in
	*.xz) xz -dc "$src" ;;
	*.zst) zstd -dqc "$src" ;;
	*.gz) gzip -dc "$src" ;;
	*) cat "$src" ;;
	esac >"$MODULE_KO" || return 1
	export MODULE_KO
}
# Whatever the tools say, a load happened when the module is there.
effect_module_load() { module_loaded; }
effect_module_init() { module_loaded; }
effect_module_finit() { module_loaded; }
pre_module_load() { module_unload; }
pre_module_init() { module_unload; }
pre_module_finit() { module_unload; }
post_module_load() { module_unload; }
post_module_init() { module_unload; }
post_module_finit() { module_unload; }

# The exceptions: with [Enforce] AllowBPF=yes and AllowModules=yes in a
# drop-in, the same loads from a tagged scope pass, unsignalled; with the
# drop-in gone and contidd restarted, they are refused again.
ALLOW_DROPIN=/etc/contid/contid.conf.d/50-contid-vm-allow.conf
atk_loads_allowed() { "$PROBE" bpf-prog-load && "$PROBE" finit-module "$MODULE_KO"; }
atk_loads_refused() { atk_loads_allowed; }

run_enforce_exceptions() {
	local name=enforce_exceptions verdict=PASS a c cid cur log rc
	selected "$name" || return 0
	say "attack $name"
	mkdir -p "$(dirname "$ALLOW_DROPIN")"
	printf '[Enforce]\nAllowBPF=yes\nAllowModules=yes\n' >"$ALLOW_DROPIN"
	cur=$(journal_cursor)
	restart_contidd
	module_unload
	in_scope attack loads_allowed
	rc=$?
	log=$(log_of loads_allowed attack)
	cid=$(cid_in "$log")
	if [[ -z $cid ]]; then
		a="scope not tagged: $(tail -n1 "$log")"
		verdict=FAIL
	elif ((rc != 0)) || ! module_loaded; then
		a="container $cid: refused although allowed: $(tail -n1 "$log")"
		verdict=FAIL
	elif wait_signal "$cid"; then
		a="container $cid: loaded, but a TamperDenied signal came"
		verdict=FAIL
	else
		a="container $cid: program and module loaded, no signal"
	fi
	if ! journalctl -q --no-pager --after-cursor="$cur" SYSLOG_IDENTIFIER=contidd -o cat |
		grep -qF 'AllowBPF=yes'; then
		a+=", NO journal notice of the exception"
		verdict=FAIL
	else
		a+=", journal notice"
	fi
	module_unload
	rm -f "$ALLOW_DROPIN"
	restart_contidd
	in_scope attack loads_refused
	rc=$?
	log=$(log_of loads_refused attack)
	cid=$(cid_in "$log")
	if ((rc == 0)) || module_loaded; then
		c="container ${cid:-?}: still allowed after the drop-in went"
		verdict=FAIL
	elif ! denied_in "$log"; then
		c="container ${cid:-?}: failed without EPERM: $(tail -n1 "$log")"
		verdict=FAIL
	else
		c="container $cid: EPERM again"
	fi
	module_unload
	result "$name" "$verdict" "AllowBPF=yes AllowModules=yes: $a | without them: $c"
}

# run_loads NEEDS runs the loads of kernel code, then the exceptions.
run_loads() {
	run_denial bpf_prog_load
	run_denial other_prog_open
	local no_module=""
	module_image || no_module="no module $MODULE (modinfo -n $MODULE failed)"
	NEEDS=$no_module run_denial module_load
	NEEDS=$no_module run_denial module_init
	NEEDS=$no_module run_denial module_finit
	NEEDS=$no_module run_denial module_request quiet
	if [[ -n $1$no_module ]]; then
		selected enforce_exceptions && result enforce_exceptions FAIL "no target: $1$no_module"
		return
	fi
	run_enforce_exceptions
}

# shellcheck shell=bash
# Attacks that would stop, starve or blind contidd without touching its
# BPF objects: resource limits, scheduling, its cgroup's control files and
# its state directory. Sourced by suite.sh, whose run_denial drives them:
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
	run_denial spool_open eacces
	run_denial steal_fd_pid1
}

# shellcheck shell=bash
# Sourced by suite.sh. run_blind_restart: blinding on restart. With contidd
# stopped, an untagged root hides the pins under a tmpfs on /sys/fs/bpf;
# contid's programs and maps stay loaded. The next contidd must find that
# set by ID and carry on with it (same maps, same links, no second set),
# so a tagged scope's exec after the start is still attributed to its
# container. The mount is removed and contidd restarted afterwards.

BLIND_KEY=contid-vm-blind

# blind_id PIN [PID]: the ID of a pinned map or link, read in the mount
# namespace of PID (contidd's private one) or the suite's own.
blind_id() {
	local kind=map
	[[ $(basename "$1") == link_* ]] && kind=link
	if [[ -n ${2:-} ]]; then
		nsenter -t "$2" -m bpftool "$kind" show pinned "$1" 2>/dev/null | awk -F: 'NR == 1 { print $1 }'
	else
		bpftool "$kind" show pinned "$1" 2>/dev/null | awk -F: 'NR == 1 { print $1 }'
	fi
}

# blind_progs: how many contid_fork programs are loaded, one per set.
blind_progs() { bpftool prog show name contid_fork 2>/dev/null | grep -c '^[0-9]*:'; }

# blind_stack [PID]: the mounts on /sys/fs/bpf in the mount namespace of
# PID (default: the suite's), bottom first, as ID:fstype, each with its
# propagation (shared:N, master:N) in brackets when it has any.
blind_stack() {
	awk '$5 == "/sys/fs/bpf" {
		prop = ""
		for (i = 7; $i != "-"; i++) prop = prop (prop == "" ? "" : ",") $i
		printf "%s%s:%s%s", (n++ ? " " : ""), $1, $(i + 1), (prop == "" ? "" : "[" prop "]")
	}' "/proc/${1:-self}/mountinfo"
}

# BLIND_DEPTH: how many mounts /sys/fs/bpf had before the test mounted
# anything; blind_restore unmounts down to it.
BLIND_DEPTH=

# blind_restore: unmount whatever the test left on /sys/fs/bpf, down to
# the stack it found (the tmpfs, and anything mounted above it since),
# restart contidd, and wait for the count of contid_fork programs to come
# back to the one given, if any. Says what it did in BLIND_RESTORED; fails when the stack
# or the count did not come back. Not in a subshell: restart_contidd sets
# CONTIDD_PID for the tests after this one.
BLIND_RESTORED=
blind_restore() {
	local want=${1:-} i n top ok=0
	BLIND_RESTORED=""
	auditctl -d always,exit -F arch=b64 -S execve -k "$BLIND_KEY" >/dev/null 2>&1
	systemctl stop contid-vm-blind.scope 2>/dev/null
	for ((i = 0; i < 10; i++)); do
		n=$(blind_stack | wc -w)
		[[ -n $BLIND_DEPTH ]] && ((n > BLIND_DEPTH)) || break
		top=$(blind_stack | awk '{ print $NF }')
		umount /sys/fs/bpf || break
		BLIND_RESTORED+="unmounted ${top}; "
	done
	n=$(blind_stack | wc -w)
	if [[ -n $BLIND_DEPTH ]] && ((n != BLIND_DEPTH)); then
		BLIND_RESTORED+="/sys/fs/bpf still has ${n} mounts ($(blind_stack)), had ${BLIND_DEPTH}; "
		ok=1
	fi
	restart_contidd
	[[ -z $want ]] && return $ok
	# Programs go away a moment after their last reference.
	for ((i = 0; i < 20; i++)); do
		[[ $(blind_progs) == "$want" ]] && break
		sleep 0.5
	done
	n=$(blind_progs)
	if [[ $n != "$want" ]]; then
		BLIND_RESTORED+="${n} contid_fork programs loaded after the restore, were ${want}; "
		ok=1
	fi
	return $ok
}

run_blind_restart() {
	local name=blind-restart i pid cid cid2 map0 link0 progs0 map1 link1 progs1 began note
	selected "$name" || return 0
	CONTIDD_PID=$(contidd_pid)
	[[ -z $CONTIDD_PID ]] && restart_contidd
	if [[ -z ${CONTIDD_PID:-} ]]; then
		result "$name" FAIL "contidd is not running and did not start"
		return
	fi
	say "blinding on restart: pins hidden under a tmpfs while contidd is stopped"
	BLIND_DEPTH=$(blind_stack | wc -w)
	local stack0 stack1 nsstack
	stack0=$(blind_stack)
	auditctl -a always,exit -F arch=b64 -S execve -k "$BLIND_KEY" >/dev/null
	rm -f "$SCRATCH/blind.pid" "$SCRATCH/blind.go"
	systemd-run --quiet --collect --scope --slice="$TAGGED_SLICE" --unit=contid-vm-blind.scope -- \
		bash -c 'echo $$ >"$0/blind.pid"; while [[ ! -e $0/blind.go ]]; do sleep 0.1; done
			/bin/true contid-vm-blind-after; sleep 600' "$SCRATCH" >/dev/null 2>&1 &
	for ((i = 0; i < 100; i++)); do
		[[ -s $SCRATCH/blind.pid ]] && break
		sleep 0.1
	done
	pid=$(cat "$SCRATCH/blind.pid" 2>/dev/null)
	for ((i = 0; i < 20; i++)); do
		cid=$(container_of "$pid")
		[[ -n $cid ]] && break
		sleep 0.5
	done
	map0=$(blind_id "$PINDIR/cgroup_tags")
	link0=$(blind_id "$PINDIR/link_contid_fork")
	progs0=$(blind_progs)
	if [[ -z $cid || -z $map0 || -z $link0 ]]; then
		result "$name" FAIL "setup: scope pid ${pid:-?} container '${cid}', map '${map0}', link '${link0}'"
		blind_restore
		return
	fi
	systemctl stop contidd.service
	# The driver runs untagged (system.slice): no guard stands in its way.
	if ! mount -t tmpfs none /sys/fs/bpf || [[ -e $PINDIR/cgroup_tags ]]; then
		result "$name" FAIL "could not hide the pins under a tmpfs on /sys/fs/bpf"
		blind_restore
		return
	fi
	began=$(date '+%F %T')
	systemctl reset-failed contidd.service 2>/dev/null
	systemctl start contidd.service
	wait_bus 90
	CONTIDD_PID=$(contidd_pid)
	export CONTIDD_PID
	note=$(journalctl -q --no-pager -u contidd.service --since "$began" -o cat | grep -m1 're-adopted')
	map1=$(blind_id "$PINDIR/cgroup_tags" "${CONTIDD_PID:-0}")
	link1=$(blind_id "$PINDIR/link_contid_fork" "${CONTIDD_PID:-0}")
	progs1=$(blind_progs)
	cid2=$(container_of "$pid")
	# Whether contidd's own bpffs (mounted in its namespace over the
	# tmpfs) shows up on the host's stack: that would be propagation.
	stack1=$(blind_stack)
	nsstack=$(blind_stack "${CONTIDD_PID:-self}")
	say "/sys/fs/bpf before: ${stack0}; while hidden, here: ${stack1}; in contidd's namespace: ${nsstack}"
	local cursor
	cursor=$(journal_cursor)
	touch "$SCRATCH/blind.go"
	local verdict=PASS why=""
	[[ -n $CONTIDD_PID ]] || why+="contidd did not start; "
	[[ -e $PINDIR/cgroup_tags ]] && why+="the pins were not hidden; "
	[[ $map1 == "$map0" ]] || why+="cgroup_tags is map '${map1}', was ${map0}; "
	[[ $link1 == "$link0" ]] || why+="the fork link is '${link1}', was ${link0}; "
	[[ $progs1 == "$progs0" ]] || why+="${progs1} contid_fork programs loaded, were ${progs0} (a second set); "
	[[ $cid2 == "$cid" ]] || why+="the scope's container is '${cid2}', was ${cid}; "
	[[ -n $note ]] || why+="contidd did not log the re-adoption; "
	if ! wait_journal "$cursor" "$cid" 'contid-vm-blind-after'; then
		why+="the scope's exec after the start is not in the journal under container ${cid}; "
	fi
	(($(wc -w <<<"$stack1") == BLIND_DEPTH + 1)) || why+="contidd's bpffs reached this namespace: /sys/fs/bpf is ${stack1}, was ${stack0} and the tmpfs; "
	# The set must not outlive the test: back to the mounts and the one
	# set there were.
	blind_restore "$progs0" || why+="restore: ${BLIND_RESTORED}"
	[[ -n $why ]] && verdict=FAIL
	result "$name" "$verdict" "${why:-map ${map0}, fork link ${link0}, ${progs0} set(s), container ${cid} kept; exec attributed; ${BLIND_RESTORED}back to ${progs0} set(s); }contidd: ${note}"
}

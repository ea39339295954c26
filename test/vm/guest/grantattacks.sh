# shellcheck shell=bash
# Attacks on the per-container exceptions (the AllowBPF tag option) and
# on the shutdown ioctl guard. Sourced by suite.sh, after grants.sh.
#
# A victim scope of contid-vm-nest.slice (no autotag) runs `sleep` and is
# tagged by the host with AllowBPF: a privileged agent's process. The
# attacker, root in an ungranted machine.slice scope, tries to use its
# grant: by ptrace (making the victim call bpf() for it) and by joining
# its cgroup. A granted scope then tries contid's own objects, which
# AllowBPF must not open. A nested orchestrator without the grant tries
# every tag call that could mint it. The untagged control of each must
# succeed.

# GRANT_VICTIM_PID, _ID, _CG: set by grant_victim and exported to the
# attack scopes, whose fresh copy of this file must not reset them.

# grant_victim starts the granted victim and has the host tag it.
grant_victim() {
	local i x
	SCOPE_N=$((SCOPE_N + 1))
	GRANT_VICTIM_UNIT=contid-vm-granted-victim-$SCOPE_N.scope
	systemd-run --quiet --collect --scope --slice=contid-vm-nest.slice --unit="$GRANT_VICTIM_UNIT" sleep 900 &
	GRANT_VICTIM_PID=$!
	for ((i = 0; i < 40; i++)); do
		systemctl is-active -q "$GRANT_VICTIM_UNIT" && break
		sleep 0.5
	done
	x=$(busctl call "${MANAGER[@]}" TagUnit 'sta{sv}' "$GRANT_VICTIM_UNIT" 0 1 AllowBPF b true 2>&1)
	GRANT_VICTIM_ID=$(sed -n 's|^to \([0-9]*\) .*|\1|p' <<<"$x")
	GRANT_VICTIM_CG=$(sed -n 's/^0:://p' "/proc/$GRANT_VICTIM_PID/cgroup")
	export GRANT_VICTIM_PID GRANT_VICTIM_ID GRANT_VICTIM_CG
	say "granted victim: pid $GRANT_VICTIM_PID, container '$GRANT_VICTIM_ID' ($x), cgroup $GRANT_VICTIM_CG"
	[[ -n $GRANT_VICTIM_ID ]]
}
end_grant_victim() {
	[[ -n $GRANT_VICTIM_PID ]] || return 0
	kill "$GRANT_VICTIM_PID" 2>/dev/null
	wait "$GRANT_VICTIM_PID" 2>/dev/null
	GRANT_VICTIM_PID=""
}

# Make the granted victim load a program: ptrace attach, then bpf()
# injected into it. The load is made under the victim's tag.
atk_grant_steal_ptrace() { "$PROBE" inject-bpf-prog-load "$GRANT_VICTIM_PID"; }
op_grant_steal_ptrace() { echo ptrace; }
pre_grant_steal_ptrace() { GS_CUR=$(journal_cursor); }
# What the victim's journal shows after the attack: a successful
# injection is the victim's first use of its grant, journaled under the
# victim's ID and not the attacker's.
post_grant_steal_ptrace() {
	local i
	[[ $1 == attack ]] || return 0
	for ((i = 0; i < 15; i++)); do
		GS_USES=$(grant_uses "$GS_CUR" "$GRANT_VICTIM_ID")
		((GS_USES > 0)) && break
		sleep 1
	done
}

# Enter the granted victim's cgroup (cgroup.procs, clone3) and load.
atk_grant_join_procs() {
	sh -c 'echo $$ >"$1/cgroup.procs" && echo "moved $$ into $1" && exec "$2" bpf-prog-load' _ "$CG$GRANT_VICTIM_CG" "$PROBE"
}
# The move is refused by the cgroup move guard; the kernel passes the
# write's failure on as EIO.
op_grant_join_procs() { echo cgroup_move; }
atk_grant_join_clone3() { "$PROBE" clone-into-cgroup "$CG$GRANT_VICTIM_CG" "$PROBE" bpf-prog-load; }

# grant_ops ROLE: contid's objects from a granted scope (or the control),
# one line per operation: "NAME rc=N: last line".
grant_op() {
	local name=$1 out rc
	shift
	out=$("$@" 2>&1)
	rc=$?
	echo "$name rc=$rc: $(tail -n1 <<<"$out")"
}
atk_granted_battery() {
	local i
	for ((i = 0; i < 60; i++)); do
		[[ -e $NEST_GO ]] && break
		sleep 0.5
	done
	echo "container now: $(container_of $$)"
	grant_op load "$PROBE" bpf-prog-load
	grant_op load2 "$PROBE" bpf-prog-load
	grant_op map_id bpftool map show id "$MAP_ID"
	grant_op map_pin bpftool map dump pinned "$MAP_PIN"
	grant_op map_update_id bpftool map update id "$MAP_ID" key hex $BOGUS_KEY value hex $ZERO_VALUE
	grant_op prog_id bpftool prog show id "$PROG_ID"
	grant_op link_id bpftool link show id "$LINK_ID"
	grant_op link_pin bpftool link show pinned "$LINK_PIN"
	if [[ $ROLE == granted ]]; then
		grant_op link_detach bpftool link detach id "$LINK_ID"
		grant_op ptrace_contidd "$PROBE" ptrace "$CONTIDD_PID"
	fi
	return 0
}

run_granted_contid() {
	local name=granted_contid verdict=PASS role unit log cur x bg i a="" c="" n line
	selected "$name" || return 0
	say "granted container against contid's objects"
	export NEST_GO=$SCRATCH/granted-go
	for role in granted control; do
		rm -f "$NEST_GO"
		SCOPE_N=$((SCOPE_N + 1))
		log=$(log_of "$name" "$role")
		cur=$(journal_cursor)
		if [[ $role == granted ]]; then
			unit=contid-vm-granted-battery-$SCOPE_N.scope
			ROLE=$role timeout 120 systemd-run --quiet --collect --scope --slice=contid-vm-nest.slice \
				--unit="$unit" -- "$SELF" __attack granted_battery >"$log" 2>&1 &
			bg=$!
			for ((i = 0; i < 40; i++)); do
				systemctl is-active -q "$unit" && break
				sleep 0.5
			done
			x=$(busctl call "${MANAGER[@]}" TagUnit 'sta{sv}' "$unit" 0 1 AllowBPF b true 2>&1)
			x=$(sed -n 's|^to \([0-9]*\) .*|\1|p' <<<"$x")
			touch "$NEST_GO"
			wait "$bg"
		else
			touch "$NEST_GO"
			in_scope control granted_battery
			log=$(log_of granted_battery control)
			x=""
		fi
		if [[ $role == granted ]]; then
			a="container ${x:-?}:"
			[[ -n $x ]] || verdict=FAIL
			while read -r line; do
				n=${line%% *}
				case $n in
				load | load2)
					[[ $line == *"rc=0:"* ]] || verdict=FAIL
					;;
				*)
					[[ $line == *"rc=0:"* ]] && verdict=FAIL
					grep -qiE 'operation not permitted|EPERM' <<<"$line" || verdict=FAIL
					;;
				esac
				a+=" [$line]"
			done < <(grep -E '^[a-z_0-9]+ rc=' "$log")
			if [[ -n $x ]]; then
				if wait_signal "$x"; then a+=", signal"; else
					a+=", NO signal"
					verdict=FAIL
				fi
				if wait_journal "$cur" "$x" 'AUDIT_OP=deny'; then a+=", denial journaled"; else
					a+=", NO denial journaled"
					verdict=FAIL
				fi
				sleep 2
				n=$(grant_uses "$cur" "$x")
				a+=", op=allow entries: $n"
				((n == 1)) || verdict=FAIL
			fi
		else
			c=""
			while read -r line; do
				[[ $line == *"rc=0:"* ]] || verdict=FAIL
				c+=" [$line]"
			done < <(grep -E '^[a-z_0-9]+ rc=' "$log")
		fi
	done
	# The control's map update left a key behind.
	map_restore
	result "$name" "$verdict" "with AllowBPF:${a} | untagged:${c}"
}

# A nested orchestrator without the grant tries each tag call that could
# give a child (or itself) AllowBPF, over the system bus and the peer
# socket. Every one must be refused.
atk_grant_mint() {
	local i mycg child
	for ((i = 0; i < 60; i++)); do
		[[ -e $NEST_GO ]] && break
		sleep 0.5
	done
	echo "container now: $(container_of $$)"
	mycg=$(sed -n 's/^0:://p' /proc/self/cgroup)
	mkdir "$CG$mycg/mint-a" "$CG$mycg/mint-b"
	sleep 60 &
	child=$!
	local bus sub=a
	for bus in "" --address=unix:path=/run/contid/bus; do
		echo "via ${bus:-system bus}"
		echo "tagcgroup-child: $(busctl $bus call "${MANAGER[@]}" TagCgroup 'sta{sv}' "$mycg/mint-$sub" 0 1 AllowBPF b true 2>&1 | head -n1)"
		sub=b
		echo "tagcgroup-own: $(busctl $bus call "${MANAGER[@]}" TagCgroup 'sta{sv}' "$mycg" 0 1 AllowBPF b true 2>&1 | head -n1)"
		# The caller must be the fresh child's parent: busctl execs in
		# the subshell that forked it.
		echo "tagpid-child: $( (
			sleep 30 &
			exec busctl $bus call "${MANAGER[@]}" TagPID 'uta{sv}' "$!" 0 1 AllowBPF b true
		) 2>&1 | head -n1)"
		echo "tagpid-self: $( (exec busctl $bus call "${MANAGER[@]}" TagPID 'uta{sv}' "$BASHPID" 0 1 AllowBPF b true) 2>&1 | head -n1)"
		echo "tagcgroup-victim-id: $(busctl $bus call "${MANAGER[@]}" TagCgroup 'sta{sv}' "$mycg/mint-a" "${GRANT_VICTIM_ID:-0}" 0 2>&1 | head -n1)"
	done
	# The unprivileged local user, who needs polkit's org.contid1.tag.
	echo "unpriv-tagcgroup: $(setpriv --reuid=65534 --regid=65534 --clear-groups busctl call "${MANAGER[@]}" TagCgroup 'sta{sv}' "$mycg/mint-b" 0 1 AllowBPF b true 2>&1 | head -n1)"
	echo "load-after: $("$PROBE" bpf-prog-load 2>&1)"
	"$PROBE" clone-into-cgroup "$CG$mycg/mint-a" "$PROBE" bpf-prog-load >/dev/null 2>&1
	echo "load-in-child-a: $?"
	kill "$child"
	rmdir "$CG$mycg/mint-a" "$CG$mycg/mint-b"
	return 0
}

run_grant_mint() {
	local name=grant_mint verdict=PASS unit log x bg i a line n
	selected "$name" || return 0
	say "minting AllowBPF from a container without it"
	export NEST_GO=$SCRATCH/mint-go
	rm -f "$NEST_GO"
	SCOPE_N=$((SCOPE_N + 1))
	unit=contid-vm-mint-$SCOPE_N.scope
	log=$(log_of "$name" attack)
	ROLE=attack timeout 150 systemd-run --quiet --collect --scope --slice=contid-vm-nest.slice \
		--unit="$unit" -- "$SELF" __attack grant_mint >"$log" 2>&1 &
	bg=$!
	for ((i = 0; i < 40; i++)); do
		systemctl is-active -q "$unit" && break
		sleep 0.5
	done
	x=$(busctl call "${MANAGER[@]}" TagUnit 'sta{sv}' "$unit" 0 1 AllowNesting b true 2>&1)
	x=$(sed -n 's|^to \([0-9]*\) .*|\1|p' <<<"$x")
	touch "$NEST_GO"
	wait "$bg"
	a="container ${x:-?}:"
	[[ -n $x ]] || verdict=FAIL
	while read -r line; do
		n=${line%%:*}
		case $n in
		via*) a+=" {$line}" ;;
		load-after) [[ $line == *denied* ]] || verdict=FAIL; a+=" [$line]" ;;
		load-in-child-a) [[ $line == *": 1" ]] || verdict=FAIL; a+=" [$line]" ;;
		*) [[ $line == *"Call failed"* ]] || verdict=FAIL; a+=" [$line]" ;;
		esac
	done < <(grep -E '^(via|tag|unpriv|load)' "$log")
	# The granted path is grants.sh's control: the host may give it.
	result "$name" "$verdict" "without AllowBPF:${a} | control: grants (the host's TagUnit with AllowBPF)"
}

# The shutdown ioctl. On /: flags no filesystem knows, so the control's
# call reaches ext4 and gets EINVAL, shutting nothing down. On a scratch
# loop filesystem: a real shutdown (NOLOGFLUSH), judged by whether a
# write there fails afterwards; the filesystem is made afresh per run.
atk_fs_shutdown_root() { "$PROBE" fs-shutdown-invalid /; }
op_fs_shutdown_root() { echo fs_shutdown; }
pre_fs_shutdown_loop() {
	mountpoint -q "$SCRATCH/shutfs" && umount "$SCRATCH/shutfs"
	mkdir -p "$SCRATCH/shutfs"
	truncate -s 16M "$SCRATCH/shutfs.img"
	mkfs.ext4 -q -F "$SCRATCH/shutfs.img" && mount -o loop "$SCRATCH/shutfs.img" "$SCRATCH/shutfs"
}
atk_fs_shutdown_loop() { "$PROBE" fs-shutdown "$SCRATCH/shutfs"; }
op_fs_shutdown_loop() { echo fs_shutdown; }
effect_fs_shutdown_loop() { ! { echo x >"$SCRATCH/shutfs/probe.$SCOPE_N" && sync -f "$SCRATCH/shutfs"; } 2>/dev/null; }
post_fs_shutdown_loop() { umount "$SCRATCH/shutfs" 2>/dev/null; }

run_grant_attacks() {
	local no_victim="" v
	# The attack bodies run in scopes, from a fresh copy of suite.sh
	# that does not set CG.
	export CG
	if selected grant_mint || selected grant_steal_ptrace || selected grant_join_procs || selected grant_join_clone3; then
		grant_victim || no_victim="the host could not tag the granted victim"
		run_grant_mint
		NEEDS=$no_victim run_denial grant_steal_ptrace
		if selected grant_steal_ptrace; then
			[[ ${GS_USES:-x} == 0 ]] && v=PASS || v=FAIL
			result grant_steal_journal "$v" "op=allow entries for the granted victim $GRANT_VICTIM_ID after the attack: ${GS_USES:-?} (a use by the attacker would be recorded as the victim's)"
		fi
		NEEDS=$no_victim run_denial grant_join_procs quiet
		NEEDS=$no_victim run_denial grant_join_clone3
		end_grant_victim
	fi
	run_granted_contid
	run_denial fs_shutdown_root
	run_denial fs_shutdown_loop
}

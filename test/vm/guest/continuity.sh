# shellcheck shell=bash
# Sourced by suite.sh. run_continuity: with no other audit daemon, contidd
# is the kernel's audit daemon (unicast) and keeps its socket in systemd's
# file descriptor store, with its spool. A tagged scope runs CONT_EXECS
# execs while contidd is restarted with `systemctl restart` and then
# killed with SIGKILL: every exec must be in the journal, attributed.
#
# Then `systemctl stop`, execs, start: the gap entry must count what
# contidd did not read. auditd steps aside for the checks and comes back
# after them, with contidd beside it in multicast mode as before.

CONT_EXECS=${CONT_EXECS:-2500}
CONT_KEY=contid-vm-continuity

# cont_count CID: how many distinct execs of the loop contidd wrote for
# container CID.
cont_count() {
	journalctl -q --no-pager SYSLOG_IDENTIFIER=contidd "AUDIT_CONTAINER_ID=$1" -o json 2>/dev/null |
		grep -oE 'contid-vm-cont-[0-9]+' | sort -u | wc -l
}

# cont_missing CID: which execs of the loop are not in the journal under
# container CID, and what the journal holds for the first few of them
# under any container or none.
cont_missing() {
	local have missing m
	have=$(journalctl -q --no-pager SYSLOG_IDENTIFIER=contidd "AUDIT_CONTAINER_ID=$1" -o json 2>/dev/null |
		grep -oE 'contid-vm-cont-[0-9]+' | sort -u)
	missing=$(comm -23 <(seq 1 "$CONT_EXECS" | sed 's/^/contid-vm-cont-/' | sort) <(echo "$have"))
	printf 'missing: %s' "$(echo "$missing" | head -n 8 | tr '\n' ' ')"
	for m in $(echo "$missing" | head -n 3); do
		printf '; %s elsewhere: %s' "$m" "$(journalctl -q --no-pager -o json 2>/dev/null | grep -E "\"?$m( |\")" |
			grep -oE '"(SYSLOG_IDENTIFIER|AUDIT_CONTAINER_ID|AUDIT_EVENT_ID|AUDIT_FIELD_PID|_TRANSPORT)":"[^"]*"' | tr '\n' ' ' | head -c 400)"
	done
}

cont_restore() {
	auditctl -d always,exit -F arch=b64 -S execve -k "$CONT_KEY" >/dev/null 2>&1
	systemctl stop "contid-vm-cont.scope" 2>/dev/null
	# A stop empties the store and so gives up the audit channel, which
	# auditd can then take; contidd then reads beside it.
	systemctl stop contidd.service 2>/dev/null
	systemctl start auditd.service 2>/dev/null
	restart_contidd
}

run_continuity() {
	selected continuity || return 0
	# The attacks before may have left contidd restarting, or CONTIDD_PID
	# read while it was: ask systemd, and start it if it is down.
	CONTIDD_PID=$(contidd_pid)
	[[ -z $CONTIDD_PID ]] && restart_contidd
	if [[ -z ${CONTIDD_PID:-} ]]; then
		result continuity FAIL "contidd is not running and did not start"
		return
	fi
	say "audit continuity across a restart and a SIGKILL ($CONT_EXECS execs)"
	local i began cid pid n last stable pid1 pid2 pid3 detail mode
	systemctl kill -s TERM auditd.service 2>/dev/null
	for ((i = 0; i < 20; i++)); do
		systemctl is-active -q auditd.service || break
		sleep 0.5
	done
	began=$(date '+%F %T')
	restart_contidd
	pid1=$CONTIDD_PID
	mode=$(journalctl -q --no-pager -u contidd.service --since "$began" -o cat | grep -m1 -o 'as its audit daemon')
	if [[ -z $mode ]]; then
		result continuity FAIL "contidd did not become the audit daemon with auditd stopped: $(journalctl -q --no-pager -u contidd.service --since "$began" -o cat | grep -i audit | tail -n 3 | tr '\n' ' ')"
		cont_restore
		return
	fi
	auditctl -a always,exit -F arch=b64 -S execve -k "$CONT_KEY" >/dev/null
	rm -f "$SCRATCH/cont.pid" "$SCRATCH/cont.go" "$SCRATCH/cont.done"
	systemd-run --quiet --collect --scope --slice="$TAGGED_SLICE" --unit=contid-vm-cont.scope -- \
		bash -c 'echo $$ >"$0/cont.pid"; while [[ ! -e $0/cont.go ]]; do sleep 0.1; done
			for ((i = 1; i <= $1; i++)); do /bin/true "contid-vm-cont-$i"; done; touch "$0/cont.done"' \
		"$SCRATCH" "$CONT_EXECS" >/dev/null 2>&1 &
	for ((i = 0; i < 100; i++)); do
		[[ -s $SCRATCH/cont.pid ]] && break
		sleep 0.1
	done
	pid=$(cat "$SCRATCH/cont.pid" 2>/dev/null)
	cid=$(container_of "$pid")
	if [[ -z $cid ]]; then
		result continuity FAIL "the loop's scope (pid ${pid:-?}) is not tagged"
		cont_restore
		return
	fi
	began=$SECONDS
	touch "$SCRATCH/cont.go"
	# A third of the way and two thirds: systemctl restart.
	while (($(cont_count "$cid") < CONT_EXECS / 3)) && ((SECONDS - began < 300)); do sleep 1; done
	systemctl restart contidd.service
	wait_bus 90
	pid2=$(contidd_pid)
	while (($(cont_count "$cid") < 2 * CONT_EXECS / 3)) && ((SECONDS - began < 300)); do sleep 1; done
	# Then SIGKILL: Restart=always starts the next contidd, which
	# reads on from the kept socket and replays the kept spool, where the
	# events the killed one had read and not yet written wait.
	systemctl kill -s KILL contidd.service
	for ((i = 0; i < 60; i++)); do
		pid3=$(contidd_pid)
		[[ -n $pid3 && $pid3 != "$pid2" ]] && break
		sleep 1
	done
	wait_bus 90
	CONTIDD_PID=$(contidd_pid)
	export CONTIDD_PID
	while [[ ! -e $SCRATCH/cont.done ]] && ((SECONDS - began < 400)); do sleep 1; done
	# Until the count stops rising: under TCG, and more so on a loaded
	# host, contidd and journald can be minutes behind the loop, and a
	# pause of 10 s was once taken for the end.
	last=-1 stable=0
	for ((i = 0; i < 300 && stable < 30; i++)); do
		n=$(cont_count "$cid")
		if ((n == last)); then stable=$((stable + 1)); else stable=0 last=$n; fi
		((n == CONT_EXECS)) && break
		sleep 1
	done
	detail="container $cid: $n of $CONT_EXECS execs in the journal across systemctl restart (pid $pid1 -> $pid2) and SIGKILL (-> $pid3); loop took $((SECONDS - began)) s"
	if [[ ! -e $SCRATCH/cont.done ]]; then
		result continuity FAIL "the exec loop did not finish in 400 s; $detail"
	elif ((n == CONT_EXECS)); then
		result continuity PASS "$detail"
	else
		result continuity FAIL "$detail; $(cont_missing "$cid"); contidd: $(journalctl -q --no-pager -u contidd.service --since "-15min" -o cat | grep -iE 'lost|spool|replay|reading on|exempt' | tail -n 8 | tr '\n' ' ')"
	fi
	run_stop_gap
	cont_restore
}

# run_stop_gap: contidd stopped, 200 tagged execs, contidd started. What
# it did not read must equal its gap entry's count (none: nothing
# missing). journald's own audit socket, a multicast reader, sees every
# event, so where it runs its serials between the gap's ends must be the
# count too.
run_stop_gap() {
	local n=200 since found gap after before seen detail
	since=$(date '+%F %T')
	systemctl stop contidd.service
	systemd-run --quiet --collect --scope --slice="$TAGGED_SLICE" --unit=contid-vm-gap.scope -- \
		bash -c 'for ((i = 1; i <= $0; i++)); do /bin/true "contid-vm-gap-$i"; done' "$n" >/dev/null 2>&1
	systemctl start contidd.service
	wait_bus 90
	CONTIDD_PID=$(contidd_pid)
	export CONTIDD_PID
	# Something for contidd to read, so it sees where the stream is.
	/bin/true contid-vm-gap-after
	sleep 10
	found=$(journalctl -q --no-pager SYSLOG_IDENTIFIER=contidd --since "$since" -o json 2>/dev/null |
		grep -oE 'contid-vm-gap-[0-9]+' | sort -u | wc -l)
	gap=$(journalctl -q --no-pager SYSLOG_IDENTIFIER=contidd --since "$since" -o json 2>/dev/null | grep '"AUDIT_GAP_COUNT"' | tail -n 1)
	after=$(grep -o '"AUDIT_GAP_AFTER":"[0-9]*"' <<<"$gap" | grep -o '[0-9]*')
	before=$(grep -o '"AUDIT_GAP_BEFORE":"[0-9]*"' <<<"$gap" | grep -o '[0-9]*')
	gap=$(grep -o '"AUDIT_GAP_COUNT":"[0-9]*"' <<<"$gap" | grep -o '[0-9]*')
	detail="$found of $n execs while stopped were read; gap entry: ${gap:-none}"
	if [[ -n $gap ]] && systemctl is-active -q systemd-journald-audit.socket; then
		seen=$(journalctl -q --no-pager _TRANSPORT=audit --since "$since" -o json 2>/dev/null |
			grep -o '"_AUDIT_ID":"[0-9]*"' | grep -o '[0-9]*' | sort -un |
			awk -v a="$after" -v b="$before" '$1 > a && $1 < b' | wc -l)
		detail="$detail (serials $after..$before; journald's audit socket saw $seen events between)"
		if ((gap == seen)); then
			result stop-gap PASS "$detail"
		else
			result stop-gap FAIL "$detail"
		fi
	elif [[ -z $gap ]] && ((found == n)); then
		result stop-gap PASS "$detail (the kernel held them: audit=1)"
	elif [[ -n $gap ]] && ((gap >= n - found)); then
		# Without a witness the count can only be checked to cover the
		# tagged execs that were not read (it also counts other
		# processes' events).
		result stop-gap PASS "$detail (journald's audit socket is off; the count covers the $((n - found)) tagged execs not read)"
	else
		result stop-gap FAIL "$detail"
	fi
}

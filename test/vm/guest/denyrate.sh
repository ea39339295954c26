# shellcheck shell=bash
# One container's flood of refusals must not drown another's records
# ([Enforce] DenialRecordBurst=, DenialRecordRate=). Sourced by suite.sh.
#
# A tagged scope (the flooder) signals contidd in a loop for
# DENY_FLOOD_SECONDS, each send refused with EPERM and counted by the
# probe; meanwhile a second tagged scope (the victim) is refused
# DENY_VICTIM_N times, a second apart. With the default budget every one
# of the victim's refusals has its own journal entry, and the flooder's
# recorded entries plus the counts its entries and summaries give
# (AUDIT_DENIALS_SUPPRESSED) equal its EPERMs exactly. The control runs
# the same with DenialRecordBurst=0 (every denial recorded) and reports
# what the kernel's event buffer and the journal lost without the budget.

DENY_FLOOD_SECONDS=${DENY_FLOOD_SECONDS:-8}
DENY_VICTIM_N=5
DENY_DROPIN=/etc/contid/contid.conf.d/50-contid-vm-denyrate.conf
DENY_TAMPER_ID=ccff256590f446b5b51e93fa502b92f3
DENY_SUMMARY_ID=b4e76fe19bdf4f28bebb1b687f0836cd

atk_deny_flood() {
	touch "$DENY_GO"
	"$PROBE" kill-loop "$CONTIDD_PID" "${DENY_FLOOD_SECONDS}s"
}

atk_deny_victim() {
	local i
	for ((i = 0; i < 240; i++)); do
		[[ -e $DENY_GO ]] && break
		sleep 0.5
	done
	sleep 1
	for ((i = 0; i < DENY_VICTIM_N; i++)); do
		"$PROBE" kill-loop "$CONTIDD_PID" 1
		sleep 1
	done
}

# deny_read CURSOR: contidd's entries since CURSOR into DENY_JSON, one
# JSON line each, of the fields counted here. No match is given to
# journalctl: with one, bookworm's journalctl (252) skips the first
# matching entry after the cursor (it steps twice from the cursor, once
# past the entry it expects to land on), which miscounts by one.
DENY_FIELDS=SYSLOG_IDENTIFIER,MESSAGE_ID,AUDIT_CONTAINER_ID,AUDIT_DENIALS_SUPPRESSED,MESSAGE
deny_read() {
	journalctl -q --no-pager --after-cursor="$1" -o json --output-fields="$DENY_FIELDS" 2>/dev/null |
		grep -aF '"SYSLOG_IDENTIFIER":"contidd"' >"$DENY_JSON"
}

# deny_count CID MESSAGE_ID: container CID's entries of that kind.
deny_count() {
	grep -aF "\"AUDIT_CONTAINER_ID\":\"$1\"" "$DENY_JSON" | grep -acF "\"MESSAGE_ID\":\"$2\""
}

# deny_suppressed CID: the sum of AUDIT_DENIALS_SUPPRESSED over container
# CID's entries.
deny_suppressed() {
	grep -aF "\"AUDIT_CONTAINER_ID\":\"$1\"" "$DENY_JSON" |
		sed -n 's/.*"AUDIT_DENIALS_SUPPRESSED":"\([0-9]*\)".*/\1/p' | awk '{ s += $1 } END { print s + 0 }'
}

# deny_lost: the kernel's failed reservations contidd reported (its
# "event buffer overflowed: N" warnings).
deny_lost() {
	sed -n 's/.*event buffer overflowed: \([0-9]*\) .*/\1/p' "$DENY_JSON" | awk '{ s += $1 } END { print s + 0 }'
}

# deny_property CID: the container's DenialsSuppressed as contidd says.
deny_property() {
	busctl --auto-start=no get-property org.contid1 "/org/contid1/container/$1" org.contid1.Container \
		DenialsSuppressed 2>/dev/null | awk '{ print $2 }'
}

# deny_round LABEL: one flood beside one victim; sets DENY_* results.
deny_round() {
	local label=$1 cur fpid vpid flog vlog i settled=0 last=-1 now p
	CONTIDD_PID=$(contidd_pid)
	export CONTIDD_PID DENY_GO=$SCRATCH/deny-go-$label
	DENY_JSON=$LOGS/deny_journal.$label.json
	# The two scopes start in subshells, which each add one to SCOPE_N:
	# a step of two keeps their unit names apart from the next round's.
	SCOPE_N=$((SCOPE_N + 2))
	rm -f "$DENY_GO"
	cur=$(journal_cursor)
	in_scope attack deny_flood &
	fpid=$!
	in_scope attack deny_victim &
	vpid=$!
	wait "$fpid" "$vpid"
	flog=$(log_of deny_flood attack)
	vlog=$(log_of deny_victim attack)
	cp "$flog" "$LOGS/deny_flood.$label.log"
	cp "$vlog" "$LOGS/deny_victim.$label.log"
	DENY_FCID=$(cid_in "$flog")
	DENY_VCID=$(cid_in "$vlog")
	DENY_EPERM=$(sed -n 's/^eperm: //p' "$flog")
	DENY_LEAK=$(awk '/^(sent|other): / { s += $2 } END { print s + 0 }' "$flog")
	DENY_VEPERM=$(sed -n 's/^eperm: //p' "$vlog" | awk '{ s += $1 } END { print s + 0 }')
	# contidd journals what it read; the last counts come with the sweep
	# (one to two seconds), behind a backlog that TCG makes long. The
	# property is the largest seen: it goes back to 0 once the exited
	# container is released (10 s).
	DENY_PROP=0
	for ((i = 0; i < 180; i++)); do
		p=$(deny_property "$DENY_FCID")
		((${p:-0} > DENY_PROP)) && DENY_PROP=$p
		deny_read "$cur"
		DENY_REC=$(deny_count "$DENY_FCID" "$DENY_TAMPER_ID")
		DENY_SUP=$(deny_suppressed "$DENY_FCID")
		now=$((DENY_REC + DENY_SUP))
		[[ $now == "${DENY_EPERM:-x}" ]] && { settled=1; break; }
		if [[ $now == "$last" ]]; then
			settled=$((settled + 1))
			((settled >= 10)) && break
		else
			settled=0
		fi
		last=$now
		sleep 1
	done
	DENY_WAITED=$i
	DENY_SUMMARIES=$(deny_count "$DENY_FCID" "$DENY_SUMMARY_ID")
	DENY_VREC=$(deny_count "$DENY_VCID" "$DENY_TAMPER_ID")
	DENY_LOST=$(deny_lost)
	# What to look at when the figures disagree: the kernel's budgets
	# (DENY_JSON keeps contidd's entries).
	bpftool -j map dump pinned "$PINDIR/denial_budget" >"$LOGS/deny_budget_map.$label.json" 2>&1
	say "$label: flooder $DENY_FCID EPERM=$DENY_EPERM leak=$DENY_LEAK recorded=$DENY_REC suppressed=$DENY_SUP summaries=$DENY_SUMMARIES property=${DENY_PROP:-?} (settled after ${DENY_WAITED}s); victim $DENY_VCID EPERM=$DENY_VEPERM recorded=$DENY_VREC; ring-buffer losses $DENY_LOST"
}

run_denial_budget() {
	local name=denial_budget verdict=PASS a c
	selected "$name" || return 0
	if [[ -n ${1:-} ]]; then
		result "$name" FAIL "no target: $1"
		return
	fi
	say "denial flood under the default budget"
	rm -f "$DENY_DROPIN"
	deny_round budget
	a="flooder $DENY_FCID: $DENY_EPERM EPERM = $DENY_REC recorded + $DENY_SUP counted ($DENY_SUMMARIES summaries, DenialsSuppressed=${DENY_PROP:-?})"
	if [[ -z $DENY_FCID || -z $DENY_VCID || $DENY_FCID == "$DENY_VCID" ]]; then
		a+=", containers unknown or shared (${DENY_FCID:-?}, ${DENY_VCID:-?})"
		verdict=FAIL
	fi
	if [[ -z $DENY_EPERM || $DENY_EPERM -le 0 || $DENY_LEAK != 0 ]]; then
		a+=", flood NOT refused throughout (EPERM ${DENY_EPERM:-?}, other $DENY_LEAK)"
		verdict=FAIL
	elif ((DENY_REC + DENY_SUP != DENY_EPERM)); then
		a+=", MISMATCH: $((DENY_REC + DENY_SUP)) said for $DENY_EPERM refused"
		verdict=FAIL
	fi
	if ((DENY_SUP == 0)); then
		a+=", NOTHING was counted: the budget did not bite"
		verdict=FAIL
	elif ((DENY_PROP == 0)); then
		a+=", DenialsSuppressed never showed the count"
		verdict=FAIL
	fi
	a+="; victim $DENY_VCID: $DENY_VEPERM EPERM, $DENY_VREC entries"
	if ((DENY_VEPERM != DENY_VICTIM_N || DENY_VREC != DENY_VICTIM_N)); then
		a+=" (want $DENY_VICTIM_N each)"
		verdict=FAIL
	fi
	a+="; ring-buffer losses $DENY_LOST"
	((DENY_LOST == 0)) || verdict=FAIL

	say "the same flood with DenialRecordBurst=0 (every denial recorded)"
	mkdir -p "$(dirname "$DENY_DROPIN")"
	printf '[Enforce]\nDenialRecordBurst=0\n' >"$DENY_DROPIN"
	restart_contidd
	deny_round control
	c="flooder: $DENY_EPERM EPERM, $DENY_REC recorded, $DENY_SUP counted; victim: $DENY_VEPERM EPERM, $DENY_VREC entries; ring-buffer losses $DENY_LOST"
	rm -f "$DENY_DROPIN"
	restart_contidd
	result "$name" "$verdict" "budget: $a | control (no budget): $c"
}

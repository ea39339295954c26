#!/bin/bash
# The VM tier's half of `make bench`: fork_exec_ratio_enforcing, measured
# where the guest kernel runs the BPF LSM (the development host refuses
# LSM programs).
#
#   bench.sh SHARE OUT
#
# Runs SHARE/guest/contid-bench -mode enforcing -phases fork with the
# static SHARE/guest/loadgen and writes OUT/bench-enforcing.json (and
# OUT/bench-enforcing.log); on the host, `make bench` folds that file into
# bench/results.json. Needs root, cgroup2 and the BPF LSM.
#
# Configuration B must run with no contid program attached, so contidd
# is stopped and its pinned links are removed for the run (its maps stay,
# and with them the tags); contidd is started again afterwards, which
# re-attaches them. Call it after the tests that need contidd: its PID
# changes.
#
# Environment: BENCH_BUDGET (default 240s) bounds the fork phase;
# BENCH_TIMEOUT (default 420s) bounds contid-bench as a whole (under TCG
# one enforcing load, done afresh for every A round, takes about 30 s);
# BENCH_KEEP_CONTIDD=1 leaves contidd and its programs alone (the
# baseline then includes them, and results.json counts those rounds).
#
# Exit status: 0 when the figure was measured, whether or not it meets
# its goal (that is for the bench table); 1 when it was not, or contidd
# did not come back; 2 on a missing input. The last line says which:
#   bench: ratio R (...)    or    bench: FAIL: reason
set -u

say() { echo "bench $(date +%T): $*"; }
# fail MESSAGE [STATUS]
fail() {
	echo "bench: FAIL: $1"
	exit "${2:-1}"
}

[[ $# -eq 2 ]] || fail "usage: bench.sh SHARE OUT" 2
SHARE=$1
OUT=$2
BIN=$SHARE/guest/contid-bench
LOADGEN=$SHARE/guest/loadgen
BUDGET=${BENCH_BUDGET:-240s}
HARD=${BENCH_TIMEOUT:-420s}
JSON=$OUT/bench-enforcing.json
LOG=$OUT/bench-enforcing.log
PINDIR=/sys/fs/bpf/contid
GOAL=1.02
T0=$(date +%s)

# --- inputs ------------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || fail "needs root (eBPF, cgroups)" 2
[[ -x $BIN ]] || fail "no $BIN: test/vm/run.sh must build it (CGO_ENABLED=0 go build -o \$share/guest/contid-bench ./test/bench/cmd/contid-bench)" 2
[[ -x $LOADGEN ]] || fail "no $LOADGEN: test/vm/run.sh must build it (cc -static -O2 -o \$share/guest/loadgen test/bench/loadgen.c)" 2
[[ -x /bin/true ]] || fail "no /bin/true in the guest: it is the load's program" 2
mkdir -p "$OUT" || fail "cannot create $OUT" 2
[[ -w $OUT ]] || fail "cannot write to $OUT" 2
cg2=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' /proc/self/mountinfo)
[[ -n $cg2 ]] || fail "no cgroup2 mount in /proc/self/mountinfo" 2
lsms=$(cat /sys/kernel/security/lsm 2>/dev/null)
[[ ,$lsms, == *,bpf,* ]] || fail "the guest kernel does not run the BPF LSM (lsm=$lsms): enforcing mode cannot be measured" 2
# A loadgen linked against the host's glibc would fail here, not midway.
lg=$("$LOADGEN" loop 3 /bin/true 2>&1)
[[ $lg == ns=* ]] || fail "$LOADGEN does not run in the guest (build it with cc -static): $lg" 2
say "kernel $(uname -r), LSMs $lsms, cgroup2 at $cg2, cpu $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
say "loadgen works: $lg"

# contid_task_alloc is listed as contid_task_all (15-character names).
contid_progs() {
	command -v bpftool >/dev/null || return 0
	bpftool prog show 2>/dev/null | grep -oE 'name contid_(fork|task_all[a-z]*)\b' | sort | uniq -c | tr '\n' ' '
}

# --- a clean baseline: contidd's programs detached for the run ---------------
was_socket=no
was_service=no
if [[ ${BENCH_KEEP_CONTIDD:-0} != 1 ]]; then
	systemctl -q is-active contidd.socket 2>/dev/null && was_socket=yes
	systemctl -q is-active contidd.service 2>/dev/null && was_service=yes
	say "stopping contidd for a clean baseline (socket active: $was_socket, service active: $was_service)"
	# The socket first, or a connection would start the service again.
	systemctl stop contidd.socket contidd.service 2>&1
	if [[ -d $PINDIR ]]; then
		# With contidd stopped nothing else holds the links: unpinned,
		# they detach. The maps (and the tags in them) stay pinned.
		n=0
		for l in "$PINDIR"/link_*; do
			[[ -e $l ]] || continue
			# A failure shows up below as programs still loaded.
			rm -f "$l" && n=$((n + 1))
		done
		say "removed $n link pins under $PINDIR"
	fi
	# Programs go away a moment after their last reference.
	for ((i = 0; i < 20; i++)); do
		[[ -z $(contid_progs) ]] && break
		sleep 0.5
	done
	left=$(contid_progs)
	if [[ -n $left ]]; then
		say "WARNING: contid fork programs still loaded by someone: $left(contid-bench counts the baseline rounds they disturb)"
	else
		say "no contid fork program is loaded"
	fi
else
	say "BENCH_KEEP_CONTIDD=1: contidd and its programs stay; loaded: $(contid_progs)"
fi

restore() {
	[[ $was_socket == yes ]] && { systemctl start contidd.socket 2>&1 || return 1; }
	if [[ $was_service == yes ]]; then
		systemctl reset-failed contidd.service 2>/dev/null
		systemctl start contidd.service 2>&1 || return 1
		local i
		for ((i = 0; i < 60; i++)); do
			busctl --auto-start=no get-property org.contid1 /org/contid1 org.contid1.Manager Enforcement >/dev/null 2>&1 && return 0
			sleep 1
		done
		return 1
	fi
	return 0
}

# --- the measurement -----------------------------------------------------------
rm -f "$JSON"
say "contid-bench -mode enforcing -phases fork -budget $BUDGET (at most $HARD)"
# Unbuffered progress on the console and in the log; the table at the end.
timeout -k 20s "$HARD" "$BIN" -mode enforcing -phases fork -budget "$BUDGET" \
	-loadgen "$LOADGEN" -out "$JSON" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
say "contid-bench exited $rc after $(($(date +%s) - T0))s"

restored=yes
if [[ $was_socket == yes || $was_service == yes ]]; then
	if restore; then
		say "contidd is back (pid $(systemctl show -P MainPID contidd.service 2>/dev/null))"
	else
		restored=no
		say "contidd did not come back: $(journalctl -q -b -u contidd.service -o cat -n 3 2>/dev/null | tr '\n' ' ')"
	fi
fi

# --- the verdict ------------------------------------------------------------------
# results.json is indented JSON with one key per line at the top level.
top() { sed -n "s/^  \"$1\": \\([0-9.eE+-]*\\),\\{0,1\\}\$/\\1/p" "$JSON" 2>/dev/null | head -n1; }
ratio=$(top fork_exec_ratio_enforcing)
case $rc in
0) ;;
124 | 137) fail "contid-bench did not finish within $HARD (see $LOG)" ;;
*)
	why=$(grep -m1 'phase fork: FAILED' "$LOG" | sed 's/^.*FAILED after [^:]*: //')
	fail "contid-bench exited $rc: ${why:-see $LOG}"
	;;
esac
[[ -n $ratio ]] || fail "$JSON has no fork_exec_ratio_enforcing (see $LOG)"
lo=$(top fork_exec_ratio_ci95_lo_enforcing)
hi=$(top fork_exec_ratio_ci95_hi_enforcing)
pairs=$(sed -n 's/^ *"pairs": \([0-9]*\),\{0,1\}$/\1/p' "$JSON" | head -n1)
met=missed
awk -v r="$ratio" -v g="$GOAL" 'BEGIN { exit !(r <= g) }' && met=met
[[ $restored == yes ]] || fail "measured ratio $ratio, but contidd did not come back after the run"
echo "bench: ratio $ratio (95% CI ${lo:-?}..${hi:-?} over ${pairs:-?} ABBA pairs; goal <= $GOAL $met; $(($(date +%s) - T0))s)"

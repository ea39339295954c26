# shellcheck shell=bash
# Sourced by suite.sh: how contidd behaves as a service.
#
# run_watchdog: contidd pings systemd's watchdog only
# while its loops make progress, so a loop that hangs is restarted by
# systemd, not left hung. journald stopped with SIGSTOP is the hang: a
# tagged scope keeps making audit events, contidd's journal writer blocks
# in its write, the audit loop stops moving, and systemd must restart
# contidd within WatchdogSec (8 s here, by a drop-in). The control is the
# same load with journald running for twice as long: no restart.
# Budget: about 60 s under TCG.

WD_SEC=8
WD_KEY=contid-vm-watchdog
WD_DROPIN=/run/systemd/system/contidd.service.d/50-vm-watchdog.conf

wd_journald_pid() { systemctl show -P MainPID systemd-journald.service 2>/dev/null | grep -v '^0$'; }
wd_restarts() { systemctl show -P NRestarts contidd.service 2>/dev/null; }

wd_restore() {
	local jpid
	jpid=$(wd_journald_pid)
	[[ -n $jpid ]] && kill -CONT "$jpid" 2>/dev/null
	systemctl stop contid-vm-wd.scope 2>/dev/null
	auditctl -d always,exit -F arch=b64 -S execve -k "$WD_KEY" >/dev/null 2>&1
	rm -f "$WD_DROPIN"
	systemctl daemon-reload
	restart_contidd
}

# wd_watch SECONDS PID RESTARTS: waits up to SECONDS for systemd to act on
# the watchdog: contidd's PID or restart count changes, or the unit is
# being stopped for it. Prints what it saw; fails if nothing happened.
wd_watch() {
	local sub t0=$SECONDS
	while ((SECONDS - t0 < $1)); do
		sub=$(systemctl show -P SubState contidd.service 2>/dev/null)
		if [[ $sub == stop-watchdog ]] || [[ $(wd_restarts) != "$3" ]] ||
			[[ -n $(contidd_pid) && $(contidd_pid) != "$2" ]]; then
			echo "after $((SECONDS - t0)) s: substate $sub, NRestarts $(wd_restarts), MainPID $(contidd_pid)"
			return 0
		fi
		sleep 0.2
	done
	return 1
}

run_watchdog() {
	selected watchdog || return 0
	say "the watchdog restarts a contidd whose audit loop hangs (journald stopped)"
	mkdir -p "${WD_DROPIN%/*}"
	printf '[Service]\nWatchdogSec=%ds\n' "$WD_SEC" >"$WD_DROPIN"
	systemctl daemon-reload
	restart_contidd
	if [[ -z ${CONTIDD_PID:-} ]]; then
		result watchdog FAIL "contidd did not start with WatchdogSec=${WD_SEC}s"
		wd_restore
		return
	fi
	auditctl -a always,exit -F arch=b64 -S execve -k "$WD_KEY" >/dev/null
	systemd-run --quiet --collect --scope --slice="$TAGGED_SLICE" --unit=contid-vm-wd.scope -- \
		bash -c 'while :; do /bin/true contid-vm-wd; done' >/dev/null 2>&1 &
	sleep 1

	local pid0 n0 jpid seen began
	pid0=$CONTIDD_PID
	n0=$(wd_restarts)
	# Control: the same load, journald running, twice WatchdogSec.
	if seen=$(wd_watch $((2 * WD_SEC)) "$pid0" "$n0"); then
		result watchdog-control FAIL "with journald running, systemd acted on the watchdog: $seen"
		wd_restore
		return
	fi
	result watchdog-control PASS "with journald running and a tagged exec loop, contidd (PID $pid0) kept its watchdog for $((2 * WD_SEC)) s"

	jpid=$(wd_journald_pid)
	if [[ -z $jpid ]]; then
		result watchdog FAIL "no journald to stop"
		wd_restore
		return
	fi
	began=$(date '+%F %T')
	kill -STOP "$jpid"
	# The writer blocks once journald's socket queue is full (seconds at
	# TCG's exec rate), the loop counts as stalled half of WatchdogSec
	# later, and systemd acts up to WatchdogSec after that.
	seen=$(wd_watch $((4 * WD_SEC)) "$pid0" "$n0")
	local acted=$?
	kill -CONT "$jpid"
	systemctl stop contid-vm-wd.scope 2>/dev/null
	local timeout_line stall_line i
	for ((i = 0; i < 50; i++)); do
		timeout_line=$(journalctl -q --no-pager -u contidd.service --since "$began" -o cat | grep -m1 -i 'watchdog timeout')
		[[ -n $timeout_line ]] && break
		sleep 0.2
	done
	stall_line=$(journalctl -q --no-pager -u contidd.service --since "$began" -o cat | grep -m1 'Not pinging the watchdog')
	wait_bus 60
	if ((acted == 0)) && [[ -n $timeout_line ]] && [[ -n $(contidd_pid) && $(contidd_pid) != "$pid0" ]]; then
		result watchdog PASS "journald stopped under a tagged exec loop: systemd restarted contidd $seen (PID $pid0 -> $(contidd_pid)); systemd: \"$timeout_line\"; contidd: \"${stall_line:-(its own line was not written: journald was stopped)}\""
	else
		result watchdog FAIL "journald stopped under a tagged exec loop: acted=$acted ($seen), systemd: \"$timeout_line\", contidd: \"$stall_line\", PID $pid0 -> $(contidd_pid)"
	fi
	wd_restore
}

# run_facilities: the trail and contidd's own messages share the unit and
# SYSLOG_IDENTIFIER; the syslog facility tells them apart, so
# `journalctl _SYSTEMD_UNIT=contidd.service --facility=daemon` is the
# daemon alone and
# `--facility=13` the trail. run_watchdog before it left both: the
# exec loop's entries and the watchdog's complaint.
run_facilities() {
	selected facilities || return 0
	local daemon_n daemon_ev trail_n trail_plain trail_exec
	daemon_n=$(journalctl -q --no-pager _SYSTEMD_UNIT=contidd.service --facility=daemon -o json | wc -l)
	daemon_ev=$(journalctl -q --no-pager _SYSTEMD_UNIT=contidd.service --facility=daemon -o json | grep -c '"AUDIT_\(EVENT_ID\|CONTAINER_ID\)"')
	trail_n=$(journalctl -q --no-pager _SYSTEMD_UNIT=contidd.service --facility=13 -o json | wc -l)
	trail_plain=$(journalctl -q --no-pager _SYSTEMD_UNIT=contidd.service --facility=13 -o json | grep -vc '"MESSAGE_ID"\|"AUDIT_EVENT_ID"')
	trail_exec=$(journalctl -q --no-pager _SYSTEMD_UNIT=contidd.service --facility=13 -o json | grep -c 'contid-vm-wd')
	if ((daemon_n > 0 && daemon_ev == 0 && trail_n > 0 && trail_plain == 0 && trail_exec > 0)); then
		result facilities PASS "journalctl _SYSTEMD_UNIT=contidd.service --facility=daemon: $daemon_n entries, none an event; --facility=13: $trail_n entries, each an event or a record of contid, $trail_exec of them the watchdog check's execs"
	else
		result facilities FAIL "--facility=daemon: $daemon_n entries, $daemon_ev of them events; --facility=13: $trail_n entries, $trail_plain without MESSAGE_ID or AUDIT_EVENT_ID, $trail_exec execs of the watchdog check"
	fi
}

# shellcheck shell=bash
# Sourced by run.sh after "restart under load": repeated kills leave
# contidd running. Budget: about 40 s.
#
# Nine kills (eight SIGKILL, then SIGTERM), each as soon as the previous
# contidd is up: more starts than systemd's default limit (5 in 10 s)
# allows, and a signal on-failure would not restart after. The control
# runs six SIGKILLs against the same unit with systemd's defaults put
# back by a drop-in (Restart=on-failure, RestartSec=100ms, the default
# start limit): it stays down.

# kill_loop SIGNALS...: kill each contidd as soon as its successor is up;
# prints how many came back.
kill_loop() {
	local sig pid new back=0
	for sig in "$@"; do
		pid=$(in_ct systemctl show -p MainPID --value contidd.service)
		[ "${pid:-0}" -gt 0 ] || break
		in_ct kill -s "$sig" "$pid"
		new=0
		for _ in $(seq 50); do
			sleep 0.2
			new=$(in_ct systemctl show -p MainPID --value contidd.service)
			if [ "${new:-0}" -gt 0 ] && [ "$new" != "$pid" ] && in_ct systemctl -q is-active contidd.service; then
				break
			fi
			new=0
		done
		[ "$new" -gt 0 ] || break
		back=$((back + 1))
	done
	echo "$back"
}

kills_start=$(date +%s)
back=$(kill_loop KILL KILL KILL KILL KILL KILL KILL KILL TERM)
if [ "$back" = 9 ] && in_ct systemctl -q is-active contidd.service; then
	pass "9 kills in a row (8 SIGKILL, 1 SIGTERM) in $(($(date +%s) - kills_start))s: contidd came back after each and is active"
else
	fail "repeated kills: contidd came back after $back of 9"
	in_ct systemctl status --no-pager contidd.service 2>&1 | head -5 | sed 's/^/      /'
fi

in_ct mkdir -p /run/systemd/system/contidd.service.d
in_ct sh -c 'printf "[Unit]\nStartLimitIntervalSec=10s\nStartLimitBurst=5\n[Service]\nRestart=on-failure\nRestartSec=100ms\n" >/run/systemd/system/contidd.service.d/defaults.conf'
in_ct systemctl daemon-reload
in_ct systemctl reset-failed contidd.service 2>/dev/null
back=$(kill_loop KILL KILL KILL KILL KILL KILL)
if [ "$back" -lt 6 ] && ! in_ct systemctl -q is-active contidd.service; then
	pass "control: with systemd's default restart settings contidd stayed down after $((back + 1)) SIGKILLs"
else
	fail "control: with systemd's default restart settings contidd came back after $back of 6 SIGKILLs"
fi
in_ct rm -r /run/systemd/system/contidd.service.d
in_ct systemctl daemon-reload
in_ct systemctl reset-failed contidd.service 2>/dev/null
in_ct systemctl start contidd.service
wait_for 30 "contidd to start again" in_ct systemctl -q is-active contidd.service ||
	fail "contidd starts again after the kill checks"

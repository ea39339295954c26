# Sourced by run.sh (needs its in_ct, pass, fail, note, manager and p2p):
# `systemctl reload contidd` after a drop-in changed applies the setting,
# names what needs a restart, and keeps the process, its connections and
# its containers. Time budget: about 3 s.

count_containers() { in_ct busctl "$@" call "${manager[@]}" ListContainers | awk '{ print $2 }'; }
pid_before=$(in_ct systemctl show -p MainPID --value contidd.service)
n_before=$(count_containers "$p2p")
in_ct mkdir -p /etc/contid/contid.conf.d
in_ct sh -c 'printf "[Manager]\nLogLevel=debug\nMaxContainers=100\n" >/etc/contid/contid.conf.d/50-systest.conf'
since=$(in_ct date '+%Y-%m-%d %H:%M:%S')
# contidd's connection to the bus: the same unique name owns org.contid1
# after the reload.
owner() { in_ct busctl status org.contid1 2>/dev/null | sed -n 's/^UniqueName=//p'; }
owner_before=$(owner)
out=$(in_ct_t 20 systemctl reload contidd.service 2>&1)
rc=$?
pid_after=$(in_ct systemctl show -p MainPID --value contidd.service)
n_after=$(count_containers "$p2p")
line=$(in_ct journalctl --no-pager -o cat -u contidd.service --since "$since" | grep -m 1 '^Reloaded the configuration')
owner_after=$(owner)
if [ $rc = 0 ] && [ "$pid_before" = "$pid_after" ] && [ "$n_before" = "$n_after" ] && [ -n "$owner_after" ] && [ "$owner_before" = "$owner_after" ] &&
	[[ $line == *"Applied: [Manager] LogLevel=debug (was info)"* ]] &&
	[[ $line == *"after a restart of contidd: [Manager] MaxContainers=100 (was 65536)"* ]]; then
	pass "systemctl reload contidd applies a drop-in's LogLevel=debug, names MaxContainers as needing a restart, keeps PID $pid_after, its bus connection ($owner_after) and $n_after containers"
	note "$line"
else
	fail "systemctl reload contidd (rc=$rc, PID $pid_before -> $pid_after, containers $n_before -> $n_after, bus owner $owner_before -> $owner_after)"
	note "$out" "log: $line"
	in_ct journalctl --no-pager -u contidd.service --since "$since" | tail -10 | sed 's/^/      /'
fi
in_ct rm -f /etc/contid/contid.conf.d/50-systest.conf
in_ct_t 20 systemctl reload contidd.service >/dev/null 2>&1

#!/usr/bin/env bash
# The main job on its embedded default, on a machine without systemd as
# PID 1: a private journald, contidd on its built-in configuration (only
# the paths moved off the host's), a container created under an autotag
# parent, a workload run inside it, and what the journal then shows for
# that container. Everything it creates is removed on exit.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=$top/bin
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (eBPF, audit netlink, cgroups): run sudo make demo"
[ -x "$bin/contidd" ] && [ -x "$bin/contidctl" ] || die "run make build first"

tmp=$(mktemp -d /tmp/contid-demo.XXXXXX)
chmod 755 "$tmp"
cg2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
[ -n "$cg2" ] || die "no cgroup2 hierarchy is mounted"
slice=contid-demo.slice
manual=contid-demo-manual
pins=/sys/fs/bpf/contid-demo
pids=()
audit_enabled_before=$(auditctl -s | awk '/^enabled/ { print $2 }')

cleanup() {
	set +e
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	auditctl -D -k contid >/dev/null 2>&1
	[ "$audit_enabled_before" = 0 ] && auditctl -e 0 >/dev/null
	for top in "$cg2/$slice" "$cg2/$manual"; do
		[ -d "$top" ] || continue
		find "$top" -depth -type d | while read -r d; do
			for p in $(cat "$d/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
			rmdir "$d" 2>/dev/null
		done
	done
	rm -rf "$pins" "$tmp"
}
trap cleanup EXIT

say "Starting a private journald (volatile storage, in its own mount namespace)"
mkdir "$tmp/log"
printf '[Journal]\nAudit=\nStorage=volatile\nReadKMsg=no\nForwardToSyslog=no\nForwardToConsole=no\nForwardToWall=no\nRateLimitIntervalSec=0\n' >"$tmp/journald.conf"
unshare --mount --propagation private sh -c "
	mount -t tmpfs tmpfs /run/systemd
	mount --bind '$tmp/log' /run/log
	if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
	mount --bind '$tmp/journald.conf' /etc/systemd/journald.conf
	exec /lib/systemd/systemd-journald" &
journald=$!
pids+=("$journald")
jsock=/proc/$journald/root/run/systemd/journal/socket
for _ in $(seq 100); do [ -S "$jsock" ] && break; sleep 0.1; done
[ -S "$jsock" ] || die "journald did not start"
jdir=$(ls -d "$tmp"/log/journal/* | head -1)
journal() { journalctl --directory="$jdir" --no-pager "$@"; }

say "Starting contidd on its built-in defaults (paths moved into $tmp, autotag parent /$slice)"
mkdir -p "$cg2/$slice"
cat >"$tmp/contid.conf" <<CONF
[Manager]
AutotagParents=/$slice
StateDirectory=$tmp/state
PinDirectory=$pins
Socket=$tmp/bus

[Audit]
LoadRules=yes
RulesFile=$top/units/contid.rules
CONF
"$bin/contidd" --config="$tmp/contid.conf" --no-bus --journal-socket="$jsock" >"$tmp/contidd.log" 2>&1 &
pids+=("$!")
ctl() { "$bin/contidctl" --p2p "$tmp/bus" "$@"; }
for _ in $(seq 100); do ctl list >/dev/null 2>&1 && break; sleep 0.1; done
ctl list >/dev/null || { cat "$tmp/contidd.log"; die "contidd did not come up"; }
busctl --address="unix:path=$tmp/bus" get-property org.contid1 /org/contid1 org.contid1.Manager Enforcement EnforcementReason

say "Creating the cgroup /$slice/web.scope: the kernel tags it at mkdir, before any process enters"
mkdir "$cg2/$slice/web.scope"
ctl list

say "Running a workload inside the container: a shell that forks and execs"
sh -c "echo \$\$ > '$cg2/$slice/web.scope/cgroup.procs'; exec sh -c 'id; cat /etc/os-release >/dev/null; sleep 30'" &
workload=$!
pids+=("$workload")
sleep 1
ctl who "$workload"
id=$(ctl --json who "$workload" | sed -n 's/.*"id": *\([0-9]*\).*/\1/p' | head -1)
[ -n "$id" ] || die "the workload carries no container ID"
ctl show "$id"

say "Waiting for the audit events to reach the journal"
for _ in $(seq 50); do
	[ "$(journal AUDIT_CONTAINER_ID="$id" -o cat | wc -l)" -ge 2 ] && break
	sleep 0.2
done

say "journalctl AUDIT_CONTAINER_ID=$id"
journal AUDIT_CONTAINER_ID="$id" -o short-precise
say "One of those entries in full (journalctl -o verbose)"
journal AUDIT_CONTAINER_ID="$id" -o verbose -n 1 | grep -E '^\s*(MESSAGE|SYSLOG_IDENTIFIER|AUDIT_CONTAINER_|AUDIT_EVENT_|AUDIT_FIELD_(EXE|PID|PPID|SYSCALL|UID))' || true
n=$(journal AUDIT_CONTAINER_ID="$id" -o cat | wc -l)
[ "$n" -ge 2 ] || die "expected the workload's execs in the journal, found $n entries"
say "A named container that allows nesting, and one nested inside it, tagged over the API"
mkdir -p "$cg2/$manual/pod/inner"
outer=$(ctl tag-cgroup --name=pod --allow-nesting "/$manual/pod")
inner=$(ctl tag-cgroup --name=inner "/$manual/pod/inner")
echo "tagged /$manual/pod as $outer and /$manual/pod/inner as $inner"
ctl list
sh -c "echo \$\$ > '$cg2/$manual/pod/inner/cgroup.procs'; exec /usr/bin/true nested-workload"
for _ in $(seq 50); do
	[ "$(journal AUDIT_CONTAINER_WITHIN="$outer" AUDIT_FIELD_EXE=/usr/bin/true -o cat | wc -l)" -ge 1 ] && break
	sleep 0.2
done
say "journalctl AUDIT_CONTAINER_WITHIN=$outer (container $outer and everything nested in it)"
journal AUDIT_CONTAINER_WITHIN="$outer" -o verbose AUDIT_FIELD_EXE=/usr/bin/true | grep -E '^\s*(MESSAGE|AUDIT_CONTAINER_(ID|CHAIN|NAME|WITHIN))='
[ "$(journal AUDIT_CONTAINER_WITHIN="$outer" AUDIT_CONTAINER_ID="$inner" -o cat | wc -l)" -ge 1 ] ||
	die "the nested container's exec is not in the journal under AUDIT_CONTAINER_WITHIN=$outer"

say "The pipeline's counters, as the Manager's properties"
busctl --address="unix:path=$tmp/bus" get-property org.contid1 /org/contid1 org.contid1.Manager EventsWritten EventsLost

say "contid's own records: each also went to the kernel audit log as a VIRT_* user record"
for mid in $(journal -F MESSAGE_ID); do journal SYSLOG_IDENTIFIER=contidd MESSAGE_ID="$mid" -o cat; done
echo
echo "demo: container $id ran $n audited commands; container $inner nested in $outer; all in the journal."

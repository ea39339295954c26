#!/bin/bash
# The systemd tier (`make test-systemd`): boot systemd as PID 1 in a
# throw-away container made of this host's own root file system, install the
# contid .deb in it with dpkg, and do what a user would: systemctl, busctl,
# journalctl, machinectl. Each step prints PASS, FAIL or SKIP (with the
# reason); the last line counts them and any failure makes the exit non-zero.
#
# Usage: test/systemd/run.sh [PATH.deb]     (default: packaging/out/*.deb)
# Needs root. Nothing on the host changes: the container's root is an
# overlay whose upper layer is a tmpfs in a private mount namespace, it has
# its own network namespace, and its cgroups are removed at the end.
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
deb=${1:-}
if [ -z "$deb" ]; then
	deb=$(ls "$top"/packaging/out/contid_*.deb 2>/dev/null | tail -1)
fi

passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); printf 'PASS  %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$*"; }
skip() { skipped=$((skipped + 1)); printf 'SKIP  %s\n' "$*"; }
note() { printf '      %s\n' "$@"; }
log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }
die() {
	printf 'systemd tier: %s\n' "$*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "needs root (it boots systemd in a container)"
if [ -z "$deb" ] || [ ! -f "$deb" ]; then die "no .deb: run \`make deb\` first"; fi
for c in systemd-nspawn systemd-run unshare nsenter mount; do
	command -v "$c" >/dev/null || die "$c is missing: run \`make deps\`"
done

machine=contid-systest-$$
work=$(mktemp -d /tmp/contid-systest.XXXXXX)
nspawn_pid=
leader=

# Where the cgroup hierarchies are mounted, from mountinfo: cgroup2, and on
# a hybrid host also the named systemd v1 hierarchy, where nspawn makes its
# cgroups too.
cgroup_mounts() {
	awk '{
		for (i = 7; i <= NF; i++) if ($i == "-") break
		if ($(i+1) == "cgroup2") print $5
		else if ($(i+1) == "cgroup" && $(i+3) ~ /(^|,)name=systemd(,|$)/) print $5
	}' /proc/self/mountinfo
}
cg2=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") break; if ($(i+1) == "cgroup2") { print $5; exit } }' /proc/self/mountinfo)
[ -n "$cg2" ] || die "no cgroup2 mount in /proc/self/mountinfo"
cg=$cg2/$machine

cleanup() {
	local rc=$? root
	trap - EXIT INT TERM
	if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
		log "powering the container off"
		# nspawn turns SIGTERM into an orderly shutdown of the container.
		kill -TERM "$nspawn_pid" 2>/dev/null
		for _ in $(seq 1 100); do
			kill -0 "$nspawn_pid" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$nspawn_pid" 2>/dev/null; then
			log "container did not power off within 20 s: killing nspawn"
			kill -KILL "$nspawn_pid" 2>/dev/null
		fi
		wait "$nspawn_pid" 2>/dev/null
	fi
	# The fleet scenario's hosts, collector and audit rule, if it was cut short.
	if declare -F fleet_cleanup >/dev/null; then fleet_cleanup; fi
	# Anything left in our cgroups was started by this run: end it by PID.
	if [ -d "$cg" ]; then
		find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r p; do
			kill -KILL "$p" 2>/dev/null
		done
		sleep 0.2
	fi
	# nspawn leaves payload/ and supervisor/ (and their children) behind.
	for root in $(cgroup_mounts); do
		[ -d "$root/$machine" ] && find "$root/$machine" -depth -type d -exec rmdir {} + 2>/dev/null
		[ -d "$root/$machine" ] && log "could not remove $root/$machine"
	done
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# in_ct runs a command inside the container (all its namespaces), as root;
# in_ct_t bounds it to $1 seconds.
in_ct() { timeout 60 nsenter -t "$leader" -a "$@"; }
in_ct_t() { timeout "$1" nsenter -t "$leader" -a "${@:2}"; }
# ct_run runs a command as a process of the container itself, in a
# transient service (nsenter'd processes sit outside the container's cgroup
# namespace, and contidd rightly refuses callers it cannot place); extra
# systemd-run options first, e.g. --uid=nobody.
ct_run() { in_ct systemd-run --quiet --wait --pipe --collect --service-type=exec "$@" </dev/null; }
# wait_for TIMEOUT DESCRIPTION CMD...: poll CMD every 0.2 s until it succeeds.
wait_for() {
	local timeout=$1 what=$2 deadline
	shift 2
	deadline=$(($(date +%s%N) + timeout * 1000000000))
	until "$@" >/dev/null 2>&1; do
		if [ "$(date +%s%N)" -gt "$deadline" ]; then
			note "timed out after ${timeout}s waiting for $what"
			return 1
		fi
		sleep 0.2
	done
}

manager=(org.contid1 /org/contid1 org.contid1.Manager)
p2p=--address=unix:path=/run/contid/bus

# --- boot ----------------------------------------------------------------

log "booting systemd in container $machine (root: overlay of /, deb: $(basename "$deb"))"
mkdir -p "$work/deb"
cp "$deb" "$work/deb/contid.deb"
mkdir "$cg" || die "cannot create cgroup $cg"

# The upper layer pre-set: a fresh machine ID (own journal), and the
# host's own enabled services that mean nothing in this test masked.
prepare_upper() {
	local upper=$1 u
	mkdir -p "$upper/etc/systemd/system"
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$upper/etc/machine-id"
	echo >>"$upper/etc/machine-id"
	for u in postgresql.service auditd.service systemd-timesyncd.service \
		apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer \
		fstrim.timer dpkg-db-backup.timer e2scrub_reap.service getty@tty1.service \
		systemd-networkd.service ssh.service cron.service; do
		ln -sf /dev/null "$upper/etc/systemd/system/$u"
	done
}
export -f prepare_upper

(
	# nspawn puts the container below the cgroup of its caller
	# (--keep-unit): give it one of its own.
	echo "$BASHPID" >"$cg/cgroup.procs" || exit 1
	exec unshare --mount --propagation private bash -c '
		set -e
		w=$1 machine=$2
		# A tmpfs on /run/systemd, so nspawn sees no host systemd state.
		mount -t tmpfs tmpfs /run/systemd
		mkdir "$w/ovl"
		mount -t tmpfs tmpfs "$w/ovl"
		mkdir "$w/ovl/upper" "$w/ovl/work" "$w/ovl/root"
		prepare_upper "$w/ovl/upper"
		mount -t overlay overlay -o lowerdir=/,upperdir="$w/ovl/upper",workdir="$w/ovl/work" "$w/ovl/root"
		# nspawn gives the container a read-only /sys without /sys/fs/bpf,
		# where systemd mounts bpffs on a host. A fresh bpffs instance of
		# its own, so no pin is shared with the host.
		mkdir "$w/ovl/bpf"
		mount -t bpf -o mode=0700 bpf "$w/ovl/bpf"
		# contidd needs bpf() and open_by_handle_at() (cgroup ID -> path),
		# which nspawn filters, and CAP_BPF/CAP_PERFMON, which it withholds;
		# CAP_NET_ADMIN for SO_RCVBUFFORCE.
		exec systemd-nspawn -D "$w/ovl/root" --register=no --keep-unit \
			--private-network --machine="$machine" --console=pipe -b \
			--bind-ro="$w/deb:/mnt/contid-deb" --bind="$w/ovl/bpf:/sys/fs/bpf" \
			--system-call-filter="bpf perf_event_open open_by_handle_at" \
			--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN,CAP_AUDIT_READ
	' boot "$work" "$machine"
) </dev/null >"$work/console.log" 2>&1 &
nspawn_pid=$!

# The container's PID 1 is nspawn's child.
find_leader() {
	leader=$(awk '{print $1}' "/proc/$nspawn_pid/task/$nspawn_pid/children" 2>/dev/null)
	[ -n "$leader" ] && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = systemd ]
}
if ! wait_for 30 "the container's systemd" find_leader; then
	tail -20 "$work/console.log"
	die "the container did not start"
fi
wait_for 30 "the container's systemd to listen" in_ct test -S /run/systemd/private
state=$(in_ct_t 90 systemctl is-system-running --wait 2>&1)
case $state in
running) pass "systemd boots as PID 1 in the container (state: $state)" ;;
*)
	fail "systemd boots as PID 1 in the container (state: $state)"
	in_ct systemctl --failed --no-pager --no-legend | sed 's/^/      /'
	;;
esac

# --- install ---------------------------------------------------------------

# This host's root carries a Docker-style policy-rc.d that forbids
# maintainer scripts to start services; a real system has none.
in_ct rm -f /usr/sbin/policy-rc.d
if out=$(in_ct env DEBIAN_FRONTEND=noninteractive dpkg -i /mnt/contid-deb/contid.deb 2>&1); then
	pass "dpkg -i installs $(basename "$deb")"
else
	fail "dpkg -i installs $(basename "$deb")"
	note "$out"
	exit 1
fi
missing=
for f in /usr/sbin/contidd /usr/bin/contidctl \
	/usr/lib/systemd/system/contidd.service /usr/lib/systemd/system/contidd.socket \
	/usr/lib/systemd/system/systemd-nspawn@.service.d/contid.conf \
	/usr/share/dbus-1/system.d/org.contid1.conf /usr/share/dbus-1/system-services/org.contid1.service \
	/usr/share/polkit-1/actions/org.contid1.policy /usr/lib/tmpfiles.d/contid.conf \
	/usr/lib/systemd/catalog/contid.catalog /etc/audit/rules.d/contid.rules /etc/contid/contid.conf \
	/usr/share/man/man8/contidd.8.gz /usr/share/man/man1/contidctl.1.gz /usr/share/man/man5/contid.conf.5.gz \
	/usr/share/man/man5/org.contid1.5.gz \
	/usr/share/bash-completion/completions/contidctl /usr/share/zsh/vendor-completions/_contidctl \
	/usr/share/fish/vendor_completions.d/contidctl.fish; do
	in_ct test -e "$f" || missing="$missing $f"
done
if [ -z "$missing" ]; then pass "every file is installed in its Debian place"; else fail "files missing:$missing"; fi
if [ "$(in_ct stat -c %a /var/lib/contid 2>/dev/null)" = 700 ]; then
	pass "tmpfiles.d made /var/lib/contid mode 0700"
else
	fail "tmpfiles.d made /var/lib/contid mode 0700 (got: $(in_ct stat -c %a /var/lib/contid 2>&1))"
fi
en=$(in_ct systemctl is-enabled contidd.socket contidd.service 2>&1 | tr '\n' ' ')
if [ "$en" = "enabled enabled " ]; then
	pass "the package enabled contidd.socket and contidd.service"
else
	fail "the package enabled contidd.socket and contidd.service (is-enabled: $en)"
fi

# --- the socket ---------------------------------------------------------

status=$(in_ct systemctl status --no-pager --lines=0 contidd.socket 2>&1)
if in_ct systemctl -q is-active contidd.socket && grep -q 'Listen: /run/contid/bus (Stream)' <<<"$status" &&
	in_ct test -S /run/contid/bus; then
	pass "systemctl status contidd.socket: active, listening on /run/contid/bus"
else
	fail "systemctl status contidd.socket: active, listening on /run/contid/bus"
	note "$status"
fi

# --- D-Bus activation -----------------------------------------------------

# The package starts the daemon; stop it so the bus has to start it again.
in_ct systemctl stop contidd.service 2>/dev/null
if in_ct systemctl -q is-active contidd.service; then
	fail "contidd.service stops (to test activation)"
fi
out=$(in_ct_t 30 busctl call "${manager[@]}" ListContainers 2>&1)
rc=$?
after=$(in_ct systemctl is-active contidd.service 2>&1)
# dbus-daemon says so when it hands an activation to systemd.
activated=$(in_ct journalctl -b --no-pager -o cat -u dbus.service | grep -c "Activating via systemd: service name='org.contid1' unit='contidd.service'")
if [ $rc = 0 ] && [ "$after" = active ] && [ "$activated" -gt 0 ]; then
	pass "first busctl call org.contid1 ... ListContainers starts contidd through D-Bus activation (reply: $out)"
else
	fail "first busctl call org.contid1 ... ListContainers starts contidd through D-Bus activation (rc=$rc, service: $after, dbus-daemon activations: $activated)"
	note "$out"
	in_ct journalctl -b -u contidd.service -n 20 --no-pager | sed 's/^/      /'
fi
mode=$(in_ct busctl get-property "${manager[@]}" Enforcement 2>&1)
reason=$(in_ct busctl get-property "${manager[@]}" EnforcementReason 2>&1)
note "Enforcement: $mode ($reason)"

# --- the peer-to-peer socket ----------------------------------------------

out=$(in_ct_t 30 busctl "$p2p" call "${manager[@]}" ListContainers 2>&1)
rc=$?
ver=$(in_ct_t 30 busctl "$p2p" get-property "${manager[@]}" Version 2>&1)
rc2=$?
if [ $rc = 0 ] && [ $rc2 = 0 ]; then
	pass "busctl --address=unix:path=/run/contid/bus call/get-property work (Version: $ver)"
else
	fail "busctl --address=unix:path=/run/contid/bus call/get-property work"
	note "$out" "$ver"
fi

# --- who may tag ------------------------------------------------------------

# A scope outside machine.slice is not tagged by itself. User nobody may read
# over the socket (mode 0666) but not tag it; root may.
plain=contid-systest-plain.scope
in_ct systemd-run --quiet --scope --slice=system.slice --unit="$plain" \
	/bin/sh -c 'exec sleep 300' </dev/null >/dev/null 2>&1 &
plain_client=$!
if wait_for 10 "$plain to run" in_ct systemctl -q is-active "$plain"; then
	plain_cg=$(in_ct systemctl show -p ControlGroup --value "$plain")
	out=$(ct_run --uid=nobody --gid=nogroup busctl "$p2p" call "${manager[@]}" ListContainers 2>&1)
	rc=$?
	den=$(ct_run --uid=nobody --gid=nogroup busctl "$p2p" call "${manager[@]}" TagCgroup 'sta{sv}' "$plain_cg" 0 0 2>&1)
	rc2=$?
	if [ $rc = 0 ] && [ $rc2 != 0 ]; then
		pass "user nobody reads over the socket but is refused TagCgroup $plain_cg ($den)"
	else
		fail "user nobody reads over the socket but is refused TagCgroup $plain_cg (read rc=$rc: $out; tag rc=$rc2: $den)"
	fi
	got=$(ct_run busctl "$p2p" call "${manager[@]}" TagCgroup 'sta{sv}' "$plain_cg" 0 1 Name s plain 2>&1)
	rc=$?
	if [ $rc = 0 ] && grep -q '^to [0-9]* "/org/contid1/container/[0-9]*"$' <<<"$got"; then
		pass "root tags $plain_cg over the socket: $got"
	else
		fail "root tags $plain_cg over the socket (rc=$rc: $got)"
	fi
else
	fail "a plain scope $plain starts"
fi
in_ct systemctl stop "$plain" >/dev/null 2>&1
wait "$plain_client" 2>/dev/null

# --- asking for a password --------------------------------------------------
. "$top/test/systemd/polkit.sh"

# --- restart under load ---------------------------------------------------

# Clients call in a loop, over the bus and over the socket, while the daemon
# restarts twice. The listening socket stays open and the bus re-activates
# the name, so no call may fail. $1: seconds; the rest: busctl options.
client_loop() {
	local n=0 bad=0
	local end=$(($(date +%s) + $1))
	shift
	while [ "$(date +%s)" -lt "$end" ]; do
		if ! timeout 30 nsenter -t "$leader" -a busctl "$@" call "${manager[@]}" ListContainers >/dev/null 2>>"$work/loop.err"; then
			bad=$((bad + 1))
		fi
		n=$((n + 1))
	done
	echo "$n $bad"
}
client_loop 8 "$p2p" >"$work/loop.p2p" &
lp=$!
client_loop 8 >"$work/loop.bus" &
lb=$!
sleep 1
r1=$(in_ct systemctl restart contidd.service 2>&1) || note "restart 1: $r1"
sleep 2
r2=$(in_ct systemctl restart contidd.service 2>&1) || note "restart 2: $r2"
wait $lp $lb
read -r np bp <"$work/loop.p2p"
read -r nb bb <"$work/loop.bus"
restarts=$(in_ct systemctl show -p NRestarts --value contidd.service)
started=$(in_ct journalctl -b -u contidd.service -o cat --no-pager | grep -c '^Started contidd.service')
if [ "$bp" = 0 ] && [ "$bb" = 0 ] && [ "$np" -gt 0 ] && [ "$nb" -gt 0 ] && in_ct systemctl -q is-active contidd.service; then
	pass "systemctl restart contidd (x2) while clients loop: 0 of $np socket calls and 0 of $nb bus calls failed"
else
	fail "systemctl restart contidd (x2) while clients loop: $bp of $np socket calls and $bb of $nb bus calls failed"
	sort "$work/loop.err" | uniq -c | head -5 | sed 's/^/      /'
fi
note "contidd started $started times so far (NRestarts=$restarts)"

# --- repeated kills ------------------------------------------------------
. "$top/test/systemd/kills.sh"

# --- the catalog -------------------------------------------------------------

# Something contidd catalogues: a refused tag (a cgroup that does not exist).
ct_run busctl call "${manager[@]}" TagCgroup 'sta{sv}' /machine.slice/contid-no-such.scope 0 0 >/dev/null 2>&1
sleep 1
ids=$(in_ct sed -n 's/^-- \([0-9a-f]\{32\}\).*/\1/p' /usr/lib/systemd/catalog/contid.catalog)
# systemd's dpkg trigger on /usr/lib/systemd/catalog ran
# journalctl --update-catalog at the end of dpkg -i: every entry is compiled in.
# (Word splitting of $ids is wanted: one argument per ID.)
# shellcheck disable=SC2086
listed=$(in_ct journalctl --list-catalog $ids 2>/dev/null | grep -c ' contid: ')
nids=$(wc -w <<<"$ids")
if [ "$nids" -gt 0 ] && [ "$listed" = "$nids" ]; then
	pass "journalctl --list-catalog has all $nids contid entries (systemd's dpkg trigger updated the catalog)"
else
	fail "journalctl --list-catalog has all contid entries ($listed of $nids)"
fi
found=
for id in $ids; do
	subject=$(in_ct awk -v id="$id" '$1 == "--" { on = ($2 == id) } on && /^Subject:/ { sub(/^Subject: */, ""); print; exit }' /usr/lib/systemd/catalog/contid.catalog)
	# journalctl -x fills in the @FIELD@ placeholders: match them as ".*".
	pattern=$(sed -e 's/[]\/$*.^[]/\\&/g' -e 's/@[A-Z0-9_]*@/.*/g' <<<"$subject")
	x=$(in_ct journalctl -b -u contidd -x --no-pager MESSAGE_ID="$id" 2>/dev/null)
	if [ -n "$subject" ] && grep -q -- "$pattern" <<<"$x"; then
		found="$id ($subject)"
		break
	fi
done
if [ -n "$found" ]; then
	pass "journalctl -u contidd -x explains contidd's entries with the catalog: $found"
	grep -m 3 -- "$pattern" <<<"$x" | sed 's/^/      /'
elif [ -z "$ids" ]; then
	fail "journalctl -u contidd -x shows the catalog text (no MESSAGE_IDs in the installed catalog)"
else
	fail "journalctl -u contidd -x shows the catalog text (no entry with any of: ${ids//$'\n'/ })"
fi

# --- static checks of the units -------------------------------------------

out=$(in_ct systemd-analyze verify contidd.service contidd.socket systemd-nspawn@contidtest.service 2>&1)
rc=$?
if [ $rc = 0 ] && [ -z "$out" ]; then
	pass "systemd-analyze verify: contidd.service contidd.socket systemd-nspawn@.service (+ contid drop-in) clean"
else
	fail "systemd-analyze verify clean (rc=$rc)"
	note "$out"
fi
sec=$(in_ct systemd-analyze security --no-pager contidd.service 2>&1)
score=$(sed -n 's/.*Overall exposure level for contidd.service: *//p' <<<"$sec")
if [ -n "$score" ]; then
	pass "systemd-analyze security contidd.service: exposure $score"
else
	fail "systemd-analyze security contidd.service"
	note "$sec"
fi

# --- machined: scopes and machines --------------------------------------------

if in_ct busctl call org.freedesktop.machine1 /org/freedesktop/machine1 org.freedesktop.machine1.Manager ListMachines >/dev/null 2>&1; then
	pass "systemd-machined runs (activated on the bus)"
else
	fail "systemd-machined runs"
fi

# container_of UNIT: the object contidd reports for a unit, or nothing.
container_of() {
	in_ct busctl call "${manager[@]}" GetContainerByUnit s "$1" 2>/dev/null | sed -n 's/^o "\(.*\)"$/\1/p'
}
prop() { in_ct busctl get-property org.contid1 "$1" org.contid1.Container "$2" 2>/dev/null | cut -d' ' -f2- | tr -d '"'; }

# object_of_pid PID: the container object contidd reports for a process.
object_of_pid() {
	in_ct busctl call "${manager[@]}" GetContainerByPID u "$1" 2>/dev/null | sed -n 's/^o "\(.*\)"$/\1/p'
}
# exec_logged FIELD=VALUE MARKER: whether contidd wrote an audit event of an
# execve whose arguments hold MARKER for that container. (contidd's own
# records, "container created", carry the same fields: they do not count.)
exec_logged() {
	in_ct journalctl -b --no-pager -o json _SYSTEMD_UNIT=contidd.service "$1" |
		grep '"AUDIT_EVENT_TYPES":"[^"]*EXECVE' | grep -q -- "$2"
}
# no_audit_here: whether this container cannot see audit events at all:
# systemd-nspawn's seccomp filter fails every NETLINK_AUDIT socket with
# EAFNOSUPPORT (contidd then logs "No kernel audit"), and the kernel
# multicasts audit records in the initial network namespace only.
no_audit_why="systemd-nspawn refuses audit netlink sockets in containers (EAFNOSUPPORT), and the kernel multicasts audit records only to the initial network namespace (VM tier)"
no_audit_here() {
	in_ct journalctl -b --no-pager -o cat _SYSTEMD_UNIT=contidd.service | grep -q '^No kernel audit' ||
		[ "$(readlink "/proc/$leader/ns/net")" != "$(readlink /proc/1/ns/net)" ]
}

scope=contid-systest-web.scope
in_ct systemd-run --quiet --scope --slice=machine.slice --unit="$scope" \
	/bin/sh -c 'while :; do /bin/true contid-systest-scope-marker; sleep 0.5; done' </dev/null >/dev/null 2>&1 &
scope_client=$!
scope_pid() { in_ct pgrep -f -o 'contid-systest-scope-marker'; }
if ! wait_for 10 "$scope to run" scope_pid; then
	fail "systemd-run --scope --slice=machine.slice starts $scope"
elif pid=$(scope_pid) && wait_for 10 "contid to place pid $pid" object_of_pid "$pid"; then
	obj=$(object_of_pid "$pid")
	want_cg=$(in_ct systemctl show -p ControlGroup --value "$scope")
	sid=$(prop "$obj" Id)
	scg=$(prop "$obj" ControlGroup)
	sflags=$(prop "$obj" Flags)
	sstate=$(prop "$obj" State)
	sname=$(prop "$obj" Name)
	sunit=$(prop "$obj" Unit)
	if [ "$scg" = "$want_cg" ] && [ "$sstate" = active ]; then
		pass "a systemd-run --scope --slice=machine.slice scope is tagged automatically: pid $pid is in container $sid (cgroup $scg, flags $sflags, state $sstate, name '$sname', unit '$sunit')"
	else
		fail "the scope's container is its cgroup and active (pid $pid -> container $sid: cgroup '$scg' want '$want_cg', state '$sstate')"
	fi
	if [ -n "$sname" ]; then match=AUDIT_CONTAINER_NAME=$sname; else match=AUDIT_CONTAINER_ID=$sid; fi
	if wait_for 5 "an exec entry of the scope" exec_logged "$match" contid-systest-scope-marker; then
		pass "journalctl $match finds the scope's exec"
		in_ct journalctl -b --no-pager -o cat -n 1 _SYSTEMD_UNIT=contidd.service "$match" | grep -m 1 -i exec | sed 's/^/      /'
	elif no_audit_here; then
		skip "journalctl $match finds the scope's exec: $no_audit_why"
	else
		fail "journalctl $match finds the scope's exec"
	fi
else
	fail "a systemd-run --scope --slice=machine.slice scope is tagged automatically (GetContainerByPID $pid: nothing)"
	in_ct busctl call "${manager[@]}" ListContainers 2>&1 | sed 's/^/      /'
fi
in_ct systemctl stop "$scope" >/dev/null 2>&1
wait "$scope_client" 2>/dev/null

# A container started the way a user starts one: `machinectl start`. Its
# image is a minimal tree sharing the host's /usr; the .nspawn file makes it
# run a marker loop instead of booting, without user namespace or veth.
nest=contidnest
unit=systemd-nspawn@$nest.service
in_ct bash -s "$nest" >"$work/nest.log" 2>&1 <<'SETUP'
set -e
nest=$1
root=/var/lib/machines/$nest
mkdir -p "$root/usr" "$root/etc" /etc/systemd/nspawn
for d in bin sbin lib lib64; do ln -sfn "usr/$d" "$root/$d"; done
cp /usr/lib/os-release "$root/etc/os-release"
cat >"/etc/systemd/nspawn/$nest.nspawn" <<EON
[Exec]
Boot=no
Parameters=/bin/sh -c "while :; do /bin/true contid-systest-nest-marker; sleep 0.5; done"
PrivateUsers=no

[Files]
BindReadOnly=/usr

[Network]
VirtualEthernet=no
Private=yes
EON
SETUP
machine_running() { [ "$(in_ct machinectl show "$nest" -p State --value 2>/dev/null)" = running ]; }
named() {
	local o
	o=$(container_of "$unit")
	[ -n "$o" ] && [ "$(prop "$o" Name)" = "$nest" ]
}
if ! in_ct machinectl start "$nest" >>"$work/nest.log" 2>&1 ||
	! wait_for 20 "machine $nest to run" machine_running; then
	skip "machinectl start $nest: nested nspawn does not run here (VM tier)"
	sed 's/^/      /' "$work/nest.log"
elif wait_for 15 "contid to name $unit '$nest'" named; then
	obj=$(container_of "$unit")
	nid=$(prop "$obj" Id)
	pid=$(in_ct pgrep -f -o 'contid-systest-nest-marker')
	byp=$(in_ct busctl call "${manager[@]}" GetContainerByPID u "$pid" 2>/dev/null | sed -n 's/^o "\(.*\)"$/\1/p')
	pre=$(in_ct systemctl show -p ExecStartPre --value "$unit" | grep -o 'status=[^ ;]*' | head -1)
	if [ "$byp" = "$obj" ]; then
		pass "machinectl start $nest: tagged (ID $nid) and named '$nest' automatically; its payload (pid $pid) maps to it; drop-in ExecStartPre $pre"
	else
		fail "machinectl start $nest: its payload (pid $pid) maps to the container (GetContainerByPID: '$byp', expected '$obj')"
	fi
	if wait_for 5 "an exec entry of $nest" exec_logged "AUDIT_CONTAINER_NAME=$nest" contid-systest-nest-marker; then
		pass "journalctl AUDIT_CONTAINER_NAME=$nest finds the container's exec"
		in_ct journalctl -b --no-pager -o cat -n 1 _SYSTEMD_UNIT=contidd.service "AUDIT_CONTAINER_NAME=$nest" | grep -m 1 -i exec | sed 's/^/      /'
	elif no_audit_here; then
		skip "journalctl AUDIT_CONTAINER_NAME=$nest finds the container's exec: $no_audit_why"
	else
		fail "journalctl AUDIT_CONTAINER_NAME=$nest finds the container's exec"
	fi
else
	fail "machinectl start $nest: tagged and named '$nest' automatically"
	in_ct busctl call "${manager[@]}" ListContainers 2>&1 | sed 's/^/      /'
	in_ct journalctl -b -u "$unit" --no-pager -n 15 | sed 's/^/      /'
fi
in_ct machinectl terminate "$nest" >/dev/null 2>&1

. "$top/test/systemd/reload.sh"

# --- two hosts, one collector ----------------------------------------------
. "$top/test/systemd/fleet.sh"

# --- removal -------------------------------------------------------------

out=$(in_ct env DEBIAN_FRONTEND=noninteractive dpkg --purge contid 2>&1)
rc=$?
left=
in_ct systemctl -q is-active contidd.service && left="$left contidd.service-active"
in_ct systemctl -q is-active contidd.socket && left="$left contidd.socket-active"
for f in /run/contid/bus /sys/fs/bpf/contid /var/lib/contid /usr/sbin/contidd /etc/contid/contid.conf \
	/usr/share/dbus-1/system.d/org.contid1.conf; do
	in_ct test -e "$f" && left="$left $f"
done
if [ $rc = 0 ] && [ -z "$left" ]; then
	pass "dpkg --purge contid stops the daemon and socket and removes the pins, state and files"
else
	fail "dpkg --purge contid cleans up (rc=$rc; left:$left)"
	note "$out"
fi

log "done"
printf '%d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
[ "$failed" = 0 ]

# shellcheck shell=bash
# Sourced by run.sh (needs its pass, fail, skip, note, log, wait_for,
# prepare_upper, manager, work, machine, cg and deb): two contid hosts ship
# their journals to one collector. Budget: about 60 s.
#
# The hosts are two more nspawn-booted systemds made like the first, each
# with the .deb installed: its own machine ID, journald, systemd, D-Bus
# and contidd, all on this machine's kernel. They share this machine's
# network namespace, where journald's audit socket gets the kernel's
# records (the first container, with its private network, gets none),
# and run with nspawn's seccomp filter off (SYSTEMD_SECCOMP=0), which
# would refuse every audit netlink socket. Host a uploads to the
# collector at 127.0.0.1, host b at ::1: two source addresses, so Debian
# 12's journal-remote (no GnuTLS, no client certificate check) files them
# apart, as remote-127.0.0.1.journal and remote-::1.journal. Each host
# gives a container the same ID, 4242, and its own UUID.
#
# contidd in a container attributes no audit events: the kernel refuses
# AUDIT_GET outside the initial PID namespace, and its reader needs the
# status. So what is checked of contidd's entries here is its records of
# each container (tag granted, container created); attributed execs on a
# collector are dbus/fleet_test.go's. The outage's execs are counted in
# the EXECVE records host a's journald stores itself (_TRANSPORT=audit).
#
# Checked on the collector: each host's file holds that host's machine ID
# only; contidctl events --uuid and ID --machine give exactly the entries
# of the container the host's own journal has; the ID alone gives both
# hosts' (the control). Then the collector is stopped (SIGTERM) for 30 s
# while host a's container runs 500 execs, and started again: host a's
# journal-upload.service, with a drop-in RestartSec=3s, rides it out, and
# each exec's record arrives (how many the collector holds twice, from
# journal-upload's resend, is shown), and contidctl events --directory
# lists each of host a's contidd entries exactly once. Host b keeps systemd's default
# RestartSec (100 ms): its upload unit hits the start limit and stays
# failed (the control for the drop-in DESIGN recommends).

fleet_id=4242
fleet_tag=contid-fleet-$$
fleet_load=500
fleet_outage=30
fleet_dir=$work/fleet
fleet_rdir=$fleet_dir/remote
fleet_remote_pid=
fleet_audit_rule=
fleet_audit_enabled=
declare -A fleet_nspawn=() fleet_leader=() fleet_uuid=() fleet_mid=() fleet_url=()

# fleet_cannot WHAT: a prerequisite is missing; under make check
# (CONTID_TEST_REQUIRE_ALL=1) that is a failure, not a skip.
fleet_cannot() {
	if [ "${CONTID_TEST_REQUIRE_ALL:-}" = 1 ]; then
		fail "fleet: cannot run (CONTID_TEST_REQUIRE_ALL=1): $*"
	else
		skip "fleet: $*"
	fi
}

# fin HOST CMD...: run CMD in fleet host HOST (all its namespaces), as root.
fin() {
	local h=$1
	shift
	timeout 60 nsenter -t "${fleet_leader[$h]}" -a "$@"
}
# fct_run HOST CMD...: CMD as a process of the host's own systemd (see ct_run).
fct_run() {
	local h=$1
	shift
	fin "$h" systemd-run --quiet --wait --pipe --collect --service-type=exec "$@" </dev/null
}

fleet_poweroff() {
	local p=$1
	kill -0 "$p" 2>/dev/null || return 0
	kill -TERM "$p" 2>/dev/null
	for _ in $(seq 1 100); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.2
	done
	kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
}

fleet_remote_stop() {
	[ -n "$fleet_remote_pid" ] || return 0
	kill -TERM "$fleet_remote_pid" 2>/dev/null
	for _ in $(seq 1 50); do
		kill -0 "$fleet_remote_pid" 2>/dev/null || break
		sleep 0.2
	done
	kill -0 "$fleet_remote_pid" 2>/dev/null && kill -KILL "$fleet_remote_pid" 2>/dev/null
	wait "$fleet_remote_pid" 2>/dev/null
	fleet_remote_pid=
}

# Called by run.sh's cleanup too, so an interrupted run leaves no
# container, collector or audit rule behind.
fleet_cleanup() {
	local h
	for h in "${!fleet_nspawn[@]}"; do
		fleet_poweroff "${fleet_nspawn[$h]}"
		unset "fleet_nspawn[$h]"
	done
	fleet_remote_stop
	if [ -n "$fleet_audit_rule" ]; then
		# shellcheck disable=SC2086
		auditctl -d $fleet_audit_rule >/dev/null 2>&1
		fleet_audit_rule=
	fi
	if [ -n "$fleet_audit_enabled" ]; then
		auditctl -e "$fleet_audit_enabled" >/dev/null 2>&1
		fleet_audit_enabled=
	fi
}

# fleet_boot HOST: boot a fleet host in the background, in a cgroup of its
# own below this run's.
fleet_boot() {
	local h=$1 w=$fleet_dir/$1
	mkdir -p "$w" "$cg/fleet-$h"
	(
		echo "$BASHPID" >"$cg/fleet-$h/cgroup.procs" || exit 1
		exec unshare --mount --propagation private bash -c '
			set -e
			w=$1 name=$2 tls=$3 deb=$4
			mount -t tmpfs tmpfs /run/systemd
			mkdir "$w/ovl"
			mount -t tmpfs tmpfs "$w/ovl"
			mkdir "$w/ovl/upper" "$w/ovl/work" "$w/ovl/root"
			prepare_upper "$w/ovl/upper"
			mount -t overlay overlay -o lowerdir=/,upperdir="$w/ovl/upper",workdir="$w/ovl/work" "$w/ovl/root"
			mkdir "$w/ovl/bpf"
			mount -t bpf -o mode=0700 bpf "$w/ovl/bpf"
			SYSTEMD_SECCOMP=0 exec systemd-nspawn -D "$w/ovl/root" --register=no --keep-unit \
				--machine="$name" --console=pipe -b \
				--bind-ro="$deb:/mnt/contid-deb" --bind-ro="$tls:/etc/contid-fleet" \
				--bind="$w/ovl/bpf:/sys/fs/bpf" \
				--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN,CAP_AUDIT_READ
		' boot "$w" "$machine-$h" "$fleet_dir/tls" "$work/deb"
	) </dev/null >"$w/console.log" 2>&1 &
	fleet_nspawn[$h]=$!
}

fleet_find_leader() {
	local h=$1 p=${fleet_nspawn[$1]} l
	l=$(awk '{print $1}' "/proc/$p/task/$p/children" 2>/dev/null)
	[ -n "$l" ] && [ "$(cat "/proc/$l/comm" 2>/dev/null)" = systemd ] || return 1
	fleet_leader[$h]=$l
}

# fleet_setup HOST RESTARTSEC: wait for the host's systemd, install the
# .deb with contidd reading the multicast group (as the first container's,
# it could not become the audit daemon), and start journal-upload to its
# URL, with a drop-in RestartSec= unless RESTARTSEC is "default". With 3s,
# 5 starts take longer than systemd's default limit of 5 in 10 s.
fleet_setup() {
	local h=$1 rs=$2 state out
	if ! wait_for 30 "fleet host $h's systemd" fleet_find_leader "$h"; then
		tail -20 "$fleet_dir/$h/console.log" | sed 's/^/      /'
		return 1
	fi
	wait_for 30 "fleet host $h's systemd to listen" fin "$h" test -S /run/systemd/private || return 1
	state=$(timeout 90 nsenter -t "${fleet_leader[$h]}" -a systemctl is-system-running --wait 2>&1)
	if [ "$state" != running ]; then
		note "fleet host $h: $state"
		fin "$h" systemctl --failed --no-pager --no-legend | sed 's/^/      /'
	fi
	fin "$h" rm -f /usr/sbin/policy-rc.d
	fin "$h" sh -c 'mkdir -p /etc/contid/contid.conf.d && printf "[Audit]\nSocket=multicast\n" >/etc/contid/contid.conf.d/50-fleet.conf'
	if ! out=$(fin "$h" env DEBIAN_FRONTEND=noninteractive dpkg -i /mnt/contid-deb/contid.deb 2>&1); then
		note "fleet host $h: dpkg -i: $out"
		return 1
	fi
	fin "$h" sh -c "mkdir -p /etc/systemd/journal-upload.conf.d /etc/systemd/system/systemd-journal-upload.service.d &&
		printf '[Upload]\nURL=%s\nServerKeyFile=/etc/contid-fleet/%s.key\nServerCertificateFile=/etc/contid-fleet/%s.pem\nTrustedCertificateFile=/etc/contid-fleet/ca.pem\n' '${fleet_url[$h]}' '$h' '$h' >/etc/systemd/journal-upload.conf.d/50-fleet.conf &&
		{ [ '$rs' = default ] || printf '[Service]\nRestartSec=%s\n' '$rs' >/etc/systemd/system/systemd-journal-upload.service.d/50-fleet.conf; } &&
		systemctl daemon-reload && systemctl start systemd-journal-upload.service" || return 1
	fleet_mid[$h]=$(fin "$h" cat /etc/machine-id)
	wait_for 30 "contidd on fleet host $h" fin "$h" systemctl -q is-active contidd.service
}

# fleet_tls: a CA, the collector's certificate (127.0.0.1 and ::1) and one
# client certificate per host. The keys are readable by journal-upload's
# dynamic user: throw-away keys of this run.
fleet_tls() {
	local d=$fleet_dir/tls n
	mkdir -p "$d"
	(
		cd "$d" || exit 1
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=contid-fleet-ca &&
			echo 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost' >san.ext || exit 1
		for n in server a b; do
			openssl req -newkey rsa:2048 -nodes -keyout $n.key -out $n.csr -subj /CN=host-$n &&
				openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $n.pem -days 1 -extfile san.ext || exit 1
		done
		chmod 0644 ./*.key ./*.pem
	) >"$fleet_dir/openssl.log" 2>&1
}

fleet_listening() { ss -Hltn "sport = :$fleet_port" | grep -q .; }
# fleet_remote_start: journal-remote on this machine, in the run's cgroup,
# on every address of the port (so both 127.0.0.1 and ::1).
fleet_remote_start() {
	(
		echo "$BASHPID" >"$cg/fleet-remote/cgroup.procs" || exit 1
		exec /lib/systemd/systemd-journal-remote --listen-https="$fleet_port" \
			--key="$fleet_dir/tls/server.key" --cert="$fleet_dir/tls/server.pem" \
			--split-mode=host --output="$fleet_rdir/"
	) </dev/null >>"$fleet_dir/remote.log" 2>&1 &
	fleet_remote_pid=$!
	wait_for 10 "journal-remote to listen on $fleet_port" fleet_listening
}

# fleet_keys: journal JSON on stdin -> one line per entry, sorted: the
# host, journald's timestamps and what the entry records. journal-remote
# keeps all of them as the sending journald wrote them.
fleet_keys() {
	jq -r '[._MACHINE_ID, .__REALTIME_TIMESTAMP, .__MONOTONIC_TIMESTAMP, .AUDIT_CONTAINER_UUID,
		(.MESSAGE_ID // "-"), (.AUDIT_EVENT_ID // "-")] | map(tostring) | join(" ")' | sort
}
# fleet_local HOST: the keys of HOST's own entries of its container.
fleet_local() {
	fin "$1" journalctl --no-pager -o json _SYSTEMD_UNIT=contidd.service "AUDIT_CONTAINER_UUID=${fleet_uuid[$1]}" | fleet_keys
}
# fleet_events ARGS...: contidctl events on the collector, as keys.
fleet_events() {
	local out rc
	out=$("$fleet_ctl" events --directory="$fleet_rdir" --no-pager -o json "$@" 2>"$fleet_dir/ctl.err")
	rc=$?
	# journalctl of systemd 252 exits 1 when no file has a match.
	if [ $rc != 0 ] && { [ $rc != 1 ] || [ -n "$out" ]; }; then
		note "contidctl events $*: exit $rc: $(cat "$fleet_dir/ctl.err")"
	fi
	printf '%s' "$out" | fleet_keys
}
# fleet_has HOST: whether the collector holds every entry HOST has of its
# container.
fleet_has() {
	local want got
	want=$(fleet_local "$1" | wc -l)
	got=$(fleet_events --uuid="${fleet_uuid[$1]}" | wc -l)
	[ "$got" -ge "$want" ]
}
# fleet_execve MARKER: journal JSON on stdin -> "MARKER-N AUDIT_ID" for
# each EXECVE record of /bin/true MARKER-N. (The queries' own execs carry
# MARKER too, and are audited: only the container's are /bin/true.)
fleet_execve() {
	jq -r --arg m "a0=\"/bin/true\" a1=\"$1-" 'select(._TRANSPORT == "audit" and (.MESSAGE | type) == "string" and (.MESSAGE | contains($m)))
		| "\(.MESSAGE) \(._AUDIT_ID)"' | sed -n "s/.* a1=\"\($1-[0-9][0-9]*\)\".* \([0-9][0-9]*\)\$/\1 \2/p"
}
fleet_local_execs() { fin a journalctl --no-pager -o json _TRANSPORT=audit | fleet_execve "$1"; }
fleet_remote_execs() { journalctl --file="$fleet_rdir/remote-127.0.0.1.journal" --no-pager -o json _TRANSPORT=audit 2>/dev/null | fleet_execve "$1"; }
fleet_count_local() { [ "$(fleet_local_execs "$1" | wc -l)" -ge "$2" ]; }
fleet_count_remote() { [ "$(fleet_remote_execs "$1" | awk '{ print $1 }' | sort -u | wc -l)" -ge "$2" ]; }

# fleet_exec HOST N MARKER PAUSE: the container's shell runs /bin/true
# MARKER-1 .. MARKER-N, PAUSE seconds apart (its only execs: the shell
# waits with builtins).
fleet_exec() { fin "$1" sh -c "echo '$2 $3 $4' >/run/contid-fleet.ctl"; }

fleet_run() {
	local h missing= c cgp got files want keys_a keys_b ok rs
	for c in openssl jq auditctl ss /lib/systemd/systemd-journal-remote /lib/systemd/systemd-journal-upload; do
		command -v "$c" >/dev/null || missing="$missing $c"
	done
	if [ -n "$missing" ]; then
		fleet_cannot "missing:$missing (make deps)"
		return
	fi
	fleet_ctl=$fleet_dir/deb/usr/bin/contidctl
	mkdir -p "$fleet_rdir" "$cg/fleet-remote"
	if ! dpkg-deb -x "$deb" "$fleet_dir/deb" || ! fleet_tls; then
		fail "fleet: the collector's contidctl and certificates"
		sed 's/^/      /' "$fleet_dir/openssl.log" 2>/dev/null | tail -5
		return
	fi
	for fleet_port in $(shuf -i 20000-40000 -n 20); do
		fleet_listening || break
	done
	fleet_url[a]=https://127.0.0.1:$fleet_port
	fleet_url[b]=https://[::1]:$fleet_port
	if ! fleet_remote_start; then
		fail "fleet: journal-remote --listen-https=$fleet_port --split-mode=host starts"
		sed 's/^/      /' "$fleet_dir/remote.log"
		return
	fi

	# Execs are audited by a rule of this run's (the hosts' contidds are
	# in PID namespaces of their own, where the kernel refuses rule
	# changes).
	fleet_audit_enabled=$(auditctl -s | awk '$1 == "enabled" { print $2 }')
	[ "$fleet_audit_enabled" = 1 ] && fleet_audit_enabled=
	auditctl -e 1 >/dev/null
	fleet_audit_rule="always,exit -F arch=b64 -S execve -k $fleet_tag"
	# shellcheck disable=SC2086
	if ! out=$(auditctl -a $fleet_audit_rule 2>&1); then
		fleet_audit_rule=
		fail "fleet: auditctl adds an execve rule: $out"
		return
	fi

	log "booting fleet hosts a and b"
	fleet_boot a
	fleet_boot b
	for h in a b; do
		rs=3s
		[ "$h" = b ] && rs=default
		if ! fleet_setup "$h" "$rs"; then
			fail "fleet host $h boots systemd, installs the .deb, starts contidd and journal-upload"
			fin "$h" journalctl -b --no-pager -n 20 2>/dev/null | sed 's/^/      /'
			return
		fi
	done
	if [ "${fleet_mid[a]}" = "${fleet_mid[b]}" ] || [ -z "${fleet_mid[a]}" ]; then
		fail "fleet: the hosts have machine IDs of their own (${fleet_mid[a]}, ${fleet_mid[b]})"
		return
	fi
	pass "fleet hosts a (machine ${fleet_mid[a]}, uploads to ${fleet_url[a]}) and b (machine ${fleet_mid[b]}, ${fleet_url[b]}) boot with the .deb, contidd and journal-upload"
	if fin a journalctl --no-pager -o cat -u contidd.service | grep -q 'audit status: operation not permitted'; then
		note "contidd in a container: the kernel refuses AUDIT_GET outside the initial PID namespace; no audit events are attributed"
	fi

	# Each host: a scope outside machine.slice (so not tagged by itself)
	# whose shell execs on request, tagged with the same ID.
	for h in a b; do
		# Not bounded by fin's timeout: it runs until the host powers off.
		nsenter -t "${fleet_leader[$h]}" -a systemd-run --quiet --scope --slice=system.slice --unit=contid-fleet-web.scope \
			/bin/bash -c 'mkfifo /run/contid-fleet.ctl /run/contid-fleet.idle
				exec 8<>/run/contid-fleet.ctl 9<>/run/contid-fleet.idle
				while read -r n m p <&8; do
					for ((i = 1; i <= n; i++)); do
						/bin/true "$m-$i"
						[ "$p" = 0 ] || read -r -t "$p" <&9
					done
				done' </dev/null >/dev/null 2>&1 &
		if ! wait_for 10 "the container of fleet host $h" fin "$h" test -p /run/contid-fleet.idle; then
			fail "fleet host $h: a scope for the container runs"
			return
		fi
		cgp=$(fin "$h" systemctl show -p ControlGroup --value contid-fleet-web.scope)
		fleet_uuid[$h]=$(cat /proc/sys/kernel/random/uuid)
		got=$(fct_run "$h" busctl call "${manager[@]}" TagCgroup 'sta{sv}' "$cgp" "$fleet_id" 2 Name s web UUID s "${fleet_uuid[$h]}" 2>&1)
		if [[ $got != "to $fleet_id "* ]]; then
			fail "fleet host $h: TagCgroup $cgp with ID $fleet_id: $got"
			return
		fi
	done
	pass "fleet: both hosts tagged a container with ID $fleet_id (UUIDs ${fleet_uuid[a]}, ${fleet_uuid[b]})"

	for h in a b; do
		if ! wait_for 30 "the collector to hold host $h's entries" fleet_has "$h"; then
			fail "fleet: the collector holds host $h's entries of its container"
			sed 's/^/      /' "$fleet_dir/remote.log" | tail -5
			fin "$h" journalctl --no-pager -u systemd-journal-upload.service -n 5 | sed 's/^/      /'
			return
		fi
	done
	files=$(cd "$fleet_rdir" && ls)
	want=$(printf 'remote-127.0.0.1.journal\nremote-::1.journal')
	ok=1
	for h in a b; do
		local file=remote-127.0.0.1.journal
		[ "$h" = b ] && file=remote-::1.journal
		got=$(journalctl --file="$fleet_rdir/$file" -o json --output-fields=_MACHINE_ID --no-pager 2>/dev/null | jq -r ._MACHINE_ID | sort -u | tr '\n' ' ')
		[ "$got" = "${fleet_mid[$h]} " ] || { ok= && note "$file: machine IDs $got, want ${fleet_mid[$h]}"; }
	done
	if [ "$files" = "$want" ] && [ -n "$ok" ]; then
		pass "fleet: the collector files each host apart: $(tr '\n' ' ' <<<"$files")each holding its host's machine ID only"
	else
		fail "fleet: the collector files each host apart (files: $(tr '\n' ' ' <<<"$files"))"
	fi

	keys_a=$(fleet_local a)
	keys_b=$(fleet_local b)
	fleet_check "host a by UUID" "$keys_a" --uuid="${fleet_uuid[a]}"
	fleet_check "host b by UUID" "$keys_b" --uuid="${fleet_uuid[b]}"
	fleet_check "host a by ID and machine" "$keys_a" "$fleet_id" --machine="${fleet_mid[a]}"
	fleet_check "host b by ID and machine" "$keys_b" "$fleet_id" --machine="${fleet_mid[b]}"
	fleet_check "control: by ID alone, both hosts" "$(printf '%s\n%s\n' "$keys_a" "$keys_b" | sort)" "$fleet_id"

	fleet_outage
}

# fleet_check NAME WANT ARGS...: contidctl events ARGS on the collector
# lists exactly the entries WANT.
fleet_check() {
	local name=$1 want=$2 got
	shift 2
	got=$(fleet_events "$@")
	if [ -n "$want" ] && [ "$got" = "$want" ]; then
		pass "fleet: contidctl events $* on the collector ($name): exactly the $(wc -l <<<"$got") entries wanted from the hosts' own journals"
	else
		fail "fleet: contidctl events $* on the collector ($name): $(grep -c . <<<"$got") entries, want $(grep -c . <<<"$want")"
		diff <(echo "$want") <(echo "$got") | head -10 | sed 's/^/      /'
	fi
}

# fleet_check_resent NAME WANT UUID: like fleet_check by UUID, after an
# outage: journal-upload saves its cursor only when a request succeeded,
# so it sends again what a collector stopped in the middle of a request
# had already stored, and contidctl events --directory folds those
# repeats. It must list exactly the wanted entries, each once; how many
# of them the collector's files hold twice (journalctl -D, unfolded) is
# shown, not failed.
fleet_check_resent() {
	local name=$1 want=$2 uuid=$3 got raw twice
	got=$(fleet_events --uuid="$uuid")
	raw=$(journalctl -D "$fleet_rdir" --no-pager -o json _SYSTEMD_UNIT=contidd.service "AUDIT_CONTAINER_UUID=$uuid" 2>/dev/null | fleet_keys)
	twice=$(($(grep -c . <<<"$raw") - $(sort -u <<<"$raw" | grep -c .)))
	if [ -n "$want" ] && [ "$got" = "$(sort <<<"$want")" ]; then
		pass "fleet: contidctl events --uuid=$uuid on the collector ($name): exactly the $(wc -l <<<"$got") entries wanted from the host's own journal, each once; the collector's files hold $twice of them twice (journal-upload's resend, folded)"
	else
		fail "fleet: contidctl events --uuid=$uuid on the collector ($name): $(grep -c . <<<"$got") entries, $(sort -u <<<"$got" | grep -c .) distinct, want $(grep -c . <<<"$want") each once (the files hold $twice twice)"
		diff <(sort <<<"$want") <(echo "$got") | head -10 | sed 's/^/      /'
	fi
}

fleet_outage() {
	local m=$fleet_tag-load pause=0.07 t0 restarts total distinct serials local_n b_state
	fleet_exec a "$fleet_load" "$m" "$pause"
	t0=$(date +%s)
	sleep 3
	fleet_remote_stop
	log "collector stopped for ${fleet_outage}s during $fleet_load execs"
	sleep "$fleet_outage"
	if ! fleet_remote_start; then
		fail "fleet: journal-remote starts again after the outage"
		return
	fi
	log "collector started again after $(($(date +%s) - t0 - 3))s"
	if ! wait_for 60 "host a's journal to hold $fleet_load exec records" fleet_count_local "$m" "$fleet_load"; then
		fail "fleet outage: host a's journald stored $(fleet_local_execs "$m" | wc -l) of $fleet_load exec records"
		return
	fi
	wait_for 60 "the collector to hold host a's $fleet_load exec records" fleet_count_remote "$m" "$fleet_load"
	restarts=$(fin a systemctl show -p NRestarts --value systemd-journal-upload.service)
	fleet_remote_execs "$m" >"$fleet_dir/load"
	total=$(wc -l <"$fleet_dir/load")
	distinct=$(awk '{ print $1 }' "$fleet_dir/load" | sort -u | wc -l)
	serials=$(awk '{ print $2 }' "$fleet_dir/load" | sort -u | wc -l)
	local_n=$(fleet_local_execs "$m" | sort -u | wc -l)
	if [ "$distinct" = "$fleet_load" ] && [ "$serials" = "$fleet_load" ] && [ "$local_n" = "$fleet_load" ] &&
		[ "${restarts:-0}" -gt 0 ] && fin a systemctl -q is-active systemd-journal-upload.service; then
		pass "fleet outage: collector stopped ${fleet_outage}s during $fleet_load execs in host a's container: $distinct distinct execs from host a on the collector ($((total - distinct)) stored twice by journal-upload's resend), $serials distinct audit serials, as in host a's journal; its journal-upload (RestartSec=3s) restarted $restarts times and is active"
	else
		fail "fleet outage: $total exec records from host a on the collector, $distinct distinct execs, $serials distinct serials, want $fleet_load each (host a's journal: $local_n; journal-upload NRestarts=$restarts)"
		fin a journalctl --no-pager -u systemd-journal-upload.service -n 5 | sed 's/^/      /'
	fi
	fleet_check_resent "host a by UUID, after the outage" "$(fleet_local a)" "${fleet_uuid[a]}"
	b_state=$(fin b systemctl is-active systemd-journal-upload.service)
	if [ "$b_state" = failed ] && fin b journalctl --no-pager -o cat -u systemd-journal-upload.service | grep -q 'Start request repeated too quickly'; then
		pass "control: host b's journal-upload.service with systemd's default RestartSec hit the start limit in the outage and is still $b_state"
	else
		fail "control: host b's journal-upload.service with systemd's default RestartSec: $b_state after the outage, want failed by the start limit"
		fin b systemctl status --no-pager systemd-journal-upload.service | head -5 | sed 's/^/      /'
	fi
}

fleet_run
fleet_cleanup

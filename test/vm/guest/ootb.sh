# shellcheck shell=bash
# Sourced by suite.sh. run_ootb: contid works out of the box. Right after
# `dpkg -i`, with /etc/contid/contid.conf as the package ships it (its
# defaults load the audit rules, execve among them, and autotag
# machine.slice), `machinectl start` boots a container and a command runs
# in it: its exec must be in contidd's journal under the container's name
# (AUDIT_CONTAINER_NAME). It runs before any other check changes state.
#
# The image holds no copy of /usr: it binds the guest's read-only, with
# merged-usr symlinks, an os-release and a minimal /etc. Its .nspawn file
# carries container settings only: no user namespace and no veth (the
# guest has no network to give it), a private network namespace instead;
# and a runtime drop-in tells its nspawn unit the cgroup mode a full image
# would show.
# The command runs through `systemd-run -M`, which needs the container's
# own system bus: the guest's dbus, from the bound /usr, starts there at
# boot like on any Debian, so the image only needs the messagebus user.

OOTB_NAME=contid-ootb
OOTB_IMAGE=/var/lib/machines/$OOTB_NAME
OOTB_NSPAWN=/etc/systemd/nspawn/$OOTB_NAME.nspawn
OOTB_UNIT=systemd-nspawn@$OOTB_NAME.service
OOTB_DROPIN_DIR=/run/systemd/system/$OOTB_UNIT.d
# Time budget (TCG): boot and registration, the container's bus, and the
# journal entry, each bounded.
OOTB_BOOT_WAIT=${OOTB_BOOT_WAIT:-180}
OOTB_BUS_WAIT=${OOTB_BUS_WAIT:-120}
OOTB_JOURNAL_WAIT=${OOTB_JOURNAL_WAIT:-120}

ootb_make_image() {
	local d
	rm -rf --one-file-system "$OOTB_IMAGE"
	mkdir -p "$OOTB_IMAGE"/{usr,etc,var/tmp,var/log,root,proc,sys,dev,run,tmp} /etc/systemd/nspawn || return 1
	for d in bin sbin lib lib64; do
		ln -s "usr/$d" "$OOTB_IMAGE/$d" || return 1
	done
	cp -L /etc/os-release "$OOTB_IMAGE/etc/os-release" || return 1
	cat >"$OOTB_IMAGE/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/bin/bash
		messagebus:x:100:101::/nonexistent:/usr/sbin/nologin
		nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
	EOF
	cat >"$OOTB_IMAGE/etc/group" <<-'EOF'
		root:x:0:
		messagebus:x:101:
		nogroup:x:65534:
	EOF
	echo "$OOTB_NAME" >"$OOTB_IMAGE/etc/hostname"
	systemd-id128 new >"$OOTB_IMAGE/etc/machine-id" || return 1
	# nspawn picks the container's cgroup mode from the systemd it finds in
	# the image before it binds /usr, so here it would find none and fall
	# back to the legacy hierarchy: say what a full image would show.
	mkdir -p "$OOTB_DROPIN_DIR" || return 1
	printf '[Service]\nEnvironment=SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1\n' >"$OOTB_DROPIN_DIR/ootb.conf"
	systemctl daemon-reload || return 1
	cat >"$OOTB_NSPAWN" <<-'EOF'
		# contid's out-of-the-box check (VM tier): container settings only.
		[Exec]
		PrivateUsers=no

		[Files]
		BindReadOnly=/usr

		[Network]
		VirtualEthernet=no
		Private=yes
	EOF
}

ootb_cleanup() {
	local i
	machinectl terminate "$OOTB_NAME" >/dev/null 2>&1
	systemctl stop "$OOTB_UNIT" >/dev/null 2>&1
	for ((i = 0; i < 60; i++)); do
		systemctl is-active -q "$OOTB_UNIT" || break
		sleep 1
	done
	systemctl reset-failed "$OOTB_UNIT" >/dev/null 2>&1
	rm -f "$OOTB_NSPAWN"
	if [[ -d $OOTB_DROPIN_DIR ]]; then
		rm -rf "$OOTB_DROPIN_DIR"
		systemctl daemon-reload
	fi
	# Only once nothing runs in it: /usr is bound in the container's own
	# mount namespace, never on the guest's, and --one-file-system keeps
	# rm on the image's file system whatever happens.
	if systemctl is-active -q "$OOTB_UNIT"; then
		say "ootb: $OOTB_UNIT still active after 60 s; image $OOTB_IMAGE left in place"
	else
		rm -rf --one-file-system "$OOTB_IMAGE"
	fi
}

# ootb_why prints what a failure needs to be understood: was the machine
# registered, tagged, named; which rules the kernel holds.
ootb_why() {
	local leader
	leader=$(machinectl show --property=Leader --value "$OOTB_NAME" 2>/dev/null)
	echo "machines: $(machinectl list --no-legend 2>&1 | tr -s ' \n' ' ')"
	echo "unit $OOTB_UNIT: $(systemctl is-active "$OOTB_UNIT" 2>&1), cgroup $(systemctl show -P ControlGroup "$OOTB_UNIT" 2>&1)"
	echo "leader ${leader:-?}: container '$([[ -n $leader ]] && container_of "$leader")'"
	echo "contidctl status $OOTB_NAME: $(contidctl status "$OOTB_NAME" 2>&1 | tr -s ' \n' ' ')"
	echo "contidctl status: $(contidctl status 2>&1 | grep -iE 'rule|audit|mode|socket' | tr -s ' \n' ' ')"
	echo "auditctl -l: $(auditctl -l 2>&1 | grep -c -e '-S .*execve') execve rules, $(auditctl -l 2>&1 | wc -l) in all"
	echo "contidd: $(journalctl -q --no-pager -u contidd.service -b -o cat 2>/dev/null | grep -iE 'machine|tag|rule|error|fail' | tail -n 4 | tr '\n' ' ')"
	echo "nspawn: $(journalctl -q --no-pager -u "$OOTB_UNIT" -b -o cat 2>/dev/null | tail -n 4 | tr '\n' ' ')"
}

run_ootb() {
	selected ootb || return 0
	local log=$LOGS/ootb.log began started next marker state="" out rc cid entry="" detail
	began=$SECONDS
	say "ootb: machinectl start $OOTB_NAME with contid as installed"
	if ! dpkg-query -W -f='${Status}' contid 2>/dev/null | grep -q 'install ok installed'; then
		result ootb FAIL "contid was not installed from its .deb: nothing to check out of the box"
		return
	fi
	# "Nothing else was configured": the conffiles are the package's.
	out=$(dpkg --verify contid 2>&1)
	if [[ -n $out ]]; then
		result ootb FAIL "contid's installed files differ from the package: $(tr '\n' ' ' <<<"$out")"
		return
	fi
	if ! ootb_make_image >"$log" 2>&1; then
		result ootb FAIL "could not build the image $OOTB_IMAGE: $(tail -n 2 "$log" | tr '\n' ' ')"
		ootb_cleanup
		return
	fi
	out=$(timeout "$OOTB_BOOT_WAIT" machinectl start "$OOTB_NAME" 2>&1)
	rc=$?
	echo "machinectl start $OOTB_NAME: exit $rc: $out" >>"$log"
	if ((rc != 0)); then
		result ootb FAIL "machinectl start $OOTB_NAME: exit $rc: $out: $(ootb_why | tr '\n' ' ')"
		ootb_cleanup
		return
	fi
	# Each probe takes seconds under TCG: the bounds are in time, not turns.
	next=$SECONDS
	while ((SECONDS - began < OOTB_BOOT_WAIT)); do
		state=$(machinectl show --property=State --value "$OOTB_NAME" 2>/dev/null)
		[[ $state == running ]] && break
		systemctl is-failed -q "$OOTB_UNIT" && break
		if ((SECONDS >= next)); then
			say "ootb: waiting for $OOTB_NAME to run (machine state '${state}', unit $(systemctl is-active "$OOTB_UNIT"), $((SECONDS - began)) s)"
			next=$((SECONDS + 15))
		fi
		sleep 1
	done
	if [[ $state != running ]]; then
		result ootb FAIL "machinectl start did not bring $OOTB_NAME up (state '${state}'): $(ootb_why | tr '\n' ' ')"
		ootb_cleanup
		return
	fi
	say "ootb: $OOTB_NAME runs, leader $(machinectl show --property=Leader --value "$OOTB_NAME"), $((SECONDS - began)) s"
	# The container's bus comes up with its boot: retry until it answers.
	marker=contid-ootb-$RANDOM$RANDOM
	started=$SECONDS next=$SECONDS
	while :; do
		out=$(timeout 60 systemd-run -M "$OOTB_NAME" --wait -q /usr/bin/true "$marker" 2>&1)
		rc=$?
		echo "systemd-run -M $OOTB_NAME: exit $rc: $out" >>"$log"
		((rc == 0)) && break
		if ((SECONDS - started > OOTB_BUS_WAIT)); then
			result ootb FAIL "systemd-run -M $OOTB_NAME never ran the command in ${OOTB_BUS_WAIT} s (last: exit $rc, $out): $(ootb_why | tr '\n' ' ')"
			ootb_cleanup
			return
		fi
		if ((SECONDS >= next)); then
			say "ootb: waiting for $OOTB_NAME's bus (systemd-run: ${out:-exit $rc}, $((SECONDS - started)) s)"
			next=$((SECONDS + 15))
		fi
		sleep 2
	done
	say "ootb: ran /usr/bin/true $marker in $OOTB_NAME; waiting for contidd's entry"
	started=$SECONDS next=$((SECONDS + 15))
	while ((SECONDS - started < OOTB_JOURNAL_WAIT)); do
		# Only contidd's own entries count: anyone may log such fields. The
		# exec itself, not the guest's systemd-run that names the marker too.
		entry=$(journalctl -q --no-pager SYSLOG_IDENTIFIER=contidd _SYSTEMD_UNIT=contidd.service \
			AUDIT_CONTAINER_NAME="$OOTB_NAME" -o json 2>/dev/null |
			grep -F "\"AUDIT_EXECVE_ARGV\":\"/usr/bin/true $marker\"" | head -n1)
		[[ -n $entry ]] && break
		if ((SECONDS >= next)); then
			say "ootb: no entry yet for $marker under AUDIT_CONTAINER_NAME=$OOTB_NAME ($((SECONDS - started)) s)"
			next=$((SECONDS + 15))
		fi
		sleep 1
	done
	if [[ -n $entry ]]; then
		echo "$entry" >>"$log"
		cid=$(grep -o '"AUDIT_CONTAINER_ID":"[0-9]*"' <<<"$entry" | grep -o '[0-9]*')
		detail="machinectl start $OOTB_NAME, systemd-run -M: contidd's entry under AUDIT_CONTAINER_NAME=$OOTB_NAME, container $cid: $(grep -oE '"(AUDIT_EVENT_ID|AUDIT_EVENT_TYPES|AUDIT_CONTAINER_UNIT|AUDIT_CONTAINER_MANAGER|AUDIT_EXECVE_ARGV)":"[^"]*"' <<<"$entry" | tr '\n' ' ')"
		result ootb PASS "${detail% } ($((SECONDS - began)) s)"
	else
		# Did the kernel audit it at all (auditd's log), was it attributed
		# under another name or none?
		detail="exec of $marker not under AUDIT_CONTAINER_NAME=$OOTB_NAME in ${OOTB_JOURNAL_WAIT} s"
		grep -qF "$marker" /var/log/audit/audit.log 2>/dev/null && detail+="; auditd's log has it" || detail+="; not in auditd's log either"
		out=$(journalctl -q --no-pager SYSLOG_IDENTIFIER=contidd -o json 2>/dev/null | grep -F "$marker" | grep -oE '"AUDIT_CONTAINER_(ID|NAME)":"[^"]*"' | tr '\n' ' ')
		detail+="; contidd's entries with it: ${out:-none}"
		result ootb FAIL "$detail: $(ootb_why | tr '\n' ' ')"
	fi
	ootb_cleanup
}

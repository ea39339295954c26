# shellcheck shell=bash
# Per-container exceptions to enforcing mode (the AllowBPF tag option).
# Sourced by suite.sh. A scope of contid-vm-nest.slice (no autotag) is
# tagged by the host once it runs, with AllowNesting and, in the granted
# role, AllowBPF; inside, root loads a BPF program twice, then makes a
# child cgroup, asks for it to be tagged with AllowBPF and loads a
# program in it. Granted: every load passes, the child is granted, the
# journal records the first use of each container once (op=allow) and
# the grant at tag time. Plain (the control): the loads fail with EPERM
# and the child's AllowBPF is refused, for its parent lacks it.

atk_grant_probe() {
	local i mycg reply y
	for ((i = 0; i < 60; i++)); do
		[[ -e $NEST_GO ]] && break
		sleep 0.5
	done
	echo "container now: $(container_of $$)"
	"$PROBE" bpf-prog-load
	echo "load1: $?"
	"$PROBE" bpf-prog-load
	echo "load2: $?"
	mycg=$(sed -n 's/^0:://p' /proc/self/cgroup)
	mkdir "$CGROOT$mycg/child" || return 1
	reply=$(busctl call "${MANAGER[@]}" TagCgroup 'sta{sv}' "$mycg/child" 0 1 AllowBPF b true 2>&1)
	y=$(sed -n 's|^to \([0-9]*\) .*|\1|p' <<<"$reply")
	if [[ -n $y ]]; then
		echo "child: $y"
		"$PROBE" clone-into-cgroup "$CGROOT$mycg/child" "$PROBE" bpf-prog-load
		echo "child-load: $?"
	else
		echo "child-refused: $reply"
	fi
	rmdir "$CGROOT$mycg/child"
	return 0
}

# grant_uses CURSOR CID: how many op=allow entries contidd wrote for
# container CID.
grant_uses() {
	journal_entries "$1" "$2" 'MESSAGE_ID=4b65d40fd0504798aad020cbbfd3d5d9' | grep -c 'AUDIT_OP=allow$'
}

run_grants() {
	local name=grants verdict=PASS role unit log cur x y opts a="" c="" n ny prop i bg rc
	selected "$name" || return 0
	say "per-container AllowBPF"
	export NEST_GO=$SCRATCH/grant-go CGROOT=$CG
	for role in granted plain; do
		rm -f "$NEST_GO"
		SCOPE_N=$((SCOPE_N + 1))
		unit=contid-vm-grant-$role-$SCOPE_N.scope
		log=$(log_of grants "$role")
		cur=$(journal_cursor)
		ROLE=$role timeout 120 systemd-run --quiet --collect --scope --slice=contid-vm-nest.slice \
			--unit="$unit" -- "$SELF" __attack grant_probe >"$log" 2>&1 &
		bg=$!
		for ((i = 0; i < 40; i++)); do
			systemctl is-active -q "$unit" && break
			sleep 0.5
		done
		[[ $role == granted ]] && opts=(2 AllowNesting b true AllowBPF b true) || opts=(1 AllowNesting b true)
		x=$(busctl call "${MANAGER[@]}" TagUnit 'sta{sv}' "$unit" 0 "${opts[@]}" 2>&1)
		echo "host TagUnit: $x" >>"$log.host"
		x=$(sed -n 's|^to \([0-9]*\) .*|\1|p' <<<"$x")
		prop=""
		[[ -n $x ]] && prop=$(busctl get-property org.contid1 "/org/contid1/container/$x" org.contid1.Container AllowBPF 2>&1)
		touch "$NEST_GO"
		wait "$bg"
		rc=$?
		y=$(sed -n 's/^child: \([0-9][0-9]*\)$/\1/p' "$log")
		if [[ -z $x ]]; then
			verdict=FAIL
			[[ $role == granted ]] && a="host could not tag: $(cat "$log.host")" || c="host could not tag: $(cat "$log.host")"
			continue
		fi
		if [[ $role == granted ]]; then
			a="container $x (AllowBPF $prop)"
			if grep -qx 'load1: 0' "$log" && grep -qx 'load2: 0' "$log"; then a+=": 2 loads ok"; else
				a+=": load FAILED ($(grep -m1 '^denied' "$log"))"
				verdict=FAIL
			fi
			[[ $prop == 'b true' ]] || verdict=FAIL
			if [[ -n $y ]] && grep -qx 'child-load: 0' "$log"; then a+=", child $y granted and loaded"; else
				a+=", child FAILED ($(grep -m1 -e '^child' -e '^denied' "$log" | tail -n1))"
				verdict=FAIL
			fi
			for ((i = 0; i < 60; i++)); do
				n=$(grant_uses "$cur" "$x")
				((n > 0)) && break
				sleep 1
			done
			sleep 2
			n=$(grant_uses "$cur" "$x")
			ny=$(grant_uses "$cur" "${y:-none}")
			a+=", op=allow entries: $n for $x, $ny for ${y:-?}"
			((n == 1 && ny == 1)) || verdict=FAIL
			if journalctl -q --no-pager --after-cursor="$cur" SYSLOG_IDENTIFIER=contidd -o cat |
				grep -q "Container $x (.*) was granted AllowBPF"; then a+=", grant logged"; else
				a+=", NO grant notice"
				verdict=FAIL
			fi
			if wait_signal "$x"; then
				a+=", but a TamperDenied signal came"
				verdict=FAIL
			fi
		else
			c="container $x (AllowBPF $prop)"
			[[ $prop == 'b false' ]] || verdict=FAIL
			if grep -qx 'load1: 1' "$log" && grep -qiE 'denied: .*operation not permitted' "$log"; then c+=": load EPERM"; else
				c+=": load NOT refused with EPERM ($(grep -m1 -e '^load1' -e '^ok' "$log"))"
				verdict=FAIL
			fi
			# busctl prints AccessDenied as "Access denied"; contidd's
			# log says why.
			if [[ -z $y ]] && grep -q '^child-refused: Call failed: Access denied' "$log" &&
				journalctl -q --no-pager --after-cursor="$cur" SYSLOG_IDENTIFIER=contidd -o cat |
				grep -q "caller's container $x was not tagged with AllowBPF"; then
				c+=", child's AllowBPF refused (AccessDenied: container $x was not tagged with AllowBPF)"
			else
				c+=", child NOT refused: $(grep -m1 '^child' "$log")"
				verdict=FAIL
			fi
			if wait_journal "$cur" "$x" 'AUDIT_OPERATION=bpf_prog_load'; then c+=", denial journaled"; else
				c+=", NO denial in the journal"
				verdict=FAIL
			fi
		fi
		((rc == 0)) || { verdict=FAIL; a+=" (scope exit $rc)"; }
	done
	result "$name" "$verdict" "with AllowBPF: ${a} | without: ${c}"
}

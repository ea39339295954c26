# Sourced by run.sh (needs its in_ct, wait_for, pass, fail, note, work,
# leader and manager): polkit asks for a password the way systemctl has it
# asked. A user whom a rule lets tag after an administrator's
# authentication (AUTH_ADMIN) runs `contidctl tag-cgroup` on a terminal:
# contidctl sets ALLOW_INTERACTIVE_AUTHORIZATION and starts pkttyagent,
# polkit asks for the administrator's password there, a script types it,
# and the tag is granted. The control: the same user with
# --no-ask-password is refused with "Interactive authentication
# required.", and nothing is tagged. Both on the system bus and on the
# peer-to-peer socket. The user runs in a service, in no logind session,
# which is what needs pkttyagent's --process. The terminal is
# script(1)'s; its input is a FIFO this side writes into once the prompt
# is on the screen (pkttyagent turns echo off with TCSAFLUSH, which drops
# typed-ahead input). Time budget: about 15 s.

ask_user=contidask
ask_admin=contidadm
ask_pw=contid-systest-$$-pw
ask_dir=/run/contid-systest-ask

ask_setup() {
	in_ct useradd --create-home "$ask_user" &&
		in_ct useradd --create-home "$ask_admin" &&
		printf '%s:%s\n' "$ask_admin" "$ask_pw" | in_ct chpasswd &&
		in_ct mkdir -p "$ask_dir" && in_ct chown "$ask_user:" "$ask_dir" &&
		in_ct mkfifo -m 0600 "$ask_dir/in" && in_ct chown "$ask_user:" "$ask_dir/in" &&
		in_ct sh -c "cat >/etc/polkit-1/rules.d/10-contid-systest.rules" <<EOF
// The administrator whose password polkit asks for, for this action only.
polkit.addAdminRule(function(action, subject) {
	if (action.id == "org.contid1.tag")
		return ["unix-user:$ask_admin"];
});
polkit.addRule(function(action, subject) {
	if (action.id == "org.contid1.tag" && subject.user == "$ask_user")
		return polkit.Result.AUTH_ADMIN;
});
EOF
	local rc=$?
	sleep 1 # polkitd, if it runs, rereads its rules on a change
	return $rc
}

# ask_run NAME ANSWER ARGS...: runs `contidctl ARGS...` as $ask_user on a
# terminal, in a transient service of the container (contidd places its
# callers by their cgroup). With ANSWER=yes it types the password once the
# prompt shows. Sets ask_rc (contidctl's exit status) and ask_out (what
# the terminal showed).
ask_run() {
	local name=$1 answer=$2 ts=$ask_dir/$1.typescript root=/proc/$leader/root svc
	shift 2
	# Held open read-write here, so script's read of its input neither
	# waits for a writer nor sees end-of-file before the end.
	exec 7<>"$root$ask_dir/in"
	in_ct systemd-run --quiet --wait --collect --service-type=exec --unit="contid-systest-ask-$name" \
		--uid="$ask_user" --gid="$ask_user" --setenv=TERM=dumb \
		/bin/sh -c 'exec script -qfec "$0" "$1" <"$2" >/dev/null' \
		"contidctl $*" "$ts" "$ask_dir/in" </dev/null >/dev/null 2>&1 &
	svc=$!
	if [ "$answer" = yes ]; then
		if wait_for 20 "the password prompt" grep -q 'Password:' "$root$ts"; then
			# Past the prompt pkttyagent still turns echo off, which
			# drops input typed before it.
			sleep 1
			printf '%s\n' "$ask_pw" >&7
		fi
	fi
	wait "$svc"
	ask_rc=$?
	exec 7>&-
	# Without carriage returns and pkttyagent's colours.
	ask_out=$(tr -d '\r' <"$root$ts" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g')
}

# ask_tagged: whether contidd lists a container at the scope's cgroup.
ask_tagged() { in_ct busctl call "${manager[@]}" ListContainers 2>/dev/null | grep -qF "\"$ask_cg\""; }

# ask_case TRANSPORT [OPTION]: the control and the password on one
# transport, for a scope of its own. On the bus polkit is asked about the
# caller's bus name, on the socket about the process pinned at connect:
# either way it must find the agent contidctl registered for itself.
ask_case() {
	local transport=$1 scope=contid-systest-ask-$1.scope client agents
	shift
	in_ct systemd-run --quiet --scope --slice=system.slice --unit="$scope" \
		/bin/sh -c 'exec sleep 300' </dev/null >/dev/null 2>&1 &
	client=$!
	if ! wait_for 10 "$scope to run" in_ct systemctl -q is-active "$scope"; then
		fail "a scope $scope starts"
		return
	fi
	ask_cg=$(in_ct systemctl show -p ControlGroup --value "$scope")
	# The control: told not to ask, on the same terminal.
	ask_run "$transport-denied" no "$@" --no-ask-password tag-cgroup "$ask_cg"
	if [ "$ask_rc" != 0 ] && [[ $ask_out == *"Interactive authentication required."* ]] &&
		[[ $ask_out != *Password:* ]] && ! ask_tagged; then
		pass "$transport: user $ask_user with --no-ask-password on a terminal is refused, nothing tagged: $(grep -m 1 contidctl: <<<"$ask_out")"
	else
		fail "$transport: user $ask_user with --no-ask-password on a terminal is refused with 'Interactive authentication required.' (rc=$ask_rc)"
		note "$ask_out"
	fi
	ask_run "$transport-granted" yes "$@" tag-cgroup --name="asked-$transport" "$ask_cg"
	agents=$(in_ct pgrep -u "$ask_user" -c pkttyagent)
	ask_id=$(grep -x '[0-9][0-9]*' <<<"$ask_out" | tail -1)
	if [ "$ask_rc" = 0 ] && [[ $ask_out == *"AUTHENTICATING FOR org.contid1.tag"* ]] &&
		[[ $ask_out == *Password:* ]] && [ -n "$ask_id" ] && ask_tagged && [ "$agents" = 0 ]; then
		pass "$transport: user $ask_user on a terminal: pkttyagent asks for $ask_admin's password, a script types it, $ask_cg is tagged $ask_id, and the agent is gone afterwards"
		grep -E 'AUTHENTICATING|Authenticating as|COMPLETE' <<<"$ask_out" | sed 's/^/      /'
	else
		fail "$transport: user $ask_user on a terminal is asked for a password and then tagged (rc=$ask_rc, id '$ask_id', agents left: $agents)"
		note "$ask_out"
		in_ct journalctl -b --no-pager -n 15 -u polkit.service -u contidd.service | sed 's/^/      /'
	fi
	in_ct systemctl stop "$scope" >/dev/null 2>&1
	wait "$client" 2>/dev/null
}

if ! ask_setup >"$work/ask.log" 2>&1; then
	fail "a user, an administrator with a password and a polkit rule are set up"
	sed 's/^/      /' "$work/ask.log"
else
	ask_case bus
	ask_case p2p --p2p=/run/contid/bus
fi
in_ct rm -f /etc/polkit-1/rules.d/10-contid-systest.rules

# shellcheck shell=bash
# Sourced by suite.sh. run_managers: a container that podman starts is
# named by contid's OCI hook with its podman name, from its very first
# exec. podman puts the container in machine.slice/libpod-<ID>.scope,
# which the kernel autotags at mkdir; the hook (createRuntime stage, run
# by crun before the payload's first exec) names that container.
#
#   managers-podman    `podman run --rootfs DIR --name pweb`: contidd's
#                      entries for its init (the first exec) and a later
#                      exec carry AUDIT_CONTAINER_NAME=pweb and
#                      AUDIT_CONTAINER_MANAGER=podman, the container's first
#                      exec entry is named, `contidctl list` names it, and
#                      conmon's own scope is no container
#   managers-nohook    control: without the hook file the container still
#                      runs and its execs are attributed, but not to pweb's
#                      kind of name: the name comes from the hook alone
#   managers-down      contidd and its socket stopped (and masked, so that
#                      neither D-Bus nor socket activation brings them
#                      back): podman run still starts the container, within
#                      the hook's bound, and the hook logs the miss
#   managers-scope-unit
#                      `systemd-run --scope --slice=machine.slice --unit=U`:
#                      every entry of that autotagged container, its first
#                      exec's included, carries AUDIT_CONTAINER_UNIT=U.scope
#   managers-docker    `docker run -d --name dweb`: Docker runs no OCI
#                      hooks, so contidd's Docker follower takes the name
#                      from the Engine API's create event. The kernel
#                      autotagged system.slice/docker-<ID>.scope at mkdir
#                      (AutotagScopes) and contidd named it then; the
#                      init's exec (the container's first) and a later one
#                      carry AUDIT_CONTAINER_NAME=dweb, MANAGER=docker,
#                      IMAGE and MANAGER_ID=the full Docker ID, in the same
#                      container, and `contidctl list` names it
#   managers-docker-samename
#                      podman runs a dweb beside Docker's: both recorded,
#                      each under its own ID and manager; contidctl
#                      refuses the name alone (exit 2)
#   managers-docker-untagged
#                      control: with AutotagScopes= empty (a drop-in and a
#                      restart of contidd) the container still runs, its
#                      exec is audited (WriteUntagged=yes) but attributed
#                      to no container, and contidd says why it left it
#   managers-docker-catchup
#                      that container, still running when contidd starts
#                      again with the default AutotagScopes, is tagged and
#                      named from dockerd's list of running containers
#
# The image is a static busybox copied into a directory: no registry, no
# network. Docker imports the same directory as an image.

MGR_ROOTFS=/var/tmp/contid-vm-busybox
MGR_HOOK=/usr/share/containers/oci/hooks.d/contid.json
MGR_HOOK_AWAY=/var/tmp/contid-vm-hook.json
MGR_JOURNAL_WAIT=${MGR_JOURNAL_WAIT:-120}

mgr_rootfs() {
	local a
	rm -rf --one-file-system "$MGR_ROOTFS"
	mkdir -p "$MGR_ROOTFS"/{bin,proc,sys,dev,etc,tmp,run} || return 1
	cp /bin/busybox "$MGR_ROOTFS/bin/busybox" || return 1
	for a in sh true sleep cat; do
		ln -s busybox "$MGR_ROOTFS/bin/$a" || return 1
	done
	printf 'root:x:0:0:root:/:/bin/sh\n' >"$MGR_ROOTFS/etc/passwd"
	printf 'root:x:0:\n' >"$MGR_ROOTFS/etc/group"
}

# mgr_podman NAME FLAG CMD...: podman run (FLAG -d or --rm) with the
# test's fixed options, as
# from a login shell: podman keeps conmon in the caller's unit when it
# finds systemd's INVOCATION_ID (it runs as a service, like this suite),
# and otherwise gives conmon a scope of its own beside the container's,
# machine.slice/libpod-conmon-ID.scope, which must not become a container.
mgr_podman() {
	local name=$1 flag=$2
	shift 2
	# --rootfs is a switch: the first argument after the options is then
	# the root directory, and the rest the command.
	timeout 180 env -u INVOCATION_ID podman run --name "$name" --network=none --cgroup-manager=systemd "$flag" \
		--rootfs "$MGR_ROOTFS" "$@"
}

# mgr_entry MARKER [FIELD=VALUE...]: contidd's own entry for the exec
# whose argv holds MARKER (JSON), waiting up to MGR_JOURNAL_WAIT.
mgr_entry() {
	local marker=$1 started=$SECONDS entry
	shift
	while ((SECONDS - started < MGR_JOURNAL_WAIT)); do
		entry=$(journalctl -q --no-pager SYSLOG_IDENTIFIER=contidd _SYSTEMD_UNIT=contidd.service "$@" -o json 2>/dev/null |
			grep -F "$marker" | grep -F '"AUDIT_EXECVE_ARGV"' | head -n1)
		[[ -n $entry ]] && break
		sleep 1
	done
	printf '%s' "$entry"
}

# mgr_fields ENTRY: the fields a result line shows.
mgr_fields() {
	grep -oE '"AUDIT_(CONTAINER_ID|CONTAINER_NAME|CONTAINER_MANAGER|CONTAINER_MANAGER_ID|CONTAINER_IMAGE|CONTAINER_UNIT|EXECVE_ARGV)":"[^"]*"' <<<"$1" | tr '\n' ' '
}

# mgr_facts NAME: what podman passed, for the log: the OCI state's and the
# bundle's annotations, conmon's command line.
mgr_facts() {
	local id bundle
	id=$(podman inspect --format '{{.Id}}' "$1" 2>/dev/null)
	echo "podman id: $id"
	bundle=$(podman inspect --format '{{.StaticDir}}' "$1" 2>/dev/null)
	echo "bundle (StaticDir): $bundle"
	[[ -f $bundle/config.json ]] &&
		echo "config.json annotations: $(grep -o '"annotations":{[^}]*}' "$bundle/config.json")" &&
		echo "config.json cgroupsPath: $(grep -o '"cgroupsPath":"[^"]*"' "$bundle/config.json")" &&
		echo "config.json root: $(grep -o '"root":{[^}]*}' "$bundle/config.json")"
	local conmon="" pid
	[[ -n $id ]] && conmon=$(pgrep -f "conmon .*-c $id" | head -n1)
	[[ -n $conmon ]] || return 0
	MGR_CONMON_CG=$(sed -n 's/^0:://p' "/proc/$conmon/cgroup" 2>/dev/null)
	MGR_CONMON_CID=$([[ -n $conmon ]] && container_of "$conmon")
	echo "conmon ${conmon:-?}: $(tr '\0' ' ' <"/proc/$conmon/cmdline" 2>/dev/null)"
	echo "conmon cgroup: $(cat "/proc/$conmon/cgroup" 2>/dev/null | tr '\n' ' '), container '$([[ -n $conmon ]] && container_of "$conmon")'"
	pid=$(podman inspect --format '{{.State.Pid}}' "$1" 2>/dev/null)
	echo "init $pid cgroup: $(cat "/proc/$pid/cgroup" 2>/dev/null | tr '\n' ' '), container '$([[ -n $pid && $pid != 0 ]] && container_of "$pid")'"
	echo "podman annotations: $(podman inspect --format '{{json .Config.Annotations}}' "$1" 2>/dev/null)"
}

mgr_named() {
	local log=$LOGS/managers-podman.log marker rc out init child row mid cid first=""
	MGR_CONMON_CG="" MGR_CONMON_CID=""
	marker=pweb-$RANDOM$RANDOM
	podman rm -f pweb >/dev/null 2>&1
	# The init execs busybox with the marker in its argv; it then runs a
	# child exec with a second marker and stays up for contidctl list.
	# The child's marker is made at run time, so that the init's argv
	# (which holds the script) does not match it.
	# shellcheck disable=SC2016
	out=$(mgr_podman pweb -d /bin/busybox sh -c '/bin/busybox true "${0%-init}-kid"; exec /bin/busybox sleep 600' "$marker-init" 2>&1)
	rc=$?
	echo "podman run -d pweb: exit $rc: $out" >>"$log"
	mgr_facts pweb >>"$log" 2>&1
	if ((rc != 0)); then
		result managers-podman FAIL "podman run --name pweb: exit $rc: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
		return
	fi
	mid=$(podman inspect --format '{{.Id}}' pweb 2>/dev/null)
	init=$(mgr_entry "$marker-init" AUDIT_CONTAINER_NAME=pweb AUDIT_CONTAINER_MANAGER=podman)
	child=$(mgr_entry "$marker-kid" AUDIT_CONTAINER_NAME=pweb AUDIT_CONTAINER_MANAGER=podman)
	# No untagged window: the container's first exec contidd wrote at all
	# already carries the name.
	cid=$(grep -o '"AUDIT_CONTAINER_ID":"[0-9]*"' <<<"$init" | grep -o '[0-9]*')
	[[ -n $cid ]] && first=$(journalctl -q --no-pager SYSLOG_IDENTIFIER=contidd _SYSTEMD_UNIT=contidd.service \
		AUDIT_CONTAINER_ID="$cid" -o json 2>/dev/null | grep -F '"AUDIT_EXECVE_ARGV"' | head -n1)
	row=$(contidctl list --no-legend 2>&1 | awk '$2 == "pweb"')
	{
		echo "init entry: $init"
		echo "child entry: $child"
		echo "first entry of container ${cid:-?}: $first"
		echo "contidctl list: $(contidctl list 2>&1)"
		echo "contidctl status pweb: $(contidctl status pweb 2>&1)"
		journalctl -q --no-pager -b -t contid-oci-hook -o cat 2>&1 | tail -n 5
	} >>"$log"
	local why=""
	[[ -n $init ]] || why+="no entry for the init's exec ($marker-init) under AUDIT_CONTAINER_NAME=pweb AUDIT_CONTAINER_MANAGER=podman (under any: $(mgr_fields "$(mgr_entry "$marker-init")")); "
	[[ -n $child ]] || why+="no entry for the child exec ($marker-kid) under pweb; "
	[[ -n $init && $first != *'"AUDIT_CONTAINER_NAME":"pweb"'* ]] && why+="the container's first exec entry is not named pweb: $(mgr_fields "$first"); "
	[[ -n $init && $init != *"\"AUDIT_CONTAINER_MANAGER_ID\":\"$mid\""* ]] && why+="the init's entry lacks AUDIT_CONTAINER_MANAGER_ID=$mid; "
	# Run from a root directory, the container's image is that directory.
	[[ -n $init && $(mgr_field "$init" AUDIT_CONTAINER_IMAGE) != "$MGR_ROOTFS" ]] && why+="the init's AUDIT_CONTAINER_IMAGE is '$(mgr_field "$init" AUDIT_CONTAINER_IMAGE)', not $MGR_ROOTFS; "
	[[ $row == *" podman "* ]] || why+="contidctl list has no pweb row with manager podman (row: '$row'); "
	[[ -n $MGR_CONMON_CID ]] && why+="conmon ($MGR_CONMON_CG) is in container $MGR_CONMON_CID; "
	if [[ -z $why ]]; then
		result managers-podman PASS "init: $(mgr_fields "$init")| child: $(mgr_fields "$child")| list: $(tr -s ' ' <<<"$row")| conmon in ${MGR_CONMON_CG:-?}, no container"
	else
		result managers-podman FAIL "${why}hook log: $(journalctl -q --no-pager -b -t contid-oci-hook -o cat 2>&1 | tail -n 2 | tr '\n' ' ')"
	fi
	podman rm -f pweb >>"$log" 2>&1
}

mgr_nohook() {
	local log=$LOGS/managers-nohook.log marker rc out entry
	marker=pctl-$RANDOM$RANDOM
	if [[ ! -f $MGR_HOOK ]]; then
		result managers-nohook FAIL "the package did not install $MGR_HOOK"
		return
	fi
	mv "$MGR_HOOK" "$MGR_HOOK_AWAY" || return
	podman rm -f pctl >/dev/null 2>&1
	out=$(mgr_podman pctl --rm /bin/busybox sh -c "/bin/busybox true $marker" 2>&1)
	rc=$?
	mv "$MGR_HOOK_AWAY" "$MGR_HOOK"
	echo "podman run pctl without the hook: exit $rc: $out" >>"$log"
	entry=$(mgr_entry "$marker")
	echo "entry: $entry" >>"$log"
	if ((rc != 0)); then
		result managers-nohook FAIL "without the hook, podman run failed: exit $rc: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
	elif [[ -z $entry || $entry != *'"AUDIT_CONTAINER_ID":'* ]]; then
		result managers-nohook FAIL "without the hook, the container's exec was not attributed to any container"
	elif [[ $entry == *'"AUDIT_CONTAINER_NAME":"pctl"'* || $entry == *'"AUDIT_CONTAINER_MANAGER":"podman"'* ]]; then
		result managers-nohook FAIL "without the hook, the exec still carries podman's name or manager: $(mgr_fields "$entry")"
	else
		result managers-nohook PASS "without the hook: attributed, not named pctl: $(mgr_fields "$entry")"
	fi
}

mgr_down() {
	local log=$LOGS/managers-down.log rc out began took miss
	systemctl stop contidd.socket contidd.service >>"$log" 2>&1
	systemctl mask --runtime contidd.socket contidd.service >>"$log" 2>&1
	podman rm -f pdown >/dev/null 2>&1
	began=$(date +%s%N)
	out=$(mgr_podman pdown --rm /bin/busybox true 2>&1)
	rc=$?
	took=$((($(date +%s%N) - began) / 1000000))
	echo "podman run pdown with contidd down: exit $rc in $took ms: $out" >>"$log"
	miss=$(journalctl -q --no-pager -b -t contid-oci-hook -o cat 2>/dev/null | grep -F 'pdown' | tail -n1)
	echo "hook log: $miss" >>"$log"
	systemctl unmask --runtime contidd.socket contidd.service >>"$log" 2>&1
	systemctl start contidd.socket >>"$log" 2>&1
	restart_contidd
	if ((rc != 0)); then
		result managers-down FAIL "with contidd down, podman run failed: exit $rc: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
	elif [[ -z $miss ]]; then
		result managers-down FAIL "podman run started the container ($took ms) but the hook logged no miss under contid-oci-hook"
	else
		result managers-down PASS "podman run exit 0 in $took ms; hook logged: $miss"
	fi
}

MGR_DOCKER_IMAGE=contid-busybox
MGR_DOCKER_DROPIN=/etc/contid/contid.conf.d/50-contid-vm-docker.conf

# mgr_docker_ready: dockerd answers, and the busybox image is imported.
mgr_docker_ready() {
	local i
	systemctl start docker.service || return 1
	for ((i = 0; i < 60; i++)); do
		docker info >/dev/null 2>&1 && break
		sleep 1
	done
	docker info --format 'docker {{.ServerVersion}}, cgroup driver {{.CgroupDriver}} v{{.CgroupVersion}}' || return 1
	docker image inspect "$MGR_DOCKER_IMAGE" >/dev/null 2>&1 && return 0
	tar -C "$MGR_ROOTFS" -c . | timeout 180 docker import - "$MGR_DOCKER_IMAGE"
}

# mgr_docker NAME CMD...: docker run -d with the test's fixed options.
mgr_docker() {
	local name=$1
	shift
	timeout 180 docker run -d --name "$name" --network none "$MGR_DOCKER_IMAGE" "$@"
}

# mgr_wait_row NAME: contidctl list's row for NAME, waiting up to 60 s.
mgr_wait_row() {
	local started=$SECONDS row=""
	while ((SECONDS - started < 60)); do
		row=$(contidctl list --no-legend 2>/dev/null | awk -v n="$1" '$2 == n')
		[[ -n $row ]] && break
		sleep 1
	done
	printf '%s' "$row"
}

# mgr_field ENTRY FIELD: one field's value in a JSON journal entry.
mgr_field() { grep -oE "\"$2\":\"[^\"]*\"" <<<"$1" | head -n1 | sed -E 's/^"[^"]*":"(.*)"$/\1/'; }

mgr_docker_named() {
	local log=$LOGS/managers-docker.log marker rc out did cg row init late cid lcid why="" named_init=no
	marker=dweb-$RANDOM$RANDOM
	docker rm -f dweb >/dev/null 2>&1
	# shellcheck disable=SC2016
	out=$(mgr_docker dweb /bin/busybox sh -c 'exec /bin/busybox sleep 600' "$marker-init" 2>&1)
	rc=$?
	echo "docker run -d dweb: exit $rc: $out" >>"$log"
	if ((rc != 0)); then
		result managers-docker FAIL "docker run --name dweb: exit $rc: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
		return
	fi
	did=$(docker inspect --format '{{.Id}}' dweb 2>/dev/null)
	cg=$(sed -n 's/^0:://p' "/proc/$(docker inspect --format '{{.State.Pid}}' dweb 2>/dev/null)/cgroup" 2>/dev/null)
	# A later exec, once contidctl shows the name, must carry it too.
	row=$(mgr_wait_row dweb)
	docker exec dweb /bin/busybox true "$marker-late" >>"$log" 2>&1
	late=$(mgr_entry "\"AUDIT_EXECVE_ARGV\":\"/bin/busybox true $marker-late\"" AUDIT_CONTAINER_NAME=dweb AUDIT_CONTAINER_MANAGER=docker)
	# Untagged execs have no entry here (WriteUntagged=no), so the
	# docker command whose argv holds the marker too is not found.
	init=$(mgr_entry "$marker-init")
	cid=$(mgr_field "$init" AUDIT_CONTAINER_ID)
	lcid=$(mgr_field "$late" AUDIT_CONTAINER_ID)
	[[ $(mgr_field "$init" AUDIT_CONTAINER_NAME) == dweb ]] && named_init=yes
	{
		echo "docker id: $did, cgroup of its init: $cg"
		echo "init entry: $init"
		echo "late entry: $late"
		echo "contidctl list: $(contidctl list 2>&1)"
		echo "contidctl status dweb: $(contidctl status dweb 2>&1)"
		journalctl -q --no-pager -b _SYSTEMD_UNIT=contidd.service -o cat 2>&1 | grep -iE 'docker' | tail -n 8
	} >>"$log"
	[[ $cg == "/system.slice/docker-$did.scope" ]] || why+="the container's cgroup is '$cg', not /system.slice/docker-$did.scope; "
	[[ -n $row ]] || why+="contidctl list shows no dweb within 60 s; "
	[[ -n $row && $row != *" docker "* ]] && why+="contidctl list's dweb row has no manager docker: '$row'; "
	if [[ -z $late ]]; then
		why+="no entry for the later exec ($marker-late) under AUDIT_CONTAINER_NAME=dweb AUDIT_CONTAINER_MANAGER=docker (under any: $(mgr_fields "$(mgr_entry "$marker-late")")); "
	else
		[[ $(mgr_field "$late" AUDIT_CONTAINER_MANAGER_ID) == "$did" ]] || why+="the later exec's AUDIT_CONTAINER_MANAGER_ID is '$(mgr_field "$late" AUDIT_CONTAINER_MANAGER_ID)', not $did; "
		[[ $(mgr_field "$late" AUDIT_CONTAINER_IMAGE) == "$MGR_DOCKER_IMAGE" ]] || why+="the later exec's AUDIT_CONTAINER_IMAGE is '$(mgr_field "$late" AUDIT_CONTAINER_IMAGE)'; "
	fi
	[[ -n $cid ]] || why+="the init's exec ($marker-init) is attributed to no container: $(mgr_fields "$init"); "
	# No unnamed window: dockerd's create event gave the name before the
	# scope existed, so the kernel's autotag named the container at once.
	[[ -n $cid && $named_init != yes ]] && why+="the init's exec is not named dweb: $(mgr_fields "$init"); "
	[[ -n $cid && -n $lcid && $cid != "$lcid" ]] && why+="the init's exec is in container $cid, the later one in $lcid; "
	if [[ -z $why ]]; then
		result managers-docker PASS "container $cid in $cg; later exec: $(mgr_fields "$late")| init's exec in the same container, named: $named_init| list: $(tr -s ' ' <<<"$row")"
	else
		result managers-docker FAIL "$why"
	fi
	selected managers-docker-samename && mgr_docker_samename "$lcid"
	docker rm -f dweb >>"$log" 2>&1
}

# mgr_docker_samename DOCKER_CID: podman runs a "dweb" too, beside
# Docker's: both are recorded, each with its own ID and manager, and
# contidctl refuses the name alone.
mgr_docker_samename() {
	local log=$LOGS/managers-docker-samename.log out rc rows pcid show code
	podman rm -f dweb >/dev/null 2>&1
	out=$(mgr_podman dweb -d /bin/busybox sleep 600 2>&1)
	rc=$?
	echo "podman run -d dweb: exit $rc: $out" >>"$log"
	rows=$(contidctl list --no-legend 2>&1 | awk '$2 == "dweb"')
	pcid=$(awk '$4 == "podman" { print $1 }' <<<"$rows")
	show=$(contidctl show dweb 2>&1)
	code=$?
	printf 'rows:\n%s\ncontidctl show dweb: exit %s: %s\n' "$rows" "$code" "$show" >>"$log"
	if ((rc != 0)); then
		result managers-docker-samename FAIL "podman run --name dweb beside Docker's: exit $rc: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
	elif [[ -z $1 || -z $pcid || $pcid == "$1" || $(wc -l <<<"$rows") -ne 2 || $rows != *" docker "* ]]; then
		result managers-docker-samename FAIL "want two dweb rows, docker's container $1 and podman's another: $(tr '\n' '|' <<<"$rows")"
	elif ((code != 2)); then
		result managers-docker-samename FAIL "contidctl show dweb: exit $code, want 2: $show"
	else
		result managers-docker-samename PASS "docker's dweb is container $1, podman's $pcid; contidctl show dweb: $show"
	fi
	podman rm -f dweb >>"$log" 2>&1
}

# mgr_docker_untagged runs the control, then the catch-up check on the
# same container once contidd is back to its defaults.
mgr_docker_untagged() {
	local log=$LOGS/managers-docker-untagged.log marker rc out pid entry cid notice row
	marker=dctl-$RANDOM$RANDOM
	docker rm -f dctl >/dev/null 2>&1
	mkdir -p "$(dirname "$MGR_DOCKER_DROPIN")"
	printf '[Manager]\nAutotagScopes=\n[Audit]\nWriteUntagged=yes\n' >"$MGR_DOCKER_DROPIN"
	restart_contidd
	# shellcheck disable=SC2016
	out=$(mgr_docker dctl /bin/busybox sh -c 'while :; do /bin/busybox sleep 600; done' 2>&1)
	rc=$?
	echo "docker run -d dctl with AutotagScopes= empty: exit $rc: $out" >>"$log"
	pid=$(docker inspect --format '{{.State.Pid}}' dctl 2>/dev/null)
	# contidd's notice says the follower saw the start and left it.
	local started=$SECONDS
	while ((SECONDS - started < 60)); do
		notice=$(journalctl -q --no-pager -b _SYSTEMD_UNIT=contidd.service -o cat 2>/dev/null | grep -F 'Docker container dctl' | tail -n1)
		[[ -n $notice ]] && break
		sleep 1
	done
	docker exec dctl /bin/busybox true "$marker" >>"$log" 2>&1
	# The exec in the container, not the docker command that asked for
	# it: with WriteUntagged=yes both have entries.
	entry=$(mgr_entry "\"AUDIT_EXECVE_ARGV\":\"/bin/busybox true $marker\"")
	cid=$([[ -n $pid && $pid != 0 ]] && container_of "$pid")
	row=$(contidctl list --no-legend 2>/dev/null | awk '$2 == "dctl"')
	{
		echo "init pid $pid, cgroup $(cat "/proc/$pid/cgroup" 2>/dev/null), container '$cid'"
		echo "entry: $entry"
		echo "contidd: $notice"
	} >>"$log"
	rm -f "$MGR_DOCKER_DROPIN"
	if ((rc != 0)) || [[ $(docker inspect --format '{{.State.Running}}' dctl 2>/dev/null) != true ]]; then
		result managers-docker-untagged FAIL "docker run dctl: exit $rc, not running: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
	elif [[ -z $entry ]]; then
		result managers-docker-untagged FAIL "the exec in dctl ($marker) has no entry even with WriteUntagged=yes"
	elif [[ -n $(mgr_field "$entry" AUDIT_CONTAINER_ID) || -n $cid || -n $row ]]; then
		result managers-docker-untagged FAIL "with AutotagScopes= empty the container was attributed: entry $(mgr_fields "$entry"), init in '$cid', list '$row'"
	elif [[ -z $notice ]]; then
		result managers-docker-untagged FAIL "untagged, but contidd never said it left Docker container dctl"
	else
		result managers-docker-untagged PASS "runs untagged, exec audited unattributed: $(mgr_fields "$entry")| contidd: $notice"
	fi

	restart_contidd
	row=$(mgr_wait_row dctl)
	cid=$([[ -n $pid && $pid != 0 ]] && container_of "$pid")
	echo "after a restart with the defaults: row '$row', init in '$cid'" >>"$log"
	if ! selected managers-docker-catchup; then
		:
	elif [[ -n $row && $row == *" docker "* && -n $cid ]]; then
		result managers-docker-catchup PASS "running before contidd started: tagged and named: $(tr -s ' ' <<<"$row")"
	else
		result managers-docker-catchup FAIL "running before contidd started: not tagged or named (row '$row', init in '$cid'): $(journalctl -q --no-pager -b _SYSTEMD_UNIT=contidd.service -o cat 2>&1 | grep -F dctl | tail -n 2 | tr '\n' ' ')"
	fi
	docker rm -f dctl >>"$log" 2>&1
}

# docker_api METHOD PATH [BODY]: one Engine API request on /run/docker.sock
# (curl is not in the image; perl-base is).
docker_api() {
	perl -e '
use IO::Socket::UNIX;
my ($m, $p, $b) = @ARGV; $b //= "";
my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => "/run/docker.sock") or die "connect: $!";
print $s "$m $p HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: " . length($b) . "\r\n\r\n$b";
local $/; my $r = <$s>; $r =~ s/\r//g; print $r, "\n";' "$@"
}

# mgr_docker_attacks: a docker user's container named or imaged as
# another's. (a) `docker rename` then `docker restart`: contidd keeps the
# create event's name; a new container then takes the old name. (b) a
# container created by the API with no Config.Image and a label "image":
# dockerd copies labels into the event's attributes and sets "image" only
# when Config.Image is not empty.
mgr_docker_attacks() {
	local log=$LOGS/managers-docker-attacks.log did rows out cid
	docker rm -f drn1 drn2 dimg >/dev/null 2>&1
	mgr_docker drn1 /bin/busybox sleep 600 >>"$log" 2>&1
	did=$(docker inspect --format '{{.Id}}' drn1 2>>"$log")
	mgr_wait_row drn1 >/dev/null
	docker rename drn1 drn2 >>"$log" 2>&1
	docker restart -t 1 drn2 >>"$log" 2>&1
	mgr_docker drn1 /bin/busybox sleep 600 >>"$log" 2>&1
	sleep 5
	rows=$(contidctl list --no-legend 2>&1 | grep -E 'drn[12]')
	out=$(docker ps --format '{{.ID}} {{.Names}}' 2>&1 | grep drn | tr '\n' ';')
	if grep -q drn2 <<<"$rows"; then
		result managers-docker-rename PASS "docker: $out contid: $(tr -s ' \n' ' ;' <<<"$rows")"
	else
		result managers-docker-rename FAIL "renamed drn1 to drn2 ($did) and restarted it, then ran a new drn1; docker: $out contid rows: $(tr -s ' \n' ' ;' <<<"$rows"); contidctl show drn1: $(contidctl show drn1 2>&1 | tr -s ' \n' ' ;' | head -c 300)"
	fi
	out=$(docker_api POST /v1.41/containers/create?name=dimg '{"Image":"","Cmd":["/bin/busybox","sleep","600"],"Labels":{"image":"registry.example/forged:1","name":"forged-name"},"HostConfig":{"NetworkMode":"none","Binds":["'"$MGR_ROOTFS"'/bin:/bin:ro"]}}' 2>&1)
	echo "create dimg: $out" >>"$log"
	docker start dimg >>"$log" 2>&1
	sleep 5
	cid=$(docker inspect --format '{{.State.Pid}} {{.Config.Image}}|' dimg 2>&1)
	rows=$(contidctl list --no-legend 2>&1 | grep -E 'dimg|forged')
	if contidctl show dimg 2>&1 | grep -q forged; then
		result managers-docker-forged-image FAIL "created by the API with no image and label image=registry.example/forged:1; docker inspect: pid+image '$cid'; contidctl show dimg: $(contidctl show dimg 2>&1 | tr -s ' \n' ' ;' | head -c 400)"
	else
		result managers-docker-forged-image PASS "create: $(tail -n1 <<<"$out" | head -c 200); inspect '$cid'; rows: $(tr -s ' \n' ' ;' <<<"$rows"); show: $(contidctl show dimg 2>&1 | tr -s ' \n' ' ;' | head -c 300)"
	fi
	docker rm -f drn1 drn2 dimg >>"$log" 2>&1
}

# mgr_docker_biglabels: labels are the docker user's, and dockerd copies
# them into every event of the container and into the list of running
# containers. One label past 1 MiB breaks contidd's event stream (the
# event line bound); labels past 32 MiB over the running containers make
# the list fail, and contidd never follows the stream again while they
# run: a container started then is not named.
mgr_docker_biglabels() {
	local log=$LOGS/managers-docker-biglabels.log f=/var/tmp/contid-vm-biglabel i cur lost cannot row
	cur=$(journal_cursor)
	# The CLI reads a label file by line, 64 KiB at most: 150 labels of 60 KB.
	local v
	v=$(head -c 60000 /dev/zero | tr '\0' a)
	for i in $(seq 150); do echo "big$i=$v"; done >"$f"
	for i in 1 2 3 4; do
		docker rm -f "dbig$i" >/dev/null 2>&1
		timeout 180 docker run -d --name "dbig$i" --network none --label-file "$f" "$MGR_DOCKER_IMAGE" /bin/busybox sleep 600 >>"$log" 2>&1
	done
	sleep 5
	docker rm -f dvictim >/dev/null 2>&1
	mgr_docker dvictim /bin/busybox sleep 600 >>"$log" 2>&1
	sleep 20
	row=$(contidctl list --no-legend 2>/dev/null | awk '$2 == "dvictim"')
	lost=$(journalctl -q --no-pager --after-cursor="$cur" _SYSTEMD_UNIT=contidd.service -o cat 2>/dev/null | grep -c "Lost dockerd's event stream")
	cannot=$(journalctl -q --no-pager --after-cursor="$cur" _SYSTEMD_UNIT=contidd.service -o cat 2>/dev/null | grep -i "docker" | grep -v "^Docker container" | tail -n 3 | tr '\n' ';' | head -c 400)
	if [[ -z $row ]]; then
		result managers-docker-biglabels FAIL "4 containers with a 9 MB label running, then dvictim: not named after 20 s; stream lost $lost times; contidd: $cannot"
	else
		result managers-docker-biglabels PASS "dvictim named: $(tr -s ' ' <<<"$row"); stream lost $lost times; contidd: $cannot"
	fi
	docker rm -f dbig1 dbig2 dbig3 dbig4 dvictim >>"$log" 2>&1
	rm -f "$f"
}

run_docker() {
	selected managers-docker || selected managers-docker-samename || selected managers-docker-untagged ||
		selected managers-docker-catchup || selected managers-docker-attacks || return 0
	if ! command -v docker >/dev/null; then
		result managers-docker FAIL "docker.io is not in the guest image"
		return
	fi
	if ! mgr_docker_ready >"$LOGS/managers-docker-setup.log" 2>&1; then
		result managers-docker FAIL "dockerd or the image import failed: $(tail -n 3 "$LOGS/managers-docker-setup.log" | tr '\n' ' ')"
		return
	fi
	say "managers: $(head -n1 "$LOGS/managers-docker-setup.log")"
	{ selected managers-docker || selected managers-docker-samename; } && mgr_docker_named
	{ selected managers-docker-untagged || selected managers-docker-catchup; } && mgr_docker_untagged
	selected managers-docker-attacks && mgr_docker_attacks
	selected managers-docker-attacks && mgr_docker_biglabels
}

# mgr_scope_unit: a plain `systemd-run --scope --slice=machine.slice
# --unit=NAME`, autotagged at mkdir and named by no manager: every entry
# contidd wrote for it, from its first exec on, carries its unit.
mgr_scope_unit() {
	local log=$LOGS/managers-scope-unit.log unit marker entries n missing cid first
	unit=contid-vm-unit-$RANDOM
	marker=unit-$RANDOM$RANDOM
	# The scope's first exec is the shell, whose argv holds the marker;
	# three more execs follow it.
	systemd-run --quiet --scope --slice=machine.slice --unit="$unit" \
		/bin/sh -c '/bin/true "$0-1"; /bin/true "$0-2"; exec /bin/true "$0-3"' "$marker" >>"$log" 2>&1
	first=$(mgr_entry "$marker-3")
	cid=$(mgr_field "$first" AUDIT_CONTAINER_ID)
	if [[ -z $cid ]]; then
		result managers-scope-unit FAIL "no attributed entry for the scope's last exec ($marker-3): $(mgr_fields "$(mgr_entry "$marker")")"
		return
	fi
	entries=$(journalctl -q --no-pager SYSLOG_IDENTIFIER=contidd _SYSTEMD_UNIT=contidd.service AUDIT_CONTAINER_ID="$cid" -o json 2>/dev/null)
	n=$(grep -c . <<<"$entries")
	missing=$(grep -vc "\"AUDIT_CONTAINER_UNIT\":\"$unit.scope\"" <<<"$entries")
	first=$(grep -F '"AUDIT_EXECVE_ARGV"' <<<"$entries" | head -n1)
	{
		echo "unit $unit.scope, container $cid, $n entries, $missing without the unit"
		echo "first exec entry: $first"
	} >>"$log"
	if ((n < 4)); then
		result managers-scope-unit FAIL "only $n entries for container $cid, want the shell and its three execs"
	elif ((missing > 0)); then
		result managers-scope-unit FAIL "$missing of $n entries of container $cid lack AUDIT_CONTAINER_UNIT=$unit.scope: $(grep -v "\"AUDIT_CONTAINER_UNIT\":\"$unit.scope\"" <<<"$entries" | head -n1 | cut -c1-300)"
	elif [[ $first != *"$marker"* || $first == *"$marker-"* ]]; then
		result managers-scope-unit FAIL "the container's first exec entry is not the shell's: $(mgr_fields "$first")"
	else
		result managers-scope-unit PASS "container $cid: all $n entries carry AUDIT_CONTAINER_UNIT=$unit.scope, the shell's first exec included"
	fi
}

run_managers() {
	selected managers-podman || selected managers-nohook || selected managers-down || selected managers-docker ||
		selected managers-docker-samename || selected managers-docker-untagged ||
		selected managers-docker-catchup || selected managers-docker-attacks || selected managers-scope-unit || return 0
	if [[ -z ${CONTIDD_PID:-} ]]; then
		result managers FAIL "contidd is not running"
		return
	fi
	selected managers-scope-unit && mgr_scope_unit
	if ! command -v podman >/dev/null || [[ ! -x /bin/busybox ]]; then
		result managers FAIL "podman or busybox-static is not in the guest image"
		return
	fi
	if ! mgr_rootfs >"$LOGS/managers.log" 2>&1; then
		result managers FAIL "could not build $MGR_ROOTFS: $(tail -n 2 "$LOGS/managers.log" | tr '\n' ' ')"
		return
	fi
	say "managers: podman $(podman --version 2>&1 | awk '{ print $NF }'), hook $(ls "$MGR_HOOK" 2>&1)"
	selected managers-podman && mgr_named
	selected managers-nohook && mgr_nohook
	selected managers-down && mgr_down
	run_docker
	rm -rf --one-file-system "$MGR_ROOTFS"
}

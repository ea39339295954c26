#!/bin/bash
# The VM tier: boot a Debian bookworm guest whose kernel runs the BPF LSM,
# install contid in it, run the in-guest suite (guest/suite.sh) under
# systemd as PID 1, and bring the results and the guest journal back into
# test/vm/out/. `make test-vm` runs this as root.
#
# Environment:
#   CONTID_VM_CACHE    where the rootfs tarball is kept (/var/cache/contid-vm)
#   CONTID_VM_TIMEOUT  seconds one boot may run before qemu is killed (3000)
#   CONTID_VM_BUDGET   seconds the whole run may take, boots again included (3600)
#   CONTID_VM_STALL    seconds with neither a heartbeat nor console output
#                      after which the guest counts as hung (240)
#   CONTID_VM_QUIET    seconds without console output after which the guest
#                      counts as hung even if it beats (600)
#   CONTID_VM_HANG     a stage of the suite at which the first boot stops,
#                      to test the runner's handling of a hung guest
#   CONTID_VM_ACCEL    kvm | tcg | auto (auto: KVM only where it can work)
#   CONTID_VM_MIRROR   Debian mirror URL; default: the one apt already uses
#   CONTID_VM_KEEP     1 keeps the work directory for debugging
#   CONTID_VM_SUITE    extra argument passed to the guest suite (e.g. a filter)
set -Eeuo pipefail

# Bump when the way the cached rootfs is built changes; it is part of the
# cache key together with the package list.
readonly IMAGE_VERSION=1
readonly SUITE=bookworm
readonly PACKAGES=systemd,systemd-sysv,libpam-systemd,dbus,systemd-container,polkitd,auditd,linux-image-amd64,initramfs-tools,zstd,udev,kmod,bpftool,procps,iproute2,podman,crun,netavark,busybox-static,docker.io,apparmor
readonly DONE_MARKER=CONTID-VM-RESULT

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$HERE/out
CACHE=${CONTID_VM_CACHE:-/var/cache/contid-vm}
TIMEOUT=${CONTID_VM_TIMEOUT:-3000}
BUDGET=${CONTID_VM_BUDGET:-3600}
STALL=${CONTID_VM_STALL:-240}
QUIET=${CONTID_VM_QUIET:-600}
T0=$(date +%s)
STEP="start"
STEP_T0=$T0
WORK=""
QEMU_PID=""
LOCKUPS=()
# HUNG says why the watchdog ended the last boot; empty when it did not.
HUNG=""
# RETRIES has one line per boot that hung and was resumed on the next.
RETRIES=()

log() { printf '[vm %s +%4ds] %s\n' "$(date +%H:%M:%S)" "$(($(date +%s) - T0))" "$*"; }

step() {
	if [[ $STEP != start ]]; then
		log "done: $STEP ($(($(date +%s) - STEP_T0))s)"
	fi
	STEP=$1
	STEP_T0=$(date +%s)
	log "step: $STEP"
}

die() {
	log "FAILED in step '$STEP': $*"
	exit 1
}

on_err() {
	local rc=$? line=$1 cmd=$2
	log "FAILED in step '$STEP' (exit $rc at run.sh:$line: $cmd)"
	exit "$rc"
}
trap 'on_err $LINENO "$BASH_COMMAND"' ERR

cleanup() {
	local rc=$?
	trap - ERR
	if [[ -n $QEMU_PID ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
		log "stopping qemu (pid $QEMU_PID)"
		kill "$QEMU_PID" 2>/dev/null || true
		wait "$QEMU_PID" 2>/dev/null || true
	fi
	if [[ -n $WORK && -d $WORK ]]; then
		if [[ ${CONTID_VM_KEEP:-0} == 1 ]]; then
			log "keeping work directory $WORK"
		else
			rm -rf --one-file-system "$WORK"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- steps -------------------------------------------------------------------

check_host() {
	step "check host"
	[[ $(id -u) == 0 ]] || die "needs root (debootstrap, chroot and file ownership in mkfs -d)"
	local -A need=([qemu-system-x86_64]=qemu-system-x86 [debootstrap]=debootstrap
		[mkfs.ext4]=e2fsprogs [zstd]=zstd [timeout]=coreutils)
	local missing=() cmd
	for cmd in "${!need[@]}"; do
		command -v "$cmd" >/dev/null || missing+=("${need[$cmd]}")
	done
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		apt-get update -q >/dev/null || die "apt-get update failed"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
			die "apt-get install ${missing[*]} failed"
	fi
}

# apt_mirror prints the first Debian mirror apt uses for $SUITE, from the
# deb822 .sources files or the one-line .list format.
apt_mirror() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		awk -v suite="$SUITE" '
			function flush() {
				if (deb && hassuite && uri != "") { print uri; found = 1; exit }
				deb = 0; hassuite = 0; uri = ""
			}
			/^[ \t]*$/ { flush(); next }
			/^Types:/ { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
			/^URIs:/ { uri = $2 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) hassuite = 1 }
			END { if (!found) flush() }' "$f" | head -n1 | grep . && return 0
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -f $f ]] || continue
		# deb [options] URI suite components...
		sed -E 's/\[[^]]*\]//' "$f" | awk -v suite="$SUITE" \
			'$1 == "deb" && $3 == suite { print $2; exit }' | grep . && return 0
	done
	return 1
}

rootfs() {
	step "guest rootfs"
	local key tarball
	key=$(printf '%s\n' "image=$IMAGE_VERSION" "suite=$SUITE" "variant=minbase" "packages=$PACKAGES" |
		sha256sum | cut -c1-16)
	tarball=$CACHE/rootfs-$SUITE-$key.tar.zst
	mkdir -p "$CACHE" "$WORK/rootfs"
	if [[ -s $tarball ]]; then
		log "cache hit: $tarball"
		zstd -dq -T0 -c "$tarball" | tar -C "$WORK/rootfs" --numeric-owner --xattrs --xattrs-include='*' -xpf - ||
			die "cannot unpack $tarball (delete it to rebuild)"
		return
	fi
	local mirror
	mirror=${CONTID_VM_MIRROR:-$(apt_mirror)} || die "no '$SUITE' mirror in apt's sources; set CONTID_VM_MIRROR"
	log "cache miss: debootstrap $SUITE (minbase + ${PACKAGES//,/ }) from apt's configured mirror"
	if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$WORK/rootfs" "$mirror" \
		>"$WORK/debootstrap.log" 2>&1; then
		tail -n 30 "$WORK/debootstrap.log" >&2
		[[ -f $WORK/rootfs/debootstrap/debootstrap.log ]] && tail -n 30 "$WORK/rootfs/debootstrap/debootstrap.log" >&2
		die "debootstrap failed (log above)"
	fi
	rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*_Packages
	log "caching rootfs as $tarball"
	tar -C "$WORK/rootfs" --numeric-owner --xattrs --xattrs-include='*' -cf - . |
		zstd -q -T0 -3 -o "$tarball.tmp.$$" || die "cannot write $tarball"
	mv -f "$tarball.tmp.$$" "$tarball"
	# Only the newest image is useful; older keys are stale.
	find "$CACHE" -maxdepth 1 -name "rootfs-*.tar.zst" ! -name "$(basename "$tarball")" -delete
}

# customise applies what is cheap and changes often, so editing the runner
# never costs a debootstrap.
customise() {
	step "customise image"
	local r=$WORK/rootfs
	echo contid-vm >"$r/etc/hostname"
	printf '127.0.0.1 localhost\n127.0.1.1 contid-vm\n' >"$r/etc/hosts"
	echo '/dev/vda / ext4 rw,relatime 0 1' >"$r/etc/fstab"
	# A fixed machine ID avoids first-boot logic (systemd-firstboot prompts).
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$r/etc/machine-id"
	echo >>"$r/etc/machine-id"
	install -D -m 0755 "$HERE/image/contid-vm-runner" "$r/usr/local/sbin/contid-vm-runner"
	install -D -m 0644 "$HERE/image/contid-vm-runner.service" "$r/etc/systemd/system/contid-vm-runner.service"
	mkdir -p "$r/etc/systemd/system/multi-user.target.wants"
	ln -sf /etc/systemd/system/contid-vm-runner.service "$r/etc/systemd/system/multi-user.target.wants/"
	# The serial line carries progress and the result marker, not a login.
	ln -sf /dev/null "$r/etc/systemd/system/serial-getty@ttyS0.service"
	ln -sf /dev/null "$r/etc/systemd/system/getty@tty1.service"
	mkdir -p "$r/etc/systemd/journald.conf.d"
	printf '[Journal]\nStorage=volatile\nRateLimitIntervalSec=0\nForwardToConsole=no\n' \
		>"$r/etc/systemd/journald.conf.d/contid-vm.conf"
	# journald's own audit socket would copy every audited exec of the
	# suite into the journal; under TCG that backlog delayed contidd's
	# entries by minutes. auditd keeps the raw log, contidd the
	# attributed entries.
	ln -sf /dev/null "$r/etc/systemd/system/systemd-journald-audit.socket"
	# Keep the kernel's console quiet so the suite's progress is readable.
	mkdir -p "$r/etc/sysctl.d"
	echo 'kernel.printk = 3 4 1 3' >"$r/etc/sysctl.d/10-contid-vm.conf"
}

# share fills the 9p directory: contid (the .deb, else a DESTDIR install,
# else the bare binaries and units), the guest suite and its helper.
share() {
	step "prepare share"
	local s=$WORK/share
	mkdir -p "$s/out" "$s/contid"
	cp -a "$HERE/guest" "$s/guest"
	log "building guest helper (contid-vmprobe)"
	(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$s/guest/contid-vmprobe" ./test/vm/guest/vmprobe) ||
		die "go build ./test/vm/guest/vmprobe failed"
	log "building contid-bench and a static loadgen (make bench's enforcing fork/exec figure)"
	(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$s/guest/contid-bench" ./test/bench/cmd/contid-bench) ||
		die "go build ./test/bench/cmd/contid-bench failed"
	local cc=${CC:-cc}
	command -v "$cc" >/dev/null || cc=clang
	"$cc" -static -O2 -Wall -Werror -o "$s/guest/loadgen" "$ROOT/test/bench/loadgen.c" ||
		die "cc -static test/bench/loadgen.c failed (static glibc: libc6-dev)"
	log "building the kernel layer's tests (re-run in enforcing mode in the guest)"
	(cd "$ROOT" && CGO_ENABLED=0 go test -c -trimpath -o "$s/guest/contid-kernel.test" ./kernel) ||
		die "go test -c ./kernel failed"
	local debs=()
	shopt -s nullglob
	debs=("$ROOT"/packaging/out/contid*.deb)
	shopt -u nullglob
	if ((${#debs[@]})); then
		log "contid from the package: $(basename "${debs[0]}")"
		cp "${debs[0]}" "$s/contid/"
		return
	fi
	if [[ ! -x $ROOT/bin/contidd ]]; then
		log "no bin/contidd: trying 'make build'"
		if ! make -C "$ROOT" build >"$WORK/build.log" 2>&1; then
			log "make build failed; the guest suite will report contid missing:"
			tail -n 5 "$WORK/build.log" | sed 's/^/    /'
		fi
	fi
	if [[ -f $ROOT/packaging/install.mk ]] &&
		make -C "$ROOT" install DESTDIR="$s/contid/destdir" >"$WORK/install.log" 2>&1; then
		log "contid from 'make install DESTDIR=' (no .deb in packaging/out yet)"
		return
	fi
	rm -rf "$s/contid/destdir"
	log "contid from bin/ and units/ by hand (no .deb, no make install)"
	mkdir -p "$s/contid/bin" "$s/contid/units"
	for b in contidd contidctl; do
		[[ -x $ROOT/bin/$b ]] && cp "$ROOT/bin/$b" "$s/contid/bin/"
	done
	[[ -d $ROOT/units ]] && cp -a "$ROOT/units/." "$s/contid/units/"
	return 0
}

disk() {
	step "make disk"
	local r=$WORK/rootfs kver size
	kver=$(basename "$(ls -1 "$r"/boot/vmlinuz-* | sort -V | tail -n1)")
	kver=${kver#vmlinuz-}
	cp "$r/boot/vmlinuz-$kver" "$WORK/vmlinuz"
	cp "$r/boot/initrd.img-$kver" "$WORK/initrd.img" || die "no initrd for $kver in the rootfs"
	log "guest kernel $kver"
	size=$(($(du -sm --apparent-size "$r" | cut -f1) + 1024))
	mkfs.ext4 -q -F -E root_owner=0:0 -d "$r" "$WORK/disk.img" "${size}M" >/dev/null || die "mkfs.ext4 -d failed"
	# The rootfs tree is in the image now; free the space early.
	rm -rf --one-file-system "$r"
	# Fallback channel: the guest also writes its results as a tar here.
	truncate -s 64M "$WORK/results.img"
}

pick_accel() {
	local want=${CONTID_VM_ACCEL:-auto}
	if [[ $want == auto ]]; then
		want=tcg
		# A nested paravirtual KVM (kvm_pvm) cannot run a stock Debian
		# kernel: -cpu host aborts, and without it the guest stalls.
		if [[ -w /dev/kvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo && [[ ! -d /sys/module/kvm_pvm ]]; then
			want=kvm
		fi
	fi
	echo "$want"
}

# A guest kernel that locks up (a CPU spinning in the kernel for a minute)
# panics at once instead of idling until the timeout, and the panic prints
# every CPU's stack. A guest that stops without spinning (no heartbeat and
# no console output for STALL seconds, or no console output for QUIET) is
# ended by the runner: it names where each vCPU is, from qemu's monitor,
# then sends the guest an NMI, on which it panics and prints its CPUs'
# stacks and its tasks. Either way the run boots once more from the same
# image and resumes the suite at the stage that hung, which runs again;
# a second hang fails the run. Everything is kept in test/vm/out/.
readonly LOCKUP_ARGS="softlockup_panic=1 softlockup_all_cpu_backtrace=1 watchdog_thresh=30"
readonly HANG_ARGS="unknown_nmi_panic=1 panic_print=0x41"
readonly BOOT_ATTEMPTS=2

boot() {
	step "boot guest and run suite"
	local attempt from="" left stage why where next
	LOCKUPS=()
	for ((attempt = 1; attempt <= BOOT_ATTEMPTS; attempt++)); do
		left=$((BUDGET - ($(date +%s) - T0)))
		((left < TIMEOUT)) || left=$TIMEOUT
		((left >= 300)) || boot_failed "boot $attempt: only ${left}s of the ${BUDGET}s budget left (CONTID_VM_BUDGET)"
		boot_once "$from" "$left" "$attempt"
		why=$HUNG
		if [[ -z $why ]]; then
			lockup_report "$attempt" || return 0
			why="soft lockup: $(lockup_summary)"
		fi
		stage=$(last_stage)
		cp "$WORK/console.log" "$WORK/console-$attempt.log"
		if [[ -f $WORK/hang.txt ]]; then mv "$WORK/hang.txt" "$WORK/hang-$attempt.txt"; fi
		# A guest that put its results out and then stopped (in its
		# poweroff) hung after the suite: nothing is to run again.
		if grep -aq "$DONE_MARKER rc=" "$WORK/console.log" && [[ -f $WORK/share/out/exit-code ]]; then
			log "the guest stopped after its suite had finished and its results were out ($why); not booting again"
			return 0
		fi
		cp "$WORK/share/progress.txt" "$WORK/progress-$attempt.txt" 2>/dev/null || : >"$WORK/progress-$attempt.txt"
		# Before the first stage (boot, install, set-up) there is nothing
		# to keep: the next boot runs the whole suite again.
		where="before the first stage of the suite" next="running the whole suite"
		[[ -z $stage ]] || where="in stage $stage" next="resuming the suite at stage $stage"
		RETRIES+=("boot $attempt hung $where: $why")
		if ((attempt < BOOT_ATTEMPTS)); then
			log "booting again, attempt $((attempt + 1)) of $BOOT_ATTEMPTS, $next"
			rm -rf "$WORK/share/out" && mkdir -p "$WORK/share/out"
			rm -f "$WORK/share/progress.txt" "$WORK/share/heartbeat"
			truncate -s 0 "$WORK/results.img" && truncate -s 64M "$WORK/results.img"
			from=$stage
		fi
	done
	boot_failed "the guest hung on each of $BOOT_ATTEMPTS boots: $(printf '%s; ' "${RETRIES[@]}")"
}

# boot_failed keeps each boot's console, progress and diagnosis in
# test/vm/out/ (the work directory goes with the exit), then fails the run.
boot_failed() {
	rm -rf "$OUT"
	mkdir -p "$OUT"
	keep_boot_files "$WORK/console.log" "$WORK/hang.txt"
	log "the hung boots' consoles, progress and diagnoses: ${OUT#"$ROOT"/}/"
	die "$1"
}

# keep_boot_files copies into $OUT each earlier boot's lockup report,
# console, progress and diagnosis, and the files it is given.
keep_boot_files() {
	local f
	for f in "${LOCKUPS[@]}" "$WORK"/console-*.log "$WORK"/hang-*.txt "$WORK"/progress-*.txt "$@"; do
		if [[ -f $f ]]; then cp "$f" "$OUT/"; fi
	done
}

# last_stage prints the stage the suite of the current boot was in.
last_stage() { sed -n 's/^stage //p' "$WORK/share/progress.txt" 2>/dev/null | tail -n1; }

# lockup_report saves the console's lockup report of boot $1, if there was
# one, and returns 1 when there was none.
lockup_report() {
	grep -aq 'BUG: soft lockup' "$WORK/console.log" || return 1
	local file=$WORK/lockup-$1.txt
	sed 's/\r//' "$WORK/console.log" | grep -a -A 80 -m 1 'BUG: soft lockup' >"$file" || true
	LOCKUPS+=("$file")
	# The first lines name the task and the innermost frames: enough to
	# recognise the same lockup again from a log's tail.
	log "guest kernel soft lockup on boot $1: $(lockup_summary)"
}

lockup_summary() {
	{
		grep -a -h -m 1 -e 'BUG: soft lockup' "${LOCKUPS[-1]}" | sed 's/^.*BUG: //'
		grep -a -h -m 1 -o 'RIP: [0-9a-f]*:[a-z_0-9.]*' "${LOCKUPS[-1]}" | sed 's/: *[0-9a-f]*:/ /'
		grep -a -h -E '^ *(\[ *[0-9.]+\] *)? ([a-z_0-9.]+\+0x[0-9a-f]+/0x[0-9a-f]+)' "${LOCKUPS[-1]}" |
			sed -E 's/^.* ([a-z_0-9.]+\+0x)/\1/; s/\+0x[0-9a-f]+\/0x[0-9a-f]+.*$//' | head -n 12
	} | tr '\n' ' '
}

# monitor sends one command to qemu's human monitor and prints what came
# back within two seconds. A qemu whose main loop is stuck answers nothing.
monitor() {
	local off
	off=$(stat -c %s "$WORK/monitor.log")
	kill -0 "$QEMU_PID" 2>/dev/null || return 1
	# The FIFO's only reader is qemu: without the timeout, a qemu that
	# just exited would leave this open() waiting for ever.
	timeout 5 bash -c 'printf "%s\n" "$1" >"$2"' _ "$1" "$WORK/mon.in" || return 1
	sleep 2
	tail -c +"$((off + 1))" "$WORK/monitor.log" | tr -d '\r'
}

# symbolize names the kernel address of each input line (RIP= and 16 hex
# digits) as symbol+offset, from the guest's /proc/kallsyms, which the
# runner copies to the share at boot, and the modules' and BPF programs'
# symbols the suite adds at each stage (Debian's System.map is a stub);
# user-space addresses are said to be so. A module or BPF program loaded
# after the last copy is not in it: an offset past any function's size
# says so rather than naming its neighbour. C collation for sort, as awk
# compares bytes.
symbolize() {
	local map=$WORK/share/kallsyms
	if [[ ! -s $map ]]; then
		cat
		return
	fi
	LC_ALL=C awk '
		function hex(s,   i, v) { v = 0; for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1; return v }
		NR == FNR { if ($2 ~ /^[tT]$/) { n++; addr[n] = $1; name[n] = $3; mod[n] = $4 } next }
		{
			line = $0
			# mawk, Debian'"'"'s awk, has no {16}: the address follows RIP=.
			if (index(line, "RIP=")) {
				a = substr(line, index(line, "RIP=") + 4, 16)
				if (a < "ffff800000000000") { print line " (user space)"; next }
				lo = 1; hi = n; best = 0
				while (lo <= hi) { mid = int((lo + hi) / 2); if (addr[mid] <= a) { best = mid; lo = mid + 1 } else hi = mid - 1 }
				off = best ? hex(substr(a, 9)) - hex(substr(addr[best], 9)) : -1
				if (best && substr(a, 1, 8) == substr(addr[best], 1, 8) && off < 1048576) printf "%s = %s+0x%x%s\n", line, name[best], off, (mod[best] != "" ? " " mod[best] : "")
				else print line " (no symbol: code loaded after the last copy of kallsyms?)"
				next
			}
			print line
		}' <(cat "$map" "$WORK/share/kallsyms-late" 2>/dev/null | LC_ALL=C sort -u) -
}

# hang ends a guest that stopped: it records where the vCPUs are, then
# makes the guest panic with its stacks and waits for qemu to exit. Nothing
# in it may fail the run: a qemu that answers nothing, or a guest that
# does not panic, is what it is there to report.
hang() {
	HUNG=$1
	local f=$WORK/hang.txt i regs
	log "the guest looks hung: $1 (stage: $(last_stage), heartbeat: $(cat "$WORK/share/heartbeat" 2>/dev/null || echo none))"
	{
		echo "why: $1"
		echo "stage: $(last_stage)"
		echo "qemu: $(monitor 'info status' | grep -a -m1 'VM status' || echo 'no answer from the monitor')"
		for i in 1 2 3; do
			echo "sample $i:"
			regs=$(monitor 'info registers -a' | grep -a -oE '^CPU#[0-9]+|RIP=[0-9a-f]{16}' || true)
			if [[ -n $regs ]]; then
				paste -d' ' - - <<<"$regs" | symbolize || true
			else
				echo "  no answer from the monitor"
			fi
		done
	} >"$f" 2>&1
	sed 's/^/    /' "$f"
	log "sending the guest an NMI: it panics and prints its CPUs' stacks and its tasks"
	local mark lines
	mark=$(stat -c %s "$WORK/console.log")
	lines=$(wc -l <"$f")
	monitor nmi >/dev/null || true
	for ((i = 0; i < 90; i++)); do
		kill -0 "$QEMU_PID" 2>/dev/null || break
		sleep 1
	done
	if kill -0 "$QEMU_PID" 2>/dev/null; then
		log "the guest did not panic within 90 s of the NMI; stopping qemu"
		echo "the guest did not panic within 90 s of the NMI" >>"$f"
		monitor quit >/dev/null || true
		# A qemu whose main loop is stuck takes no command: timeout
		# sends it SIGTERM, and SIGKILL 10 s later.
		for ((i = 0; i < 5; i++)); do
			kill -0 "$QEMU_PID" 2>/dev/null || break
			sleep 1
		done
		kill "$QEMU_PID" 2>/dev/null || true
	fi
	# What the panic printed: the NMI's CPU, the other CPUs, and every
	# task that was blocked (state D), which is where a hang waits.
	tail -c +"$((mark + 1))" "$WORK/console.log" | tr -d '\r' >"$WORK/panic.txt" || true
	{
		grep -a -m1 -B2 -A40 'Kernel panic' "$WORK/panic.txt" || echo "no 'Kernel panic' on the console after the NMI"
		grep -a -A25 -E 'NMI backtrace for cpu' "$WORK/panic.txt" || true
		awk '/ state:D /{ p = 25 } p > 0 { print; p-- }' "$WORK/panic.txt" || true
	} >>"$f" 2>&1
	log "what the guest printed on the NMI (first 150 lines; all of it in test/vm/out/):"
	sed -n "$((lines + 1)),$((lines + 150))p" "$f" | sed 's/^/    /'
}

# watch waits for qemu to exit; it ends a guest that stopped (see hang).
watch() {
	local boot_t0=$1 size last_size=-1 last_out now beat stall
	last_out=$(date +%s)
	while kill -0 "$QEMU_PID" 2>/dev/null; do
		sleep 5
		now=$(date +%s)
		size=$(stat -c %s "$WORK/console.log" 2>/dev/null || echo 0)
		if [[ $size != "$last_size" ]]; then
			last_size=$size
			last_out=$now
		fi
		# Until the runner starts, the boot itself is the heartbeat, and
		# the console is quiet (quiet, systemd.show_status=false) while
		# systemd brings up multi-user.target, dockerd and apparmor
		# included, which under TCG on a loaded host can take minutes:
		# only QUIET bounds it.
		stall=$STALL
		if ! beat=$(stat -c %Y "$WORK/share/heartbeat" 2>/dev/null); then
			beat=$boot_t0
			stall=$QUIET
		fi
		if ((now - beat > stall && now - last_out > stall)); then
			hang "no heartbeat for $((now - beat)) s and no console output for $((now - last_out)) s"
			return
		fi
		if ((now - last_out > QUIET)); then
			hang "no console output for $((now - last_out)) s (the heartbeat is $((now - beat)) s old)"
			return
		fi
	done
}

# boot_once boots the guest once: $1 is the stage to resume at (empty for
# the whole suite), $2 how long qemu may run, $3 the attempt.
boot_once() {
	local from=$1 limit=$2 accel cpu hang=""
	# Only the first boot is made to hang: the second must resume.
	(($3 > 1)) || hang=${CONTID_VM_HANG:-}
	accel=$(pick_accel)
	case $accel in
	kvm) cpu=host ;;
	tcg) cpu=max ;;
	*) die "CONTID_VM_ACCEL must be kvm, tcg or auto" ;;
	esac
	log "accel=$accel, timeout ${limit}s${from:+, resuming at stage $from}; guest console follows"
	: >"$WORK/console.log"
	: >"$WORK/monitor.log"
	rm -f "$WORK/mon.in" "$WORK/mon.out" "$WORK/share/kallsyms" "$WORK/share/kallsyms-late"
	mkfifo "$WORK/mon.in" "$WORK/mon.out"
	HUNG=""
	timeout -k 10 "$limit" qemu-system-x86_64 \
		-machine "q35,accel=$accel" -cpu "$cpu" -smp 2 -m 2G \
		-kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img" \
		-append "root=/dev/vda rw console=ttyS0 panic=-1 $LOCKUP_ARGS $HANG_ARGS audit=1 audit_backlog_limit=8192 lsm=lockdown,capability,landlock,yama,apparmor,bpf quiet systemd.show_status=false contid.suite=${CONTID_VM_SUITE:-all}${from:+ contid.from=$from}${hang:+ contid.hang=$hang}" \
		-drive "file=$WORK/disk.img,format=raw,if=virtio,snapshot=on" \
		-drive "file=$WORK/results.img,format=raw,if=virtio" \
		-virtfs "local,path=$WORK/share,mount_tag=host0,security_model=none,id=host0" \
		-display none -monitor "pipe:$WORK/mon" -serial "file:$WORK/console.log" \
		-no-reboot -nic none </dev/null >"$WORK/qemu.log" 2>&1 &
	QEMU_PID=$!
	# The monitor's replies are drained as they come, or a full pipe
	# would stall qemu.
	cat "$WORK/mon.out" >>"$WORK/monitor.log" &
	local mon_pid=$!
	# Stream the console until qemu exits; the guest prints the suite's
	# progress there.
	tail -n +1 --pid="$QEMU_PID" -f "$WORK/console.log" | sed -u 's/\r//; s/^/  guest| /' &
	local tail_pid=$!
	watch "$(date +%s)"
	local qrc=0
	wait "$QEMU_PID" || qrc=$?
	QEMU_PID=""
	wait "$tail_pid" 2>/dev/null || true
	kill "$mon_pid" 2>/dev/null || true
	wait "$mon_pid" 2>/dev/null || true
	[[ -z $HUNG ]] || return 0
	# qemu says "terminating on signal" to timeout's SIGTERM too.
	if ((qrc == 124 || qrc == 137)); then
		die "guest did not finish within ${limit}s (console: test/vm/out/console.log)"
	elif grep -q 'terminating on signal' "$WORK/qemu.log"; then
		die "qemu was killed from outside: $(cat "$WORK/qemu.log")"
	elif ((qrc != 0)); then
		sed 's/^/    /' "$WORK/qemu.log" >&2
		die "qemu exited with $qrc"
	fi
}

collect() {
	step "collect results"
	rm -rf "$OUT"
	mkdir -p "$OUT"
	keep_boot_files "$WORK/console.log"
	if [[ -f $WORK/share/out/exit-code ]]; then
		cp -a "$WORK/share/out/." "$OUT/"
	elif tar -tf "$WORK/results.img" >/dev/null 2>&1; then
		log "9p output missing; using the results disk"
		tar -C "$OUT" -xf "$WORK/results.img"
	fi
	local marker
	marker=$(grep -ao "$DONE_MARKER rc=[0-9]*" "$OUT/console.log" | tail -n1 || true)
	[[ -n $marker ]] || die "no '$DONE_MARKER' line on the guest console: the runner never finished"
	[[ -f $OUT/exit-code ]] || die "guest printed '$marker' but its results did not come back (neither 9p nor results disk)"
	log "results in ${OUT#"$ROOT"/}/: $(cd "$OUT" && ls | tr '\n' ' ')"
}

# merge_resumed folds the results of the boots that hung into the last
# boot's summary.txt and results.txt: each keeps what it had before the
# stage it hung in, which the next boot ran again, and a failure in that
# stage before the hang too; of the set-up the next boot repeated, only a
# failure is added, once. It prints the merged exit code, which is 1 too
# when the last boot's suite exited non-zero (it may have died before any
# result of the stage it resumed at).
merge_resumed() {
	local i kept=$WORK/kept.txt merged=$WORK/merged.txt summary=$WORK/summary.txt last_rc
	: >"$kept"
	for ((i = 1; i <= ${#RETRIES[@]}; i++)); do
		awk -v boot="$i" '{ line[NR] = $0 } /^stage /{ last = NR }
			END {
				for (i = 1; i <= NR; i++) {
					if (line[i] ~ /^stage /) continue
					if (i < last) print line[i]
					else if (line[i] ~ /^FAIL /) print line[i] " (boot " boot ", in the stage that hung)"
				}
			}' "$WORK/progress-$i.txt" >>"$kept"
	done
	awk 'NR == FNR { if (!(($1 " " $2) in seen)) { seen[$1 " " $2] = 1; name[$2] = 1; print } next }
		!($2 in name) || ($1 == "FAIL" && !(("FAIL " $2) in seen))' "$kept" "$OUT/results.txt" >"$merged"
	local passed failed skipped
	# grep -c counts 0 with status 1.
	passed=$(grep -c '^PASS' "$merged" || true)
	failed=$(grep -c '^FAIL' "$merged" || true)
	skipped=$(grep -c '^SKIP' "$merged" || true)
	last_rc=$(cat "$OUT/exit-code" 2>/dev/null || echo missing)
	{
		head -n1 "$OUT/summary.txt" 2>/dev/null || echo "VM tier (the last boot's suite wrote no summary)"
		cat "$merged"
		printf 'RETRY %s\n' "${RETRIES[@]}"
		[[ $last_rc == 0 ]] || echo "RESUMED-SUITE-EXIT $last_rc (see suite.log)"
		echo "$skipped skipped (not applicable on this kernel; not counted)"
		echo "$passed passed, $failed failed"
	} >"$summary"
	cp "$merged" "$OUT/results.txt"
	cp "$summary" "$OUT/summary.txt"
	if ((failed == 0 && passed > 0)) && [[ $last_rc == 0 ]]; then echo 0; else echo 1; fi
}

report() {
	step "report"
	local rc
	rc=$(cat "$OUT/exit-code")
	if ((${#RETRIES[@]})); then
		log "the suite ran over $((${#RETRIES[@]} + 1)) boots: $(printf '%s; ' "${RETRIES[@]}")"
		rc=$(merge_resumed)
	fi
	if [[ -f $OUT/summary.txt ]]; then
		sed 's/^/  /' "$OUT/summary.txt"
	fi
	log "total $(($(date +%s) - T0))s"
	if [[ $rc != 0 ]]; then
		STEP="guest suite"
		die "the in-guest suite exited $rc: $(tail -n1 "$OUT/summary.txt" 2>/dev/null || echo 'see test/vm/out/suite.log')"
	fi
	log "PASS"
}

main() {
	check_host
	WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/contid-vm.XXXXXX")
	rootfs
	customise
	share
	disk
	boot
	collect
	report
}

main "$@"

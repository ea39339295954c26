#!/bin/sh
# make bench: what contid costs on this machine, against no contid and
# against Debian's auditd. Prints a table and writes bench/results.json.
#
# Runs as root (eBPF, cgroups, audit netlink). Everything it creates is
# removed again by contid-bench's cleanup stack, on every exit path.
# Options are passed through to contid-bench, e.g.
#   test/bench/run.sh -quick              a smoke run with fewer rounds
#   test/bench/run.sh -phases fork,api    only some phases
set -eu

cd "$(dirname "$0")/../.."
root=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
	echo "make bench needs root (eBPF, cgroups, audit): sudo make bench" >&2
	exit 2
fi

GO=${GO:-go}
command -v "$GO" >/dev/null 2>&1 || GO=/usr/local/go/bin/go
export GO
work=$(mktemp -d /tmp/contid-bench-build.XXXXXX)
trap 'rm -rf "$work"' EXIT

CC=${CC:-cc}
command -v "$CC" >/dev/null 2>&1 || CC=clang
"$CC" -O2 -Wall -Werror -o "$work/loadgen" test/bench/loadgen.c
"$GO" build -o "$work/contid-bench" ./test/bench/cmd/contid-bench
"$GO" build -o "$work/contid-pipeline" ./test/bench/cmd/contid-pipeline

mkdir -p bench
# This host cannot load LSM programs: the enforcing figure comes from the
# VM tier's last run (make test-vm writes it), or the table says it has
# none.
vm_results=$root/test/vm/out/bench-enforcing.json
# The whole run is bounded: a hung phase must not hold CI. contid-bench
# cleans up on SIGTERM; the KILL after a grace period is the last resort.
# It runs in the background so that a signal to this script (CI's own
# timeout, ^C) is passed on at once instead of after the run.
timeout -k 30s 15m "$work/contid-bench" \
	-root "$root" -bin "$root/bin" -loadgen "$work/loadgen" \
	-out "$root/bench/results.json" -vm-results "$vm_results" "$@" &
bench=$!
trap 'kill -TERM "$bench" 2>/dev/null' INT TERM HUP
rc=0
wait "$bench" || rc=$?
# A trapped signal ends the wait early; wait for the cleanup to finish.
while kill -0 "$bench" 2>/dev/null; do
	wait "$bench" || rc=$?
done
exit "$rc"

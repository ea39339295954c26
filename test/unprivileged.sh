#!/usr/bin/env bash
# Tier 1 of docs/DESIGN.md: `go test ./...` as an ordinary user. The test
# binaries are built by the caller (root in CI) and run as nobody from a
# world-readable copy of the tree, so every privileged test must skip and
# print its reason.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
copy=$(mktemp -d /tmp/contid-unpriv.XXXXXX)
trap 'rm -rf "$copy"' EXIT
tar -C "$top" --exclude=./.git --exclude=./bin --exclude=./test/vm/out --exclude=./packaging/out -cf - . | tar -C "$copy" -xf -
chmod -R a+rX "$copy"
cd "$copy"
out=$(mktemp)
set +e
go test -count=1 -v -exec 'setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all --bounding-set=-all' ./... >"$out" 2>&1
rc=$?
set -e
grep -E '^(ok|FAIL|\?)|--- (SKIP|FAIL)|skipped:' "$out" || true
skips=$(grep -c -- '--- SKIP' "$out" || true)
echo "unprivileged tier: $skips tests skipped with a reason (listed above)"
if [ $rc -ne 0 ]; then
	# What the failing tests said: with -v their messages stream before
	# their FAIL lines, so show everything but passes, skips and runs.
	grep -vE '^ *(=== |--- (PASS|SKIP)|PASS$)|skipped:|^ok ' "$out" | head -200
fi
rm -f "$out"
exit $rc

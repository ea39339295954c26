#!/bin/bash
# Builds the contid .deb into packaging/out/ with dpkg-buildpackage:
# stages a clean copy of the source tree (what git tracks, plus new files
# not yet added; no bin/, no build output) with packaging/debian as its
# debian/, and builds there. debian/rules compiles with `make build` and
# installs with `make install DESTDIR=`. `make deb` runs this;
# `make deb-lint` (packaging/lint-deb.sh) checks the result.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
out=$top/packaging/out
GO=${GO:-go}

for tool in dpkg-buildpackage dh "$GO"; do
	if ! command -v "$tool" >/dev/null; then
		echo "build-deb: $tool is missing: run \`make deps\` (dpkg-dev debhelper; Go 1.26 on PATH)" >&2
		exit 1
	fi
done

work=$out/build
src=$work/contid
rm -rf "$work"
mkdir -p "$src"
if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
	# Files deleted in the work tree but not yet in git are left out.
	git -C "$top" ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do [ -e "$top/$f" ] && printf '%s\0' "$f"; done |
		tar -C "$top" --null -T - -cf - | tar -C "$src" -xf -
	VERSION=${VERSION:-$(git -C "$top" describe --tags --always --dirty 2>/dev/null || true)}
else
	tar -C "$top" --exclude=./packaging/out --exclude=./bin --exclude=./test/vm/out \
		--exclude=./test/vm/cache -cf - . | tar -C "$src" -xf -
fi
cp -a "$top/packaging/debian" "$src/debian"

# Name the module and build caches `make deps` and earlier builds filled,
# whatever HOME the package build runs with: the build needs no network
# (debian/rules sets GOPROXY=off).
GOMODCACHE=$("$GO" env GOMODCACHE)
GOCACHE=$("$GO" env GOCACHE)
export GOMODCACHE GOCACHE
[ -n "${VERSION:-}" ] && export VERSION

# -d: the Go Build-Depends cannot be met from bookworm's archive (see
# debian/control); the go on PATH is the toolchain.
(
	cd "$src"
	dpkg-buildpackage --build=binary --no-sign -d
) >"$work/build.log" 2>&1 || {
	tail -40 "$work/build.log" >&2
	echo "build-deb: dpkg-buildpackage failed; full log: $work/build.log" >&2
	exit 1
}

rm -f "$out"/*.deb
mv "$work"/*.deb "$out"/
echo "build-deb: built $(ls "$out"/*.deb)"

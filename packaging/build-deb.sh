#!/bin/bash
# Builds the contid .deb into packaging/out/ from the binaries `make build`
# left in bin/, with debhelper (packaging/debian), then runs lintian on it.
# `make deb` runs this after `make build`.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
out=$top/packaging/out
bin=${BIN:-bin}
case $bin in /*) ;; *) bin=$top/$bin ;; esac

for b in contidd contidctl contid-oci-hook; do
	if [ ! -x "$bin/$b" ]; then
		echo "build-deb: $bin/$b is missing: run \`make build\` first" >&2
		exit 1
	fi
done
for tool in dpkg-buildpackage dh; do
	if ! command -v "$tool" >/dev/null; then
		echo "build-deb: $tool is missing: run \`make deps\` (dpkg-dev debhelper)" >&2
		exit 1
	fi
done

# dpkg-buildpackage wants debian/ in the current directory and writes its
# results to the parent: give it a scratch tree inside out/.
work=$out/build
rm -rf "$work"
mkdir -p "$work/contid"
cp -a "$top/packaging/debian" "$work/contid/debian"
(
	cd "$work/contid"
	CONTID_SRC=$top BIN=$bin dpkg-buildpackage --build=binary --no-sign --no-check-builddeps
) > "$work/build.log" 2>&1 || {
	tail -40 "$work/build.log" >&2
	echo "build-deb: dpkg-buildpackage failed; full log: $work/build.log" >&2
	exit 1
}

rm -f "$out"/*.deb
mv "$work"/*.deb "$out"/
deb=$(ls "$out"/*.deb)
echo "build-deb: built $deb"

if command -v lintian >/dev/null; then
	# Errors fail the build; warnings and infos are printed for review.
	lintian --info --display-info "$deb" || {
		echo "build-deb: lintian reports errors" >&2
		exit 1
	}
	echo "build-deb: lintian: no errors"
else
	echo "build-deb: lintian not installed; skipped the lint"
fi

#!/bin/bash
# Runs lintian --pedantic on the .deb in packaging/out/ (or the one named)
# and fails on any tag, of any severity, that is not overridden with a
# reason in packaging/debian/contid.lintian-overrides. An override that no
# longer matches fails too (lintian reports it as unused-override).
# `make deb-lint` runs this after `make deb`.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
deb=${1:-$(ls "$top"/packaging/out/contid_*.deb 2>/dev/null | tail -1)}
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
	echo "lint-deb: no .deb: run \`make deb\` first" >&2
	exit 1
fi
if ! command -v lintian >/dev/null; then
	echo "lint-deb: lintian is missing: run \`make deps\`" >&2
	exit 1
fi

# Experimental tags are not part of --pedantic; classification tags (C:)
# only report facts and are left out by --fail-on.
if out=$(lintian --display-info --pedantic --fail-on error,warning,info,pedantic "$deb" 2>&1 |
	grep -v '^running with root privileges is not recommended!$'; exit "${PIPESTATUS[0]}"); then
	[ -n "$out" ] && printf '%s\n' "$out"
	echo "lint-deb: $(basename "$deb"): no unjustified lintian tags"
else
	printf '%s\n' "$out"
	echo "lint-deb: $(basename "$deb"): lintian tags above need a fix or a justified override" >&2
	exit 1
fi

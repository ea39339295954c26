# shellcheck shell=bash
# Sourced by suite.sh, after managers.sh (it uses mgr_rootfs, mgr_podman
# and the hook's paths). run_oci_bench: what contid-oci-hook adds to a
# container's start, as make bench reports it.
#
#   bench-oci-hook   `podman run --rm` of a busybox that exits at once,
#                    OCI_BENCH_RUNS times with the hook file installed
#                    and as many times without it, alternating so that
#                    drift in the guest falls on both sides alike. Writes
#                    OUT/bench-oci.json: the medians in ms
#                    (oci_hook_start_ms, oci_hook_start_ms_without) and
#                    their ratio; make bench on the host folds it into
#                    bench/results.json. PASS means measured: the figure
#                    has no goal of its own.

OCI_BENCH_RUNS=${OCI_BENCH_RUNS:-10}

# oci_start_ms: one podman run --rm, in ms on stdout; non-zero if it
# failed.
oci_start_ms() {
	local began took
	began=$(date +%s%N)
	mgr_podman "oci-bench-$RANDOM$RANDOM" --rm /bin/busybox true >>"$LOGS/bench-oci.log" 2>&1 || return 1
	took=$((($(date +%s%N) - began) / 1000000))
	echo "$took"
}

# median of the numbers on stdin
oci_median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

run_oci_bench() {
	selected bench-oci-hook || return 0
	local log=$LOGS/bench-oci.log with=() without=() i ms mw mo ratio rc
	: >"$log"
	if [[ ! -f $MGR_HOOK ]]; then
		result bench-oci-hook FAIL "the package did not install $MGR_HOOK"
		return
	fi
	if ! mgr_rootfs >>"$log" 2>&1; then
		result bench-oci-hook FAIL "could not build $MGR_ROOTFS: $(tail -n 2 "$log" | tr '\n' ' ')"
		return
	fi
	# One run each way first, not counted: podman's first start in a boot
	# sets up its storage and network state.
	oci_start_ms >/dev/null
	mv "$MGR_HOOK" "$MGR_HOOK_AWAY" && { oci_start_ms >/dev/null; mv "$MGR_HOOK_AWAY" "$MGR_HOOK"; }
	for ((i = 0; i < OCI_BENCH_RUNS; i++)); do
		if ! ms=$(oci_start_ms); then
			result bench-oci-hook FAIL "podman run with the hook failed (run $i): $(tail -n 2 "$log" | tr '\n' ' ')"
			rm -rf --one-file-system "$MGR_ROOTFS"
			return
		fi
		with+=("$ms")
		mv "$MGR_HOOK" "$MGR_HOOK_AWAY" || break
		ms=$(oci_start_ms)
		rc=$?
		mv "$MGR_HOOK_AWAY" "$MGR_HOOK"
		if ((rc != 0)); then
			result bench-oci-hook FAIL "podman run without the hook failed (run $i): $(tail -n 2 "$log" | tr '\n' ' ')"
			rm -rf --one-file-system "$MGR_ROOTFS"
			return
		fi
		without+=("$ms")
	done
	rm -rf --one-file-system "$MGR_ROOTFS"
	if ((${#with[@]} != OCI_BENCH_RUNS || ${#without[@]} != OCI_BENCH_RUNS)); then
		result bench-oci-hook FAIL "only ${#with[@]} and ${#without[@]} of $OCI_BENCH_RUNS runs each way"
		return
	fi
	mw=$(printf '%s\n' "${with[@]}" | oci_median)
	mo=$(printf '%s\n' "${without[@]}" | oci_median)
	ratio=$(awk -v a="$mw" -v b="$mo" 'BEGIN { printf "%.4f", a / b }')
	cat >"$OUT/bench-oci.json" <<-EOF
		{
		  "oci_hook_start_ms": $mw,
		  "oci_hook_start_ms_without": $mo,
		  "oci_hook_start_ratio": $ratio,
		  "runs": $OCI_BENCH_RUNS,
		  "with_ms": [$(IFS=,; echo "${with[*]}")],
		  "without_ms": [$(IFS=,; echo "${without[*]}")],
		  "how": "podman $(podman --version 2>/dev/null | awk '{ print $NF }') run --rm --rootfs busybox true, systemd cgroup manager, hook file installed or moved away, alternating",
		  "kernel": "$(uname -r)",
		  "cpu": "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)",
		  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		}
	EOF
	result bench-oci-hook PASS "median start ${mw} ms with the hook, ${mo} ms without (ratio $ratio, $OCI_BENCH_RUNS runs each)"
}

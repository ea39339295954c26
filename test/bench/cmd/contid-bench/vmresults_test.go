package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contid/contid/kernel"
)

// TestFoldVMResults writes an enforcing run's file the way the VM tier
// does and folds it into a host (tracking) report.
func TestFoldVMResults(t *testing.T) {
	keys := forkKeysFor(kernel.ModeEnforcing)
	vm := newReport(kernel.ModeEnforcing)
	vm.set(keys.ratio, 1.0137)
	vm.set(keys.ciLo, 1.004)
	vm.set(keys.ciHi, 1.03)
	vm.annotate(keys.ratio, "noise: wide")
	vm.detail(keys.detail, map[string]any{"pairs": 8})
	path := filepath.Join(t.TempDir(), "bench-enforcing.json")
	mach := machine{Kernel: "6.1.0-42-amd64", CPUModel: "QEMU TCG CPU version 2.5+", Date: "2026-01-02T03:04:05Z"}
	if err := vm.writeJSON(path, mach); err != nil {
		t.Fatal(err)
	}

	host := newReport(kernel.ModeTracking)
	foldVMResults(host, path)
	m := host.byKey[keys.ratio]
	if m.value == nil || *m.value != 1.0137 {
		t.Fatalf("%s = %v, want 1.0137", keys.ratio, m.value)
	}
	if got := m.verdict(); got != "yes" {
		t.Errorf("verdict %q, want yes (goal <= 1.02)", got)
	}
	for _, want := range []string{"VM tier", "guest kernel 6.1.0-42-amd64", "TCG", "2026-01-02T03:04:05Z", "noise: wide"} {
		if !strings.Contains(m.note, want) {
			t.Errorf("note %q lacks %q", m.note, want)
		}
	}
	if p25 := host.byKey[keys.p25]; p25.value != nil || !strings.HasPrefix(p25.why, "VM run: ") {
		t.Errorf("%s: value %v, why %q; want unmeasured, with the VM run's reason", keys.p25, p25.value, p25.why)
	}
	d, ok := host.details[keys.detail].(map[string]any)
	if !ok || d["figures"] == nil || d["source"] == nil {
		t.Errorf("details[%s] = %v, want source and figures", keys.detail, host.details[keys.detail])
	}
	// The host's own tracking figures are left alone.
	if tr := host.byKey["fork_exec_ratio_tracking"]; tr.value != nil {
		t.Errorf("tracking ratio set to %v by the fold", *tr.value)
	}
}

func TestFoldVMResultsAbsentOrWrong(t *testing.T) {
	keys := forkKeysFor(kernel.ModeEnforcing)
	dir := t.TempDir()

	host := newReport(kernel.ModeTracking)
	foldVMResults(host, filepath.Join(dir, "missing.json"))
	if m := host.byKey[keys.ratio]; m.value != nil || m.why != notMeasuredVM || m.verdict() != "NOT MEASURED" {
		t.Errorf("absent file: value %v, why %q, verdict %q", m.value, m.why, m.verdict())
	}

	// A tracking run's file must not pass for an enforcing one.
	tr := newReport(kernel.ModeTracking)
	tr.set("fork_exec_ratio_tracking", 1.001)
	p := filepath.Join(dir, "tracking.json")
	if err := tr.writeJSON(p, machine{}); err != nil {
		t.Fatal(err)
	}
	host = newReport(kernel.ModeTracking)
	foldVMResults(host, p)
	if m := host.byKey[keys.ratio]; m.value != nil || !strings.Contains(m.why, "want an enforcing run") {
		t.Errorf("tracking file: value %v, why %q", m.value, m.why)
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	host = newReport(kernel.ModeTracking)
	foldVMResults(host, bad)
	if m := host.byKey[keys.ratio]; m.value != nil || m.why == "" {
		t.Errorf("truncated file: value %v, why %q", m.value, m.why)
	}
}

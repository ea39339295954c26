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

// TestFoldOCIResults reads the VM tier's container start figures: the
// ratio comes from the two medians, and a file whose runs do not give
// its medians is refused rather than reported.
func TestFoldOCIResults(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name      string
		file      string
		wantRatio float64 // 0: unmeasured
	}{
		{"measured", `{"oci_hook_start_ms": 1250, "oci_hook_start_ms_without": 1000, "runs": 3,
			"with_ms": [1300, 1200, 1250], "without_ms": [990, 1000, 1010], "kernel": "6.1.0-42-amd64", "cpu": "QEMU TCG CPU", "date": "2026-12-06T13:00:00Z"}`, 1.25},
		{"even runs", `{"oci_hook_start_ms": 1100, "oci_hook_start_ms_without": 1000, "runs": 2,
			"with_ms": [1000, 1200], "without_ms": [900, 1100]}`, 1.1},
		{"median not from its runs", `{"oci_hook_start_ms": 900, "oci_hook_start_ms_without": 1000, "runs": 3,
			"with_ms": [1300, 1200, 1250], "without_ms": [990, 1000, 1010]}`, 0},
		{"runs missing", `{"oci_hook_start_ms": 1250, "oci_hook_start_ms_without": 1000, "runs": 10,
			"with_ms": [1250], "without_ms": [1000]}`, 0},
		{"truncated", `{"oci_hook_start_ms": 12`, 0},
		{"absent", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
			if tc.file != "" {
				if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			rep := newReport(kernel.ModeTracking)
			foldOCIResults(rep, path)
			m := rep.byKey["oci_hook_start_ratio"]
			switch {
			case tc.wantRatio == 0 && (m.value != nil || m.why == ""):
				t.Fatalf("ratio %v (why %q), want unmeasured with a reason", m.value, m.why)
			case tc.wantRatio != 0 && (m.value == nil || *m.value != tc.wantRatio):
				t.Fatalf("ratio %v (why %q), want %g", m.value, m.why, tc.wantRatio)
			}
		})
	}
}

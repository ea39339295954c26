package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/contid/contid/kernel"
)

// goal is a target a metric is judged against; a metric without one is
// context (a rate, a spread) and is shown without a verdict.
type goal struct {
	text string
	met  func(float64) bool
}

func atMost(limit float64, unit string) *goal {
	return &goal{text: fmt.Sprintf("<= %g%s", limit, unit), met: func(v float64) bool { return v <= limit }}
}

func atLeast(limit float64, unit string) *goal {
	return &goal{text: fmt.Sprintf(">= %g%s", limit, unit), met: func(v float64) bool { return v >= limit }}
}

func below(limit float64, unit string) *goal {
	return &goal{text: fmt.Sprintf("< %g%s", limit, unit), met: func(v float64) bool { return v < limit }}
}

type metric struct {
	key   string
	unit  string
	goal  *goal
	value *float64
	// why is the reason a metric has no value: the piece it needs did not
	// build or start. It is printed, never swallowed.
	why string
	// note qualifies a value, e.g. a rate that is only a lower bound.
	note string
}

// report gathers every figure of one run; phases fill it in as they go,
// so a failed phase leaves the others' figures intact.
type report struct {
	metrics []*metric
	byKey   map[string]*metric
	details map[string]any
	goBench []goBenchResult
	started time.Time
	mode    string
}

// forkMetrics are the fork phase's rows for the keys of one mode.
func forkMetrics(k forkKeys, limit float64) []*metric {
	return []*metric{
		{key: k.ratio, unit: "x", goal: atMost(limit, "")},
		{key: k.p25, unit: "x"},
		{key: k.p75, unit: "x"},
		{key: k.ciLo, unit: "x"},
		{key: k.ciHi, unit: "x"},
		{key: k.cpu, unit: "x"},
		{key: k.baseMS, unit: "ms"},
	}
}

// newReport lists the keys of issue 6 for a run whose configuration A
// loads contid in mode. Both modes' fork rows are always there: a host
// run fills the enforcing ones from the VM tier's file (or says it has
// none), a VM run says the tracking ones belong to the host.
func newReport(mode string) *report {
	r := &report{byKey: map[string]*metric{}, details: map[string]any{}, started: time.Now(), mode: mode}
	ms := forkMetrics(forkKeysFor(kernel.ModeTracking), 1.01)
	ms = append(ms, forkMetrics(forkKeysFor(kernel.ModeEnforcing), 1.02)...)
	ms = append(ms,
		&metric{key: stressKey("fork", kernel.ModeTracking), unit: "x", goal: atMost(1.01, "")},
		&metric{key: stressKey("exec", kernel.ModeTracking), unit: "x", goal: atMost(1.01, "")})
	if mode == kernel.ModeEnforcing {
		ms = append(ms,
			&metric{key: stressKey("fork", kernel.ModeEnforcing), unit: "x", goal: atMost(1.02, "")},
			&metric{key: stressKey("exec", kernel.ModeEnforcing), unit: "x", goal: atMost(1.02, "")})
	}
	// The rest of the keys of issue 6, in the order the table shows
	// them, so a key whose phase could not run still appears, as
	// unmeasured.
	for _, m := range append(ms, []*metric{
		{key: "audit_cpu_ratio_vs_auditd", unit: "x", goal: atMost(1.0, "")},
		{key: "contid_cpu_s_per_1000_events", unit: "s"},
		{key: "auditd_cpu_s_per_1000_events", unit: "s"},
		{key: "events_lost_1000eps", unit: "", goal: atMost(0, "")},
		{key: "max_events_per_s", unit: "/s"},
		{key: "tag_p50_ms", unit: "ms"},
		{key: "tag_p99_ms", unit: "ms", goal: below(2, " ms")},
		{key: "get_by_pid_p50_ms", unit: "ms"},
		{key: "get_by_pid_p99_ms", unit: "ms", goal: below(2, " ms")},
		{key: "list_10k_ms", unit: "ms", goal: below(100, " ms")},
		{key: "rss_idle_mb", unit: "MB"},
		{key: "rss_10k_mb", unit: "MB", goal: below(40, " MB")},
		{key: "bpf_map_kb_idle", unit: "kB"},
		{key: "bpf_map_kb_10k", unit: "kB"},
		{key: "stall_tag_p99_idle_ms", unit: "ms"},
		{key: "stall_tag_p99_attack_ms", unit: "ms"},
		{key: "stall_tag_p99_ratio", unit: "x", goal: atMost(2, "")},
		{key: "stall_list_p99_idle_ms", unit: "ms"},
		{key: "stall_list_p99_attack_ms", unit: "ms"},
		{key: "stall_list_p99_ratio", unit: "x", goal: atMost(2, "")},
		{key: "stall_tag_p99_control_ms", unit: "ms"},
		{key: "stall_tag_p99_control_ratio", unit: "x"},
		{key: "stall_list_p99_control_ms", unit: "ms"},
		{key: "stall_list_p99_control_ratio", unit: "x"},
		{key: "stall_rss_peak_mb", unit: "MB"},
		{key: "stall_fds_peak", unit: ""},
		{key: "stall_contidd_cpu_idle", unit: "CPUs"},
		{key: "stall_contidd_cpu_attack", unit: "CPUs"},
		{key: "flood_events_per_s_contid", unit: "/s"},
		{key: "flood_events_per_s_auditd", unit: "/s"},
		{key: "flood_ratio", unit: "x", goal: atLeast(1.0, "")},
		{key: "flood_lost", unit: "", goal: atMost(0, "")},
		{key: "flood_lost_auditd", unit: ""},
		{key: "upload_events_per_s", unit: "/s"},
		{key: "upload_cpu_s_per_1000_events", unit: "s"},
		{key: "oci_hook_start_ms", unit: "ms"},
		{key: "oci_hook_start_ms_without", unit: "ms"},
		{key: "oci_hook_start_ratio", unit: "x"},
	}...) {
		r.metrics = append(r.metrics, m)
		r.byKey[m.key] = m
	}
	if mode == kernel.ModeEnforcing {
		why := "this run measures enforcing mode; tracking is measured by make bench on the host"
		for _, k := range append(forkKeysFor(kernel.ModeTracking).all(), stressKey("fork", kernel.ModeTracking), stressKey("exec", kernel.ModeTracking)) {
			r.unmeasured(k, why)
		}
	}
	return r
}

func (r *report) set(key string, v float64) {
	m, ok := r.byKey[key]
	if !ok {
		m = &metric{key: key}
		r.metrics = append(r.metrics, m)
		r.byKey[key] = m
	}
	v = round(v, 4)
	m.value = &v
	m.why = ""
}

// unmeasured records why a metric has no value, unless it already has one.
func (r *report) unmeasured(key, why string) {
	if m, ok := r.byKey[key]; ok && m.value == nil && m.why == "" {
		m.why = why
	}
}

func (r *report) detail(key string, v any) { r.details[key] = v }

// annotate attaches a qualification to a metric's value.
func (r *report) annotate(key, note string) {
	if m, ok := r.byKey[key]; ok {
		m.note = note
	}
}

func (m *metric) verdict() string {
	switch {
	case m.goal == nil:
		return "-"
	case m.value == nil:
		return "NOT MEASURED"
	case m.goal.met(*m.value):
		return "yes"
	default:
		return "NO (missed)"
	}
}

func (r *report) printTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tVALUE\tGOAL\tMET\tNOTE")
	for _, m := range r.metrics {
		// An enforcing run (the VM tier) measures only the enforcing
		// keys; its file still lists every key, as unmeasured.
		if r.mode == kernel.ModeEnforcing && !strings.HasSuffix(m.key, "_"+kernel.ModeEnforcing) {
			continue
		}
		val := "-"
		if m.value != nil {
			val = strings.TrimSpace(fmt.Sprintf("%g %s", *m.value, m.unit))
		} else if m.why != "" {
			val = m.why
			if !strings.HasPrefix(val, "not measured") {
				val = "n/a: " + val
			}
			if len(val) > 70 {
				val = val[:67] + "..."
			}
		}
		g := "-"
		if m.goal != nil {
			g = m.goal.text
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.key, val, g, m.verdict(), m.note)
	}
	tw.Flush()
	if len(r.goBench) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "GO BENCHMARK\tns/op\tB/op\tallocs/op\t")
		for _, b := range r.goBench {
			fmt.Fprintf(tw, "%s\t%.1f\t%.0f\t%.0f\t\n", b.Package+"."+b.Name, b.NsPerOp, b.BytesPerOp, b.AllocsPerOp)
		}
		tw.Flush()
	}
}

type machine struct {
	Kernel   string `json:"kernel"`
	CPUModel string `json:"cpu_model"`
	Cores    int    `json:"cores"`
	MemoryMB int64  `json:"memory_mb"`
	Date     string `json:"date"`
	Load1    string `json:"loadavg_at_start"`
}

func describeMachine() machine {
	m := machine{Cores: runtime.NumCPU(), Date: time.Now().UTC().Format(time.RFC3339)}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		m.MemoryMB = int64(si.Totalram) * int64(si.Unit) >> 20
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.Load1 = strings.TrimSpace(string(b))
	}
	return m
}

func (r *report) writeJSON(path string, mach machine) error {
	out := map[string]any{
		"machine":          mach,
		"mode":             r.mode,
		"duration_s":       round(time.Since(r.started).Seconds(), 1),
		"details":          r.details,
		"go_benchmarks":    r.goBench,
		"goals":            map[string]any{},
		"not_measured":     map[string]string{},
		"schema_note":      "top-level numeric keys are the metrics of issue 6; null means not measured (see not_measured)",
		"generated_by_cmd": "make bench (test/bench/run.sh)",
	}
	notes := map[string]string{}
	out["notes"] = notes
	goals := out["goals"].(map[string]any)
	notMeasured := out["not_measured"].(map[string]string)
	missed, unmeasured := []string{}, []string{}
	for _, m := range r.metrics {
		if m.note != "" {
			notes[m.key] = m.note
		}
		if m.value != nil {
			out[m.key] = *m.value
		} else {
			out[m.key] = nil
			if m.why != "" {
				notMeasured[m.key] = m.why
			}
		}
		if m.goal != nil {
			v := m.verdict()
			goals[m.key] = map[string]string{"goal": m.goal.text, "met": v}
			switch {
			case m.value == nil:
				unmeasured = append(unmeasured, m.key)
			case v != "yes":
				missed = append(missed, m.key)
			}
		}
	}
	out["goals_missed"] = missed
	out["goals_not_measured"] = unmeasured
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // goals read "<= 1.01", not "\u003c= 1.01"
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	return nil
}

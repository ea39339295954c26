package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contid/contid/kernel"
)

func TestQuantile(t *testing.T) {
	for _, tc := range []struct {
		name string
		xs   []float64
		q    float64
		want float64
	}{
		{"single", []float64{7}, 0.99, 7},
		{"median odd", []float64{1, 2, 3}, 0.5, 2},
		{"median even interpolates", []float64{1, 2, 3, 4}, 0.5, 2.5},
		{"p99 of 101", seq(101), 0.99, 99},
		{"p25", []float64{0, 10, 20, 30, 40}, 0.25, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := quantile(tc.xs, tc.q); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("quantile(%v, %v) = %v, want %v", tc.xs, tc.q, got, tc.want)
			}
		})
	}
	if !math.IsNaN(quantile(nil, 0.5)) {
		t.Error("quantile of nothing should be NaN")
	}
}

func seq(n int) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = float64(i)
	}
	return xs
}

func TestSummarizeDoesNotReorderInput(t *testing.T) {
	xs := []float64{3, 1, 2}
	s := summarize(xs)
	if s.Median != 2 || s.Min != 1 || s.Max != 3 || s.N != 3 {
		t.Errorf("summary %+v", s)
	}
	if xs[0] != 3 {
		t.Error("summarize sorted its caller's slice")
	}
}

func TestParseBenchLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		ok   bool
		want goBenchResult
	}{
		{"BenchmarkEncode-2   	  123456	      9876 ns/op	     512 B/op	       3 allocs/op", true,
			goBenchResult{Name: "BenchmarkEncode", Iterations: 123456, NsPerOp: 9876, BytesPerOp: 512, AllocsPerOp: 3}},
		{"BenchmarkAttribute/live-8 	 1000000	      1043 ns/op	       0 B/op	       0 allocs/op", true,
			goBenchResult{Name: "BenchmarkAttribute/live", Iterations: 1000000, NsPerOp: 1043}},
		{"BenchmarkNoMem-2 100 12.5 ns/op", true, goBenchResult{Name: "BenchmarkNoMem", Iterations: 100, NsPerOp: 12.5}},
		{"BenchmarkSkipped-2", false, goBenchResult{}},
		{"BenchmarkOdd-2 abc 1 ns/op", false, goBenchResult{}},
	} {
		got, ok := parseBenchLine(tc.line)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseBenchLine(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseGoBenchTracksPackagesAndFailures(t *testing.T) {
	out := `goos: linux
pkg: github.com/contid/contid/journal
BenchmarkEncode-2 10 100 ns/op 0 B/op 0 allocs/op
ok  	github.com/contid/contid/journal	1.2s
pkg: github.com/contid/contid/kernel
BenchmarkAttribute-2 20 200 ns/op 16 B/op 1 allocs/op
FAIL	github.com/contid/contid/registry [build failed]
`
	res, fails := parseGoBench(strings.NewReader(out), nil)
	if len(res) != 2 || res[0].Package != "journal" || res[1].Package != "kernel" || res[1].AllocsPerOp != 1 {
		t.Errorf("results %+v", res)
	}
	if len(fails) != 1 || !strings.Contains(fails[0], "registry") {
		t.Errorf("failures %q", fails)
	}
}

func TestParseKV(t *testing.T) {
	kv := parseKV("offered=1000 done=998 ns=1000000000 late=2 junk x=y\n")
	if kv["offered"] != 1000 || kv["done"] != 998 || kv["late"] != 2 || len(kv) != 4 {
		t.Errorf("parseKV = %v", kv)
	}
}

func TestStressOpsPerSec(t *testing.T) {
	y := `---
system-info:
      cpus: 2
metrics:
    - stressor: fork
      bogo-ops: 278
      bogo-ops-per-second-real-time: 137.74
    - stressor: exec
      bogo-ops: 91
      bogo-ops-per-second-real-time: 39.194659
...
`
	p := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		stressor string
		want     float64
		ok       bool
	}{{"fork", 137.74, true}, {"exec", 39.194659, true}, {"clone", 0, false}} {
		got, err := stressOpsPerSec(p, tc.stressor)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.stressor, got, err, tc.want)
		}
	}
}

func TestVerdictNeverHidesAMiss(t *testing.T) {
	r := newReport(kernel.ModeTracking)
	r.set("tag_p99_ms", 2.5)
	r.set("list_10k_ms", 12)
	for key, want := range map[string]string{
		"tag_p99_ms":                 "NO (missed)",
		"list_10k_ms":                "yes",
		"rss_10k_mb":                 "NOT MEASURED",
		"fork_exec_ratio_spread_p25": "-",
	} {
		if got := r.byKey[key].verdict(); got != want {
			t.Errorf("%s: verdict %q, want %q", key, got, want)
		}
	}
}

func TestMedianCI95BracketsTheMedian(t *testing.T) {
	xs := []float64{0.99, 1.0, 1.01, 1.0, 0.98, 1.02, 1.0, 1.0}
	lo, hi := medianCI95(xs)
	m := summarize(xs).Median
	if !(lo <= m && m <= hi) || lo < 0.98 || hi > 1.02 {
		t.Errorf("CI [%v, %v] does not bracket median %v within the sample range", lo, hi, m)
	}
	if lo, _ := medianCI95([]float64{1, 2}); !math.IsNaN(lo) {
		t.Error("two samples should give no interval")
	}
}

func TestParseNice(t *testing.T) {
	for _, tc := range []struct {
		name, unit string
		want       int
		err        bool
	}{
		{"none", "[Service]\nExecStart=/usr/sbin/contidd\n", 0, false},
		{"set", "[Service]\nNice=-4\n", -4, false},
		{"spaces", "[Service]\n  Nice= 5 \n", 5, false},
		{"last wins", "[Service]\nNice=-4\nNice=-2\n", -2, false},
		{"a comment naming it", "# Nice=-19 would starve the rest\nNice=-4\n", -4, false},
		{"not a number", "Nice=high\n", 0, true},
		{"out of range", "Nice=-21\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseNice(tc.unit)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("parseNice: %d, %v; want %d, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

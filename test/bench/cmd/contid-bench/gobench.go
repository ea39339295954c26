package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

type goBenchResult struct {
	Package     string  `json:"package"`
	Name        string  `json:"name"`
	Iterations  int64   `json:"iterations"`
	NsPerOp     float64 `json:"ns_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	AllocsPerOp float64 `json:"allocs_per_op"`
}

// goBenchPackages are the packages whose hot paths issue 6 asks about:
// attribution lookup (kernel), record parsing (kernel/audit), entry
// encoding (journal), and the registry.
var goBenchPackages = []string{"./kernel/...", "./registry/...", "./journal/..."}

func goBenchPhase(cfg *config, rep *report) error {
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", "1s", "-count", "1", "-timeout", "5m"}, goBenchPackages...)
	if cfg.quick {
		args[7] = "200ms"
	}
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	cmd := exec.Command(goBin, args...)
	cmd.Dir = cfg.root
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	progress("go %s", strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("go test: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		pw.Close()
		done <- err
	}()
	results, failures := parseGoBench(pr, func(line string) { progress("  %s", line) })
	err := <-done
	rep.goBench = results
	rep.detail("go_benchmark_failures", failures)
	if err != nil {
		// A package that does not build or whose benchmark fails is
		// reported; the others' figures still count.
		return fmt.Errorf("go test -bench: %w (%d results parsed; failures: %s)", err, len(results), strings.Join(failures, "; "))
	}
	if len(results) == 0 {
		return fmt.Errorf("go test -bench: no benchmarks found in %s", strings.Join(goBenchPackages, " "))
	}
	return nil
}

// parseGoBench reads `go test -bench -benchmem` output. Lines look like
//
//	pkg: github.com/contid/contid/journal
//	BenchmarkEncode-2   	  123456	      9876 ns/op	     512 B/op	       3 allocs/op
func parseGoBench(r io.Reader, echo func(string)) ([]goBenchResult, []string) {
	var results []goBenchResult
	var failures []string
	pkg := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if echo != nil {
			echo(line)
		}
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(strings.TrimPrefix(line, "pkg: "), "github.com/contid/contid/")
		case strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "--- FAIL") || strings.Contains(line, "[build failed]") || strings.Contains(line, "[setup failed]"):
			failures = append(failures, strings.TrimSpace(line))
		case strings.HasPrefix(line, "Benchmark"):
			if res, ok := parseBenchLine(line); ok {
				res.Package = pkg
				results = append(results, res)
			}
		}
	}
	return results, failures
}

func parseBenchLine(line string) (goBenchResult, bool) {
	f := strings.Fields(line)
	if len(f) < 4 {
		return goBenchResult{}, false
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return goBenchResult{}, false
	}
	res := goBenchResult{Name: trimProcs(f[0]), Iterations: n}
	seen := false
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			continue
		}
		switch f[i+1] {
		case "ns/op":
			res.NsPerOp, seen = v, true
		case "B/op":
			res.BytesPerOp = v
		case "allocs/op":
			res.AllocsPerOp = v
		}
	}
	return res, seen
}

// trimProcs drops the -GOMAXPROCS suffix so names compare across machines.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}

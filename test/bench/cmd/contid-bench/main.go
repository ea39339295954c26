// Command contid-bench measures what contid costs on this machine: fork and
// exec overhead with its programs attached or not, the audit pipeline
// against Debian's auditd, D-Bus API latency and memory with 10,000
// containers, and the hot-path Go benchmarks of the other packages.
//
// It alternates the A and B configurations round by round inside one run
// so that drift in the machine (other work, thermal, page cache) lands on
// both sides; the figures are medians and ratios of medians, with the
// spread printed next to them. It never fails on a missed goal: `make
// bench` reports, `make test` asserts.
//
// This host runs contid in tracking mode only. With -mode enforcing (the
// VM tier, whose kernel runs the BPF LSM: test/vm/guest/bench.sh) the A
// rounds load every LSM program too and the figures go under the
// *_enforcing keys; a host run folds the VM tier's last such file
// (-vm-results) into its own table, saying where it came from.
//
// Everything it creates (cgroups, pin directories, processes, audit rules,
// private dbus-daemon and journald) is registered with a cleanup stack that
// runs on every exit path, including SIGINT and SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/contid/contid/kernel"
)

type config struct {
	root      string // repository root, for the go benchmarks and units/
	binDir    string // bin/ with contidd
	loadgen   string // the compiled loadgen.c
	out       string
	phases    map[string]bool
	quick     bool
	forkPairs int
	forkRound time.Duration
	// mode is the kernel.Load mode of configuration A: "tracking" on
	// this host, "enforcing" in the VM tier where the BPF LSM runs.
	mode string
	// budget bounds the fork phase's duration (0: a fixed number of
	// pairs); under qemu TCG one fork+exec takes tens of milliseconds.
	budget time.Duration
	// vmResults is the enforcing run's results file from the VM tier,
	// folded into this run's table and results.json.
	vmResults string
}

var (
	startTime = time.Now()
	cleanups  cleanupStack
)

// progress prints one line per step to stderr, so a person watching
// `make bench` sees where the minutes go.
func progress(format string, args ...any) {
	el := time.Since(startTime).Round(time.Second)
	fmt.Fprintf(os.Stderr, "[bench %6s] %s\n", el, fmt.Sprintf(format, args...))
}

// cleanupStack runs undo actions last-in first-out, once each, whether
// the run ends normally, by a failed phase or by a signal.
type cleanupStack struct {
	mu    sync.Mutex
	funcs []cleanupFunc
	next  int
	// closed is set once a signal started the final cleanup: whatever a
	// phase still creates after that is undone at once, not leaked.
	closed bool
}

// exiting is held by the signal handler from the start of its cleanup
// until os.Exit, so main cannot return (ending the process) midway.
var exiting sync.Mutex

type cleanupFunc struct {
	id   int
	name string
	fn   func() error
}

// push registers fn and returns a function that runs it early (and
// removes it from the stack), for phases that tidy up as they finish.
func (c *cleanupStack) push(name string, fn func() error) func() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = fn()
		return func() {}
	}
	c.next++
	id := c.next
	c.funcs = append(c.funcs, cleanupFunc{id: id, name: name, fn: fn})
	c.mu.Unlock()
	return func() { c.runOne(id) }
}

func (c *cleanupStack) runOne(id int) {
	c.mu.Lock()
	var f *cleanupFunc
	for i := range c.funcs {
		if c.funcs[i].id == id {
			cf := c.funcs[i]
			f = &cf
			c.funcs = append(c.funcs[:i], c.funcs[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	if f != nil {
		if err := f.fn(); err != nil {
			progress("cleanup %s: %v", f.name, err)
		}
	}
}

func (c *cleanupStack) runAll() {
	for {
		c.mu.Lock()
		if len(c.funcs) == 0 {
			c.mu.Unlock()
			return
		}
		f := c.funcs[len(c.funcs)-1]
		c.funcs = c.funcs[:len(c.funcs)-1]
		c.mu.Unlock()
		if err := f.fn(); err != nil {
			progress("cleanup %s: %v", f.name, err)
		}
	}
}

var allPhases = []string{"fork", "stress", "api", "audit", "flood", "gobench", "stall", "upload"}

// phaseKeys are the metrics each phase produces in a mode, so a phase
// left out shows its metrics as not measured, with the reason.
func phaseKeys(phase, mode string) []string {
	switch phase {
	case "fork":
		return forkKeysFor(mode).all()
	case "stress":
		return []string{stressKey("fork", mode), stressKey("exec", mode)}
	case "audit":
		return []string{"audit_cpu_ratio_vs_auditd", "contid_cpu_s_per_1000_events", "auditd_cpu_s_per_1000_events", "events_lost_1000eps", "max_events_per_s"}
	case "api":
		return []string{"tag_p50_ms", "tag_p99_ms", "get_by_pid_p50_ms", "get_by_pid_p99_ms", "list_10k_ms", "rss_idle_mb", "rss_10k_mb", "bpf_map_kb_idle", "bpf_map_kb_10k"}
	case "stall":
		return stallKeys
	case "flood":
		return floodKeys
	case "upload":
		return uploadKeys
	}
	return nil
}

// enforcingPhases are the phases that load contid's programs themselves
// and so can measure enforcing mode; the others start contidd, whose mode
// is its own configuration's.
var enforcingPhases = map[string]bool{"fork": true, "stress": true}

// busy reports whether a /proc/loadavg line shows more runnable work than
// cores over the last minute.
func busy(loadavg string, cores int) bool {
	f := strings.Fields(loadavg)
	if len(f) == 0 {
		return false
	}
	l, err := strconv.ParseFloat(f[0], 64)
	return err == nil && l > float64(cores)
}

func main() {
	var cfg config
	var phases string
	flag.StringVar(&cfg.root, "root", ".", "repository root")
	flag.StringVar(&cfg.binDir, "bin", "bin", "directory holding contidd")
	flag.StringVar(&cfg.loadgen, "loadgen", "", "path of the compiled test/bench/loadgen.c")
	flag.StringVar(&cfg.out, "out", "bench/results.json", "results file")
	flag.StringVar(&phases, "phases", strings.Join(allPhases, ","), "phases to run: "+strings.Join(allPhases, ","))
	flag.BoolVar(&cfg.quick, "quick", false, "fewer rounds (a smoke run, figures are noisier)")
	flag.StringVar(&cfg.mode, "mode", kernel.ModeTracking, "contid's mode in configuration A: tracking, or enforcing (needs the BPF LSM: the VM tier)")
	flag.DurationVar(&cfg.budget, "budget", 0, "bound the fork phase to about this long (e.g. 150s under qemu TCG); 0: a fixed number of pairs")
	flag.StringVar(&cfg.vmResults, "vm-results", "", "results of an enforcing run in the VM tier (test/vm/out/bench-enforcing.json) to fold into this run's report")
	flag.Parse()
	if *hostileSocket != "" {
		runHostile()
		return
	}
	if *refuseSocket != "" {
		runRefuser()
		return
	}
	if *floodOpen != "" {
		os.Exit(runFloodProducer())
	}
	phasesSet := false
	flag.Visit(func(f *flag.Flag) { phasesSet = phasesSet || f.Name == "phases" })

	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "contid-bench: needs root (eBPF, cgroups, audit); run `sudo make bench`")
		os.Exit(2)
	}
	if cfg.loadgen == "" {
		fmt.Fprintln(os.Stderr, "contid-bench: -loadgen is required (test/bench/run.sh builds it)")
		os.Exit(2)
	}
	switch cfg.mode {
	case kernel.ModeTracking:
	case kernel.ModeEnforcing:
		if !phasesSet {
			phases = "fork"
		}
	default:
		fmt.Fprintf(os.Stderr, "contid-bench: -mode %q: want tracking or enforcing\n", cfg.mode)
		os.Exit(2)
	}
	if cfg.budget < 0 {
		fmt.Fprintln(os.Stderr, "contid-bench: -budget must not be negative")
		os.Exit(2)
	}
	cfg.phases = map[string]bool{}
	known := map[string]bool{}
	for _, p := range allPhases {
		known[p] = true
	}
	for _, p := range strings.Split(phases, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !known[p] {
			fmt.Fprintf(os.Stderr, "contid-bench: unknown phase %q (want some of %s)\n", p, strings.Join(allPhases, ","))
			os.Exit(2)
		}
		// The other phases would measure contidd in whatever mode its
		// configuration picks and file it under the tracking keys.
		if cfg.mode == kernel.ModeEnforcing && !enforcingPhases[p] {
			fmt.Fprintf(os.Stderr, "contid-bench: phase %s cannot run with -mode enforcing (only fork and stress load contid themselves); run it in tracking mode\n", p)
			os.Exit(2)
		}
		cfg.phases[p] = true
	}
	cfg.forkPairs, cfg.forkRound = 12, 1500*time.Millisecond
	if cfg.quick {
		cfg.forkPairs, cfg.forkRound = 3, 500*time.Millisecond
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		exiting.Lock()
		progress("got %v: cleaning up", s)
		cleanups.mu.Lock()
		cleanups.closed = true
		cleanups.mu.Unlock()
		cleanups.runAll()
		progress("cleanup done")
		os.Exit(130)
	}()

	// However main ends, it waits for a signal-started cleanup to finish.
	defer exiting.Lock()
	rep := newReport(cfg.mode)
	mach := describeMachine()
	progress("machine: %s, %s, %d cores, %d MB, load %s", mach.Kernel, mach.CPUModel, mach.Cores, mach.MemoryMB, mach.Load1)

	var failed []string
	run := func(name string, fn func(*config, *report) error) {
		if !cfg.phases[name] {
			for _, k := range phaseKeys(name, cfg.mode) {
				rep.unmeasured(k, "phase "+name+" not selected (-phases)")
			}
			return
		}
		t0 := time.Now()
		progress("phase %s: start", name)
		err := fn(&cfg, rep)
		// A phase tidies up after itself; whatever it left registered is
		// undone here so the next phase starts from a clean host.
		cleanups.runAll()
		if err != nil {
			progress("phase %s: FAILED after %s: %v", name, time.Since(t0).Round(time.Second), err)
			rep.detail("phase_error_"+name, err.Error())
			failed = append(failed, name)
			return
		}
		progress("phase %s: done in %s", name, time.Since(t0).Round(time.Second))
	}
	run("fork", forkPhase)
	run("stress", stressPhase)
	run("api", apiPhase)
	run("audit", auditPhase)
	run("flood", floodPhase)
	run("gobench", goBenchPhase)
	run("stall", stallPhase)
	run("upload", uploadPhase)
	if cfg.mode == kernel.ModeTracking {
		foldVMResults(rep, cfg.vmResults)
		if cfg.vmResults != "" {
			foldOCIResults(rep, filepath.Join(filepath.Dir(cfg.vmResults), "bench-oci.json"))
		}
	}

	cleanups.mu.Lock()
	interrupted := cleanups.closed
	cleanups.mu.Unlock()
	if interrupted {
		// Keep the last complete results.json rather than a partial one.
		return
	}
	fmt.Println()
	rep.printTable(os.Stdout)
	// Figures taken while other work loads the machine are noisy; say so
	// next to them rather than let them pass as quiet-machine figures.
	if end := describeMachine().Load1; busy(mach.Load1, mach.Cores) || busy(end, mach.Cores) {
		msg := fmt.Sprintf("WARNING: the machine was busy (load average %s at start, %s at end, %d cores): latencies and ratios are noisier than on an idle machine", mach.Load1, end, mach.Cores)
		fmt.Println("\n" + msg)
		rep.detail("warning_busy_machine", msg)
	}
	if err := rep.writeJSON(cfg.out, mach); err != nil {
		fmt.Fprintln(os.Stderr, "contid-bench:", err)
		exiting.Lock()
		os.Exit(1)
	}
	progress("wrote %s", cfg.out)
	// A host run reports a failed phase in its table and goes on: make
	// bench is not a test. An enforcing run exists only for its figure,
	// and its caller (the VM tier's bench.sh) must see it missing.
	if cfg.mode == kernel.ModeEnforcing && len(failed) > 0 {
		fmt.Fprintf(os.Stderr, "contid-bench: -mode enforcing: phase %s failed (see phase_error_* in %s)\n", strings.Join(failed, ", "), cfg.out)
		exiting.Lock()
		os.Exit(1)
	}
}

package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/contid/contid"
	"github.com/contid/contid/kernel"
)

// forkKeys names the fork phase's metrics for one mode. The tracking
// names predate the enforcing ones and stay as they are; every enforcing
// key ends in _enforcing, so a host run can carry the VM tier's figures
// next to its own.
type forkKeys struct {
	ratio, p25, p75, ciLo, ciHi, cpu, baseMS string
	// detail is the key of the phase's raw figures under "details".
	detail string
}

func forkKeysFor(mode string) forkKeys {
	if mode == kernel.ModeEnforcing {
		return forkKeys{
			ratio:  "fork_exec_ratio_enforcing",
			p25:    "fork_exec_ratio_spread_p25_enforcing",
			p75:    "fork_exec_ratio_spread_p75_enforcing",
			ciLo:   "fork_exec_ratio_ci95_lo_enforcing",
			ciHi:   "fork_exec_ratio_ci95_hi_enforcing",
			cpu:    "fork_exec_cpu_ratio_enforcing",
			baseMS: "fork_exec_base_ms_enforcing",
			detail: "fork_exec_enforcing",
		}
	}
	return forkKeys{
		ratio:  "fork_exec_ratio_tracking",
		p25:    "fork_exec_ratio_spread_p25",
		p75:    "fork_exec_ratio_spread_p75",
		ciLo:   "fork_exec_ratio_ci95_lo",
		ciHi:   "fork_exec_ratio_ci95_hi",
		cpu:    "fork_exec_cpu_ratio_tracking",
		baseMS: "fork_exec_base_ms",
		detail: "fork_exec",
	}
}

func (k forkKeys) all() []string {
	return []string{k.ratio, k.p25, k.p75, k.ciLo, k.ciHi, k.cpu, k.baseMS}
}

func stressKey(stressor, mode string) string {
	return "stress_" + stressor + "_ratio_" + mode
}

// attached is contid's kernel side loaded from a private pin directory,
// with one cgroup tagged: configuration A of the fork/exec comparison.
type attached struct {
	bpf    *kernel.BPF
	pinDir string
	id     contid.ID
	undo   func()
}

// attach loads the programs and tags cg. Every A round loads afresh and
// every B round runs after a full detach (pins removed, fds closed), so B
// pays for no program at all: the fork tracepoint is global, an untagged
// cgroup alone would not be a baseline.
//
// mode is kernel.Load's: in enforcing mode every LSM program (task_alloc
// and the guards) is attached as well, and Load fails where the kernel
// refuses them rather than falling back to tracking.
func attach(cg benchCgroup, mode string) (*attached, error) {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	pinDir := "/sys/fs/bpf/contid-bench-" + hex.EncodeToString(rnd[:])
	a := &attached{pinDir: pinDir}
	a.undo = cleanups.push("bpf pins "+pinDir, a.close)
	b, err := kernel.Load(kernel.Options{PinDir: pinDir, Mode: mode})
	if errors.Is(err, kernel.ErrEnforcingUnavailable) {
		a.undo()
		return nil, fmt.Errorf("loading contid's programs in enforcing mode: %w (this kernel cannot run contid's BPF LSM programs; the VM tier measures enforcing mode: make test-vm)", err)
	}
	if err != nil {
		a.undo()
		return nil, fmt.Errorf("loading contid's programs in %s mode: %w", mode, err)
	}
	a.bpf = b
	// A figure filed under the wrong mode's key would be worse than
	// none: check what Load says it did, every round.
	if got, why := b.Enforcement(); string(got) != mode {
		a.undo()
		return nil, fmt.Errorf("contid loaded in %s mode (%s), want %s", got, why, mode)
	}
	cgid, err := cg.id()
	if err != nil {
		a.undo()
		return nil, err
	}
	if a.id, err = b.AllocateID(); err != nil {
		a.undo()
		return nil, fmt.Errorf("allocating an ID: %w", err)
	}
	if _, err := b.TagCgroup(cgid, contid.Tag{Chain: contid.Chain{a.id}}); err != nil {
		a.undo()
		return nil, fmt.Errorf("tagging %s: %w", cg.rel(), err)
	}
	return a, nil
}

func (a *attached) close() error {
	var errs []error
	if a.bpf != nil {
		errs = append(errs, a.bpf.Close())
		a.bpf = nil
	}
	if err := kernel.Unpin(a.pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	_ = os.RemoveAll(a.pinDir)
	return errors.Join(errs...)
}

// forkPrograms are contid's fork-inheritance programs in a mode, by the
// names the kernel lists them under: configuration B must run with none
// of them loaded by anyone.
func forkPrograms(mode string) []string {
	if mode == kernel.ModeEnforcing {
		return []string{"contid_fork", lsmForkProgram}
	}
	return []string{"contid_fork"}
}

// lsmForkProgram is the enforcing-mode fork hook (lsm/task_alloc).
const lsmForkProgram = "contid_task_alloc"

// verifyEnforcing proves configuration A runs the BPF LSM: the task_alloc
// link pinned in this run's directory runs a program of type LSM. Load's
// own report could only say what it meant to do.
func (a *attached) verifyEnforcing() error {
	pin := filepath.Join(a.pinDir, "link_"+lsmForkProgram)
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return fmt.Errorf("enforcing mode: opening %s: %w", pin, err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return fmt.Errorf("enforcing mode: link %s: %w", pin, err)
	}
	p, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		return fmt.Errorf("enforcing mode: program of %s: %w", pin, err)
	}
	defer p.Close()
	pi, err := p.Info()
	if err != nil {
		return fmt.Errorf("enforcing mode: program of %s: %w", pin, err)
	}
	if pi.Type != ebpf.LSM {
		return fmt.Errorf("enforcing mode: %s runs a %s program, not an LSM one", pin, pi.Type)
	}
	return nil
}

// verifyInheritance proves configuration A measures what it claims: a
// process forked inside the cgroup carries the cgroup's ID.
func (a *attached) verifyInheritance(cg benchCgroup) error {
	cmd := exec.Command("/bin/sleep", "30")
	if err := cg.start(cmd); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	got, err := a.bpf.PIDID(uint32(cmd.Process.Pid))
	if err != nil {
		return fmt.Errorf("reading the tag of pid %d: %w", cmd.Process.Pid, err)
	}
	if got != a.id {
		return fmt.Errorf("pid %d in the tagged cgroup has ID %d, want %d: the fork program is not working", cmd.Process.Pid, got, a.id)
	}
	return nil
}

// runLoadgen runs loadgen inside cg and returns its key=value output.
func runLoadgen(cfg *config, cg benchCgroup, args ...string) (map[string]float64, error) {
	cmd := exec.Command(cfg.loadgen, args...)
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cg.start(cmd); err != nil {
		return nil, err
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("loadgen %v: %w", args, err)
	}
	return parseKV(out.String()), nil
}

func parseKV(s string) map[string]float64 {
	kv := map[string]float64{}
	for _, f := range strings.Fields(s) {
		if k, v, ok := strings.Cut(f, "="); ok {
			if x, err := strconv.ParseFloat(v, 64); err == nil {
				kv[k] = x
			}
		}
	}
	return kv
}

// abResult holds an A/B comparison: per pair, the ratio A/B of the
// primary figure (and of the secondary one, if the measure gives one),
// and each side's raw figures.
type abResult struct {
	ratios, ratios2, as, bs []float64
	// foreignB counts B rounds during which some other contid had its
	// fork program loaded: those baselines are not clean.
	foreignB int
	// stopped says why fewer pairs than planned ran (the time budget).
	stopped string
}

// abPlan says how many A/B pairs to run and in which mode A loads contid.
type abPlan struct {
	mode  string
	pairs int
	// With a deadline, pairs is an upper bound: no ABBA block is started
	// that would likely end after it, once minPairs (even) are done.
	deadline time.Time
	minPairs int
}

// abRounds runs measure in configurations A (attached) and B (detached),
// pairs ordered ABBA so a drift in the machine does not favour one side.
func abRounds(cg benchCgroup, plan abPlan, label string, measure func() (float64, float64, error)) (abResult, error) {
	var res abResult
	verified := false
	var longest time.Duration
	for i := 0; i < plan.pairs; i++ {
		// An ABBA block is two pairs; stopping only between blocks keeps
		// the order balanced.
		if !plan.deadline.IsZero() && i%2 == 0 && i >= plan.minPairs {
			if left := time.Until(plan.deadline); left < 2*longest {
				res.stopped = fmt.Sprintf("time budget: %d pairs done, %s left, a pair takes up to %s", i, left.Round(time.Second), longest.Round(100*time.Millisecond))
				progress("%s: %s", label, res.stopped)
				break
			}
		}
		t0 := time.Now()
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		var a, b, a2, b2 float64
		for _, withContid := range order {
			if withContid {
				att, err := attach(cg, plan.mode)
				if err != nil {
					return res, err
				}
				if !verified {
					if plan.mode == kernel.ModeEnforcing {
						if err := att.verifyEnforcing(); err != nil {
							att.undo()
							return res, err
						}
					}
					if err := att.verifyInheritance(cg); err != nil {
						att.undo()
						return res, err
					}
					verified = true
				}
				a, a2, err = measure()
				att.undo()
				if err != nil {
					return res, err
				}
			} else {
				if n, err := loadedPrograms(forkPrograms(plan.mode)...); err == nil && n > 0 {
					res.foreignB++
					progress("%s: %d fork program(s) of another contid (%s) are loaded during a baseline round", label, n, strings.Join(forkPrograms(plan.mode), ", "))
				}
				var err error
				if b, b2, err = measure(); err != nil {
					return res, err
				}
			}
		}
		res.ratios = append(res.ratios, a/b)
		if b2 > 0 {
			res.ratios2 = append(res.ratios2, a2/b2)
		}
		res.as = append(res.as, a)
		res.bs = append(res.bs, b)
		longest = max(longest, time.Since(t0))
		progress("%s pair %d/%d: with contid %.4g, without %.4g, ratio %.4f", label, i+1, plan.pairs, a, b, a/b)
	}
	return res, nil
}

func forkPhase(cfg *config, rep *report) error {
	keys := forkKeysFor(cfg.mode)
	err := forkRun(cfg, rep, keys)
	if err != nil {
		rep.unmeasured(keys.ratio, err.Error())
	}
	return err
}

func forkRun(cfg *config, rep *report, keys forkKeys) error {
	t0 := time.Now()
	plan := abPlan{mode: cfg.mode, pairs: cfg.forkPairs}
	minIters := 100
	if cfg.budget > 0 {
		// Within a budget, run as many pairs as fit (more pairs narrow
		// the interval of the median), but never fewer than two ABBA
		// blocks: under that the median is not worth reporting.
		plan.deadline = t0.Add(cfg.budget)
		plan.pairs, plan.minPairs = 40, 4
		// Under qemu TCG one fork+exec takes tens of milliseconds; 100
		// iterations would make rounds long and pairs few.
		minIters = 20
	}
	tree, err := makeCgroupTree("contid-bench-fork")
	if err != nil {
		return err
	}
	cg, err := tree.child("load")
	if err != nil {
		return err
	}
	// Warm-up, and calibration: each round should last about
	// cfg.forkRound, long enough to average out scheduler noise and short
	// enough that many ABBA pairs fit in the time budget even when the
	// machine is slow.
	kv, err := runLoadgen(cfg, cg, "loop", "50", "/bin/true")
	if err != nil {
		return err
	}
	perOp := kv["ns"] / kv["n"]
	n := int(float64(cfg.forkRound.Nanoseconds()) / perOp)
	n = max(minIters, min(n, 3000))
	iters := strconv.Itoa(n)
	progress("fork/exec (%s): %.2f ms per fork+exec+wait at warm-up; %d iterations per round", cfg.mode, perOp/1e6, n)
	if cfg.budget > 0 {
		progress("fork/exec: time budget %s: %d to %d pairs, as many as fit", cfg.budget, plan.minPairs, plan.pairs)
	}
	measure := func() (float64, float64, error) {
		kv, err := runLoadgen(cfg, cg, "loop", iters, "/bin/true")
		if err != nil {
			return 0, 0, err
		}
		// ms per fork+exec+wait, wall clock and CPU
		return kv["ns"] / kv["n"] / 1e6, kv["cpu_ns"] / kv["n"] / 1e6, nil
	}
	res, err := abRounds(cg, plan, "fork+exec+wait /bin/true (ms/op)", measure)
	if err != nil {
		return err
	}
	rs := summarize(res.ratios)
	sa, sb := summarize(res.as), summarize(res.bs)
	cs := summarize(res.ratios2)
	rep.set(keys.cpu, cs.Median)
	lo, hi := medianCI95(res.ratios)
	if !math.IsNaN(lo) {
		rep.set(keys.ciLo, lo)
		rep.set(keys.ciHi, hi)
		if hi-lo > 0.02 {
			rep.annotate(keys.ratio, fmt.Sprintf("noise: 95%% CI of the median %.3f..%.3f is wider than the effect", lo, hi))
		}
	}
	if res.foreignB > 0 {
		rep.annotate(keys.cpu, fmt.Sprintf("%d baseline rounds had another contid's fork program loaded", res.foreignB))
	}
	rep.set(keys.ratio, rs.Median)
	rep.set(keys.p25, rs.P25)
	rep.set(keys.p75, rs.P75)
	rep.set(keys.baseMS, sb.Median)
	d := map[string]any{
		"method":               "fork()+execve(/bin/true)+waitpid() in C (test/bench/loadgen.c), in a cgroup tagged by contid (A) vs contid fully detached (B), ABBA pairs",
		"mode":                 cfg.mode,
		"iterations_per_round": n,
		"pairs":                len(res.ratios),
		"ratio_per_pair":       rs,
		"cpu_ratio_per_pair":   cs,
		"baseline_rounds_with_foreign_contid_programs": res.foreignB,
		"ms_per_op_with":    sa,
		"ms_per_op_without": sb,
		"ratio_of_medians":  round(sa.Median/sb.Median, 4),
	}
	if cfg.mode == kernel.ModeEnforcing {
		d["enforcement"] = "every A round loads all LSM programs (task_alloc and the guards) and checks Enforcement()=enforcing; the first also checks that the pinned task_alloc link runs an LSM program"
	}
	if cfg.budget > 0 {
		d["time_budget_s"] = cfg.budget.Seconds()
		d["pairs_max"] = plan.pairs
	}
	if res.stopped != "" {
		d["stopped_early"] = res.stopped
	}
	rep.detail(keys.detail, d)
	progress("fork/exec (%s): ratio median %.4f over %d pairs (p25 %.4f, p75 %.4f, bootstrap 95%% CI of the median %.4f..%.4f), CPU ratio %.4f, %.3f ms/op without contid",
		cfg.mode, rs.Median, len(res.ratios), rs.P25, rs.P75, lo, hi, cs.Median, sb.Median)
	return nil
}

// stressPhase runs stress-ng's fork and exec stressors the same A/B way.
// The exec stressor refuses to run as root, so both run as nobody; the
// cgroup placement is what matters for contid, not the user.
func stressPhase(cfg *config, rep *report) error {
	if _, err := exec.LookPath("stress-ng"); err != nil {
		rep.unmeasured(stressKey("fork", cfg.mode), "stress-ng not installed")
		rep.unmeasured(stressKey("exec", cfg.mode), "stress-ng not installed")
		return fmt.Errorf("stress-ng: %w", err)
	}
	tree, err := makeCgroupTree("contid-bench-stress")
	if err != nil {
		return err
	}
	cg, err := tree.child("load")
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "contid-bench-stress-")
	if err != nil {
		return err
	}
	cleanups.push("stress dir", func() error { return os.RemoveAll(work) })
	if err := os.Chmod(work, 0o777); err != nil {
		return err
	}
	secs := "3"
	pairs := 4
	if cfg.quick {
		secs, pairs = "2", 2
	}
	var errs []error
	for _, stressor := range []string{"fork", "exec"} {
		yaml := filepath.Join(work, stressor+".yaml")
		measure := func() (float64, float64, error) {
			cmd := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
				"stress-ng", "--"+stressor, "1", "--timeout", secs, "--metrics-brief", "--yaml", yaml, "--temp-path", work)
			cmd.Dir = work
			out, err := startAndWait(cg, cmd)
			if err != nil {
				return 0, 0, fmt.Errorf("stress-ng --%s: %w: %s", stressor, err, out)
			}
			ops, err := stressOpsPerSec(yaml, stressor)
			if err != nil {
				return 0, 0, err
			}
			// Seconds per bogo op, so that A/B > 1 means contid costs, as
			// for the fork/exec loop.
			return 1 / ops, 0, nil
		}
		key := stressKey(stressor, cfg.mode)
		res, err := abRounds(cg, abPlan{mode: cfg.mode, pairs: pairs}, "stress-ng --"+stressor+" (s/bogo-op)", measure)
		if err != nil {
			rep.unmeasured(key, err.Error())
			errs = append(errs, err)
			continue
		}
		as, bs := res.as, res.bs
		rs := summarize(res.ratios)
		rep.set(key, rs.Median)
		rep.annotate(key, fmt.Sprintf("p25..p75 of %d pairs: %.3f..%.3f", len(res.ratios), rs.P25, rs.P75))
		detailKey := "stress_" + stressor
		if cfg.mode != kernel.ModeTracking {
			detailKey += "_" + cfg.mode
		}
		rep.detail(detailKey, map[string]any{
			"method":         "stress-ng --" + stressor + " 1 --timeout " + secs + "s as nobody inside the cgroup, A (contid) vs B (detached), ABBA pairs; ratio of seconds per bogo op",
			"ratio_per_pair": rs,
			"baseline_rounds_with_foreign_contid_programs": res.foreignB,
			"bogo_ops_per_s_with":                          summarize(invert(as)),
			"bogo_ops_per_s_without":                       summarize(invert(bs)),
			"stress_ng_seconds_each":                       secs,
			"pairs":                                        pairs,
			"ratio_of_median_rates_ba":                     round(summarize(invert(bs)).Median/summarize(invert(as)).Median, 4),
		})
	}
	return errors.Join(errs...)
}

func invert(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = 1 / x
	}
	return out
}

func startAndWait(cg benchCgroup, cmd *exec.Cmd) (string, error) {
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cg.start(cmd); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), errors.New("timed out")
	}
}

// stressOpsPerSec reads bogo-ops-per-second-real-time of one stressor from
// stress-ng's YAML output (a flat layout, so no YAML library is needed).
func stressOpsPerSec(path, stressor string) (float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("stress-ng results: %w", err)
	}
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "- stressor:") {
			in = strings.TrimSpace(strings.TrimPrefix(t, "- stressor:")) == stressor
			continue
		}
		if in && strings.HasPrefix(t, "bogo-ops-per-second-real-time:") {
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(t, "bogo-ops-per-second-real-time:")), 64)
			if err != nil || v <= 0 {
				return 0, fmt.Errorf("stress-ng results: bad rate in %q", t)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("stress-ng results: no %s metrics in %s", stressor, path)
}

package audit_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"
	"github.com/elastic/go-libaudit/v2/rule"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
	"github.com/contid/contid/internal/testenv"
	"github.com/contid/contid/journal"
	"github.com/contid/contid/kernel"
	"github.com/contid/contid/kernel/audit"
)

// Every test here that touches the kernel's audit configuration runs
// serially (none calls t.Parallel) and restores what it changed: audit
// state is global to the machine.

// execHelperEnv makes the test binary an exec driver (see TestMain).
const execHelperEnv = "CONTID_AUDIT_EXEC_HELPER"

// openHelperEnv makes the test binary an open(2) driver (see openHelper).
const openHelperEnv = "CONTID_AUDIT_OPEN_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(execHelperEnv); spec != "" {
		os.Exit(execHelper(spec))
	}
	if spec := os.Getenv(openHelperEnv); spec != "" {
		os.Exit(openHelper(spec))
	}
	if spec := os.Getenv(killedReaderEnv); spec != "" {
		os.Exit(killedReader(spec))
	}
	if spec := os.Getenv(stalledReaderEnv); spec != "" {
		os.Exit(stalledReader(spec))
	}
	if spec := os.Getenv(openatHelperEnv); spec != "" {
		os.Exit(openatHelper(spec))
	}
	if os.Getenv(registerHelperEnv) != "" {
		os.Exit(registerHelper())
	}
	os.Exit(m.Run())
}

// registerHelperEnv makes the test binary try to become the kernel's
// audit daemon and print the outcome.
const registerHelperEnv = "CONTID_AUDIT_REGISTER_HELPER"

func registerHelper() int {
	r, err := audit.NewReader(audit.Config{Source: audit.Unicast}, nil)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	r.Close()
	fmt.Println("registered")
	return 0
}

// runRegisterHelper runs registerHelper in a new process.
func runRegisterHelper(t testing.TB) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), registerHelperEnv+"=1")
	out, _ := cmd.CombinedOutput()
	return strings.TrimSpace(string(out))
}

// execHelper runs "count rate program args..." : it starts count copies
// of program at rate per second (0: as fast as it can), four at a time at
// most, reaps them, and prints "offered <count> in <seconds>". It uses
// ForkExec directly (vfork-style in Go), which is much cheaper than a
// shell loop and paces precisely.
func execHelper(spec string) int {
	f := strings.Fields(spec)
	count, _ := strconv.Atoi(f[0])
	rate, _ := strconv.ParseFloat(f[1], 64)
	argv := f[2:]
	start := time.Now()
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	failed := 0
	var mu sync.Mutex
	for i := 0; i < count; i++ {
		if rate > 0 {
			if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		sem <- struct{}{}
		pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{Env: []string{}})
		if err != nil {
			<-sem
			mu.Lock()
			failed++
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ws syscall.WaitStatus
			for {
				_, err := syscall.Wait4(pid, &ws, 0, nil)
				if err != syscall.EINTR {
					break
				}
			}
			<-sem
		}()
	}
	wg.Wait()
	fmt.Printf("offered %d in %.3f failed %d\n", count-failed, time.Since(start).Seconds(), failed)
	return 0
}

// openHelper runs "count rate path": after a line on stdin (so the test
// can add an audit rule for this PID first) it opens and closes path
// count times at rate per second, then prints "offered <count> in
// <seconds> failed <n>". Each open is one audit event of five records
// (SYSCALL, CWD, PATH, PROCTITLE, EOE), close to an exec's shape, at
// rates the host's slow fork cannot reach.
func openHelper(spec string) int {
	f := strings.Fields(spec)
	count, _ := strconv.Atoi(f[0])
	rate, _ := strconv.ParseFloat(f[1], 64)
	var line [1]byte
	_, _ = os.Stdin.Read(line[:])
	start := time.Now()
	failed := 0
	for i := 0; i < count; i++ {
		if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
			time.Sleep(d)
		}
		fd, err := syscall.Open(f[2], syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			failed++
			continue
		}
		syscall.Close(fd)
	}
	fmt.Printf("offered %d in %.3f failed %d\n", count-failed, time.Since(start).Seconds(), failed)
	return 0
}

// openatHelperEnv makes the test binary open "DIR NAME": NAME relative
// to a descriptor of DIR, from whatever directory it was started in; with
// DIR "-", relative to the working directory (AT_FDCWD).
const openatHelperEnv = "CONTID_AUDIT_OPENAT_HELPER"

func openatHelper(spec string) int {
	f := strings.Fields(spec)
	if f[0] == "-" {
		fd, err := syscall.Open(f[1], syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		syscall.Close(fd)
		return 0
	}
	dir, err := syscall.Open(f[0], syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fd, err := syscall.Openat(dir, f[1], syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	syscall.Close(fd)
	return 0
}

// helperResult is what an exec driver reported.
type helperResult struct {
	offered int
	seconds float64
	failed  int
}

// runHelper starts the driver inside the cgroup behind cgroupFD (-1: the
// test's own cgroup) and returns a function that waits for it.
func startHelper(t testing.TB, cgroupFD int, count int, rate float64, argv ...string) func() helperResult {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %g %s", execHelperEnv, count, rate, strings.Join(argv, " ")))
	if cgroupFD >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgroupFD}
	}
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start exec helper: %v", err)
	}
	done := false
	t.Cleanup(func() {
		if !done {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return func() helperResult {
		t.Helper()
		err := cmd.Wait()
		done = true
		if err != nil {
			t.Fatalf("exec helper: %v: %s", err, out.String())
		}
		var r helperResult
		if _, err := fmt.Sscanf(strings.TrimSpace(out.String()), "offered %d in %g failed %d", &r.offered, &r.seconds, &r.failed); err != nil {
			t.Fatalf("exec helper output %q: %v", out.String(), err)
		}
		return r
	}
}

// auditSession enables auditing for the test and restores the kernel's
// audit configuration (enabled, backlog limit and wait time, rules the
// test added, the lost counter if the test provoked losses) afterwards.
type auditSession struct {
	t         testing.TB
	ctl       *audit.Control
	saved     *libaudit.AuditStatus
	resetLost bool
}

func newAuditSession(t testing.TB) *auditSession {
	t.Helper()
	testenv.RequireRoot(t)
	ctl, err := audit.NewControl()
	if err != nil {
		testenv.Missing(t, "skipped: audit netlink unavailable: %v", err)
	}
	st, err := ctl.Status()
	if err != nil {
		ctl.Close()
		testenv.Missing(t, "skipped: AUDIT_GET refused (needs CAP_AUDIT_CONTROL in the initial namespaces): %v", err)
	}
	if st.Enabled == 2 {
		ctl.Close()
		testenv.Missing(t, "skipped: the audit configuration is locked (enabled=2)")
	}
	s := &auditSession{t: t, ctl: ctl, saved: st}
	t.Cleanup(s.restore)
	testenv.HoldAuditing(t, ctl, false)
	return s
}

func (s *auditSession) restore() {
	// The enabled flag is testenv.HoldAuditing's to give back.
	err := s.ctl.SetStatus(libaudit.AuditStatus{
		Mask:            libaudit.AuditStatusBacklogLimit | libaudit.AuditStatusBacklogWaitTime,
		BacklogLimit:    s.saved.BacklogLimit,
		BacklogWaitTime: s.saved.BacklogWaitTime,
	})
	if err != nil {
		s.t.Errorf("restore audit status: %v", err)
	}
	if s.resetLost {
		if err := s.ctl.SetStatus(libaudit.AuditStatus{Mask: libaudit.AuditStatusLost}); err != nil {
			s.t.Errorf("reset the lost counter: %v", err)
		}
	}
	s.ctl.Close()
}

// setBacklog changes the backlog limit and wait time until the test ends.
func (s *auditSession) setBacklog(limit, waitTime uint32) {
	s.t.Helper()
	err := s.ctl.SetStatus(libaudit.AuditStatus{
		Mask:         libaudit.AuditStatusBacklogLimit | libaudit.AuditStatusBacklogWaitTime,
		BacklogLimit: limit, BacklogWaitTime: waitTime,
	})
	if err != nil {
		s.t.Fatalf("set backlog %d/%d: %v", limit, waitTime, err)
	}
}

// loadRules loads a rules file and deletes the rules it added when the
// test ends.
func (s *auditSession) loadRules(path string) (added []rule.WireFormat, refused []audit.RuleLine) {
	s.t.Helper()
	added, refused, err := s.ctl.LoadRules(path)
	s.t.Cleanup(func() {
		for _, wf := range added {
			if err := s.ctl.DeleteRule(wf); err != nil {
				s.t.Errorf("delete rule: %v", err)
			}
		}
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return added, refused
}

// addRule adds one auditctl-syntax rule and deletes it when the test ends.
func (s *auditSession) addRule(line string) {
	s.t.Helper()
	f, err := audit.ParseRules(strings.NewReader(line))
	if err != nil || len(f.Rules) != 1 {
		s.t.Fatalf("rule %q: %v %+v", line, err, f.Refused)
	}
	wire := f.Rules[0].Wire
	if err := s.ctl.AddRule(wire); err != nil && !errors.Is(err, audit.ErrRuleExists) {
		s.t.Fatalf("add rule %q: %v", line, err)
	}
	s.t.Cleanup(func() {
		if err := s.ctl.DeleteRule(wire); err != nil {
			s.t.Errorf("delete rule %q: %v", line, err)
		}
	})
}

func randomSuffix(t testing.TB) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// pipeline is the reader, forwarder and writer of contidd, wired to a
// private journald.
type pipeline struct {
	journald *testenv.Journald
	reader   *audit.Reader
	fwd      *journal.Forwarder
	writer   *journal.Writer
	// handed are the serials of the events the reader handed on.
	handed *serialWitness
	stop   func()
}

// recordingHandler notes each event's serial before the forwarder takes
// it.
type recordingHandler struct {
	*journal.Forwarder
	w *serialWitness
}

func (h recordingHandler) HandleEvent(ev *audit.Event) {
	h.w.HandleEvent(ev)
	h.Forwarder.HandleEvent(ev)
}

func startPipeline(t testing.TB, attr audit.Attributor, c journal.Containers, rcfg audit.Config, fcfg journal.Config) *pipeline {
	t.Helper()
	return startPipelineOn(t, testenv.StartJournald(t), attr, c, rcfg, fcfg)
}

// startPipelineOn is startPipeline writing to journald j.
func startPipelineOn(t testing.TB, j *testenv.Journald, attr audit.Attributor, c journal.Containers, rcfg audit.Config, fcfg journal.Config) *pipeline {
	t.Helper()
	w, err := journal.NewWriter(j.Socket)
	if err != nil {
		t.Fatal(err)
	}
	r, err := audit.NewReader(rcfg, attr)
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	if fcfg.Queue == 0 {
		fcfg.Queue = 1024 // as contidd runs it
	}
	f := journal.NewForwarder(w, c, fcfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	handed := &serialWitness{serials: map[uint32]bool{}}
	go func() { done <- r.Run(ctx, recordingHandler{f, handed}) }()
	var once sync.Once
	p := &pipeline{journald: j, reader: r, fwd: f, writer: w, handed: handed}
	p.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("reader: %v", err)
			}
			r.Close()
			f.Close()
			w.Close()
		})
	}
	t.Cleanup(p.stop)
	return p
}

// waitIdle waits until the reader has seen no record for quiet, so that
// everything the kernel emitted so far has been handled.
func (p *pipeline) waitIdle(t testing.TB, quiet, max time.Duration) {
	t.Helper()
	waitRecords(t, p.reader, quiet, max)
}

// waitRecords waits until r has seen no record for quiet, or max passed.
func waitRecords(t testing.TB, r *audit.Reader, quiet, max time.Duration) {
	t.Helper()
	deadline := time.Now().Add(max)
	last, lastChange := r.Stats().Records, time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if n := r.Stats().Records; n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) >= quiet {
			return
		}
	}
}

// fakeContainers is the registry as the forwarder sees it.
type fakeContainers map[contid.ID]struct {
	chain      contid.Chain
	name, unit string
}

func (f fakeContainers) Lookup(id contid.ID) (contid.Chain, journal.Labels, bool) {
	c, ok := f[id]
	return c.chain, journal.Labels{Name: c.name, Unit: c.unit}, ok
}

// tracker loads a private tracking-mode kernel layer, or skips.
func tracker(t testing.TB) *kernel.BPF {
	t.Helper()
	dir := "/sys/fs/bpf/contid-audit-test-" + randomSuffix(t)
	t.Cleanup(func() {
		if err := kernel.Unpin(dir); err != nil {
			t.Errorf("unpin %s: %v", dir, err)
		}
	})
	b, err := kernel.Load(kernel.Options{PinDir: dir, Mode: kernel.ModeTracking})
	if err != nil {
		testenv.Missing(t, "skipped: the kernel layer does not load here: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// testCgroup is a cgroup of the test's own, tagged with a chain.
type testCgroup struct {
	rel, full string
	id        uint64
	fd        int
	chain     contid.Chain
}

// newCgroup makes a cgroup below parent (nil: below the cgroup2 root) and
// tags it with a fresh ID nested in parent's.
func newCgroup(t testing.TB, b *kernel.BPF, parent *testCgroup, name string, tag bool) *testCgroup {
	t.Helper()
	root, err := kernel.Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	rel := "/contid-audit-test-" + name + "-" + randomSuffix(t)
	if parent != nil {
		rel = parent.rel + "/" + name
	}
	cg := &testCgroup{rel: rel, full: filepath.Join(root, rel), fd: -1}
	if err := os.Mkdir(cg.full, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cg.destroy(t) })
	if cg.id, err = kernel.CgroupID(rel); err != nil {
		t.Fatal(err)
	}
	if cg.fd, err = unix.Open(cg.full, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		t.Fatal(err)
	}
	if !tag {
		return cg
	}
	id, err := b.AllocateID()
	if err != nil {
		t.Fatal(err)
	}
	cg.chain = contid.Chain{id}
	if parent != nil {
		cg.chain = append(cg.chain, parent.chain...)
	}
	if _, err := b.TagCgroup(cg.id, contid.Tag{Chain: cg.chain, Flags: contid.FlagAllowNesting}); err != nil {
		t.Fatalf("TagCgroup %s %v: %v", rel, cg.chain, err)
	}
	return cg
}

// destroy kills what is left inside by PID and removes the cgroup.
func (cg *testCgroup) destroy(t testing.TB) {
	if cg.fd >= 0 {
		unix.Close(cg.fd)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(filepath.Join(cg.full, "cgroup.procs"))
		pids := strings.Fields(string(data))
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
		err := os.Remove(cg.full)
		if err == nil || os.IsNotExist(err) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("could not remove cgroup %s", cg.full)
}

// run executes argv inside the cgroup and waits for it.
func (cg *testCgroup) run(t testing.TB, argv ...string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cg.fd}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v: %s", argv, err, out)
	}
}

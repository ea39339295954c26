package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/contid/contid"
	"github.com/contid/contid/kernel"
)

// loadTarget is the exec target of the audit load: a private copy of
// /bin/true, so that its exe= path tells our load's events from every
// other exec on the machine, on both sides alike.
var loadTarget = "/bin/true"

func copyTrue(dir string) (string, error) {
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "true-bench")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		return "", err
	}
	return p, nil
}

// auditState is the kernel-global audit configuration as found, restored
// at cleanup: rules by our key deleted, enabled, backlog and friends put
// back, the lost counter reset if it was zero.
type auditState map[string]int64

func readAuditState() (auditState, error) {
	out, err := exec.Command("auditctl", "-s").Output()
	if err != nil {
		return nil, fmt.Errorf("auditctl -s: %w", err)
	}
	st := auditState{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 {
			if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				st[f[0]] = v
			}
		}
	}
	for _, k := range []string{"enabled", "pid", "backlog_limit", "lost"} {
		if _, ok := st[k]; !ok {
			return nil, fmt.Errorf("auditctl -s: no %s in %q", k, out)
		}
	}
	return st, nil
}

func auditctl(args ...string) error {
	out, err := exec.Command("auditctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("auditctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (found auditState) restore(key string) error {
	var errs []error
	// Deleting by key removes exactly the rules this run added.
	if err := auditctl("-D", "-k", key); err != nil {
		errs = append(errs, err)
	}
	for _, kv := range []struct{ flag, key string }{
		{"-b", "backlog_limit"}, {"--backlog_wait_time", "backlog_wait_time"},
		{"-r", "rate_limit"}, {"-f", "failure"}, {"-e", "enabled"},
	} {
		if v, ok := found[kv.key]; ok {
			if err := auditctl(kv.flag, strconv.FormatInt(v, 10)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if found["lost"] == 0 {
		if err := auditctl("--reset-lost"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var (
	benchAuditKey string
	// auditReasserted counts the times the audit setup had been changed
	// under us (another audit user on the machine) and was put back.
	auditReasserted int
)

// ensureAuditSetup gives both sides the same kernel settings and the same
// single rule, and puts them back if something else on the machine
// changed them since the last round.
func ensureAuditSetup() error {
	st, err := readAuditState()
	if err != nil {
		return err
	}
	rules, err := exec.Command("auditctl", "-l").Output()
	if err != nil {
		return fmt.Errorf("auditctl -l: %w", err)
	}
	ruleThere := bytes.Contains(rules, []byte("key="+benchAuditKey))
	if st["enabled"] == 1 && st["backlog_limit"] == 8192 && ruleThere {
		return nil
	}
	if benchAuditSetOnce {
		auditReasserted++
		progress("audit: the kernel's audit setup was changed by something else; putting it back")
	}
	benchAuditSetOnce = true
	args := [][]string{{"-b", "8192"}, {"-e", "1"}}
	if !ruleThere {
		args = append(args, []string{"-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", benchAuditKey})
	}
	for _, a := range args {
		if err := auditctl(a...); err != nil {
			return err
		}
	}
	return nil
}

var benchAuditSetOnce bool

// startJournald starts a private systemd-journald: its own mount
// namespace (tmpfs /run/systemd, a temp /run/log, volatile storage) and
// its own network namespace, so it does not read the audit multicast
// group itself (journald 252 always does on the host's namespace): the
// CPU we charge it is for contid's entries only.
func startJournald(dir string) (*proc, string, error) {
	return startJournaldAudit(dir, false)
}

// startJournaldAudit is startJournald; with readAudit the journald stays
// in the host's network namespace, where it reads the audit multicast
// group and copies every raw record into its journal, as Debian's
// systemd-journald-audit.socket makes it do.
func startJournaldAudit(dir string, readAudit bool) (*proc, string, error) {
	const bin = "/lib/systemd/systemd-journald"
	if _, err := os.Stat(bin); err != nil {
		return nil, "", fmt.Errorf("journald: %w", err)
	}
	logDir := filepath.Join(dir, "log")
	if err := os.Mkdir(logDir, 0o755); err != nil {
		return nil, "", err
	}
	conf := filepath.Join(dir, "journald.conf")
	if err := os.WriteFile(conf, []byte("[Journal]\nStorage=volatile\nReadKMsg=no\nForwardToSyslog=no\nForwardToKMsg=no\nForwardToConsole=no\nForwardToWall=no\nRateLimitIntervalSec=0\nRateLimitBurst=0\nRuntimeMaxUse=1G\n"), 0o644); err != nil {
		return nil, "", err
	}
	script := fmt.Sprintf(`set -e
mount -t tmpfs tmpfs /run/systemd
mount --bind %q /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
mount --bind %q /etc/systemd/journald.conf
exec %s`, logDir, conf, bin)
	var out bytes.Buffer
	unshare := []string{"--mount", "--net", "--propagation", "private", "sh", "-c", script}
	if readAudit {
		unshare = append(unshare[:1], unshare[2:]...)
	}
	cmd := exec.Command("unshare", unshare...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	p, err := startProc("journald", cmd)
	if err != nil {
		return nil, "", err
	}
	sock := fmt.Sprintf("/proc/%d/root/run/systemd/journal/socket", p.pid())
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			return nil, "", fmt.Errorf("journald exited: %s", out.String())
		}
		if _, err := os.Stat(sock); err == nil {
			if dirs, _ := filepath.Glob(filepath.Join(logDir, "journal", "*")); len(dirs) == 1 {
				return p, dirs[0], nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, "", errors.New("journald did not come up within 10s")
}

// startAuditd runs Debian's auditd in the foreground with a private
// config: raw log format into a temp dir, no plugins, disk actions off.
func startAuditd(dir string) (*proc, string, error) {
	confDir := filepath.Join(dir, "etc")
	plugins := filepath.Join(confDir, "plugins.d")
	if err := os.MkdirAll(plugins, 0o750); err != nil {
		return nil, "", err
	}
	logFile := filepath.Join(dir, "audit.log")
	conf := fmt.Sprintf(`local_events = yes
write_logs = yes
log_file = %s
log_group = root
log_format = RAW
flush = INCREMENTAL_ASYNC
freq = 50
max_log_file = 4096
num_logs = 2
priority_boost = 4
name_format = NONE
max_log_file_action = IGNORE
space_left = 2
space_left_action = IGNORE
admin_space_left = 1
admin_space_left_action = IGNORE
disk_full_action = IGNORE
disk_error_action = IGNORE
use_libwrap = no
tcp_listen_queue = 5
tcp_max_per_addr = 1
tcp_client_max_idle = 0
transport = TCP
distribute_network = no
q_depth = 2000
overflow_action = SYSLOG
max_restarts = 10
plugin_dir = %s
end_of_event_timeout = 2
`, logFile, plugins)
	if err := os.WriteFile(filepath.Join(confDir, "auditd.conf"), []byte(conf), 0o640); err != nil {
		return nil, "", err
	}
	var out bytes.Buffer
	cmd := exec.Command("auditd", "-n", "-c", confDir)
	cmd.Stdout = &out
	cmd.Stderr = &out
	p, err := startProc("auditd", cmd)
	if err != nil {
		return nil, "", err
	}
	// auditd removes its pid file when it exits cleanly; if it was killed,
	// remove the file it left, but only if it is this auditd's.
	pid := strconv.Itoa(p.pid())
	cleanups.push("auditd pid file", func() error {
		for _, f := range []string{"/run/auditd.pid", "/var/run/auditd.pid"} {
			if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == pid {
				_ = os.Remove(f)
			}
		}
		return nil
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			return nil, "", fmt.Errorf("auditd exited: %s", out.String())
		}
		st, err := readAuditState()
		if err == nil && st["pid"] == int64(p.pid()) {
			return p, logFile, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, "", fmt.Errorf("auditd did not register within 10s: %s", out.String())
}

// kauditdPID finds the kernel's audit thread; its CPU is reported for
// context (it does the multicast for contid and the unicast for auditd).
func kauditdPID() int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err == nil && strings.TrimSpace(string(b)) == "kauditd" {
			return pid
		}
	}
	return 0
}

// contidSide is configuration A: contid's pipeline plus journald.
type contidSide struct {
	cfg          *config
	journald     *proc
	journalDir   string
	useContidd   bool
	pipelineBin  string
	pipeline     *proc
	daemon       *contidd
	id           contid.ID
	exe          string
	pipelineOut  *bytes.Buffer
	pipelineDone chan struct{}
	pipelinePins string
	// auditSocket is contidd's [Audit] Socket= ("": the key left out).
	auditSocket string
	// lastCounters are the pipeline's own counters at the end of the
	// last round (written, lost, ...), for the details.
	lastCounters string
}

// startRound brings up the pipeline with a fresh pin directory and tags
// cg, so nothing of contid is left attached during auditd's rounds.
func (s *contidSide) startRound(cg benchCgroup) error {
	dir, err := tempDir("contid-bench-audit-a-")
	if err != nil {
		return err
	}
	if s.useContidd {
		d, err := startContidd(s.cfg, contiddOpts{dir: dir, mountNS: fmt.Sprintf("/proc/%d/ns/mnt", s.journald.pid()), audit: true, auditSocket: s.auditSocket})
		if err != nil {
			return err
		}
		s.daemon = d
		conn, err := dialP2P(d.socket)
		if err != nil {
			return err
		}
		defer conn.Close()
		var id uint64
		var obj dbus.ObjectPath
		if err := conn.Object(busName, objPath).Call(managerIf+".TagCgroup", 0, cg.rel(), uint64(0), map[string]dbus.Variant{}).Store(&id, &obj); err != nil {
			return fmt.Errorf("TagCgroup over %s: %w", d.socket, err)
		}
		s.id = contid.ID(id)
		return nil
	}
	att, err := attach(cg, s.cfg.mode)
	if err != nil {
		return err
	}
	s.id = att.id
	s.pipelinePins = att.pinDir
	// The pins keep the programs and tags; the pipeline opens them.
	_ = att.bpf.Close()
	att.bpf = nil
	s.pipelineOut = &bytes.Buffer{}
	s.pipelineDone = make(chan struct{})
	cmd := exec.Command(s.pipelineBin, "-pin-dir", att.pinDir, "-journal-socket", fmt.Sprintf("/proc/%d/root/run/systemd/journal/socket", s.journald.pid()))
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout = pw
	cmd.Stderr = os.Stderr
	p, err := startProc("contid-pipeline", cmd)
	pw.Close()
	if err != nil {
		pr.Close()
		return err
	}
	s.pipeline = p
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		first := true
		for sc.Scan() {
			if first {
				ready <- sc.Text() == "READY"
				first = false
				continue
			}
			s.pipelineOut.WriteString(sc.Text() + "\n")
		}
		if first {
			ready <- false
		}
		pr.Close()
		close(s.pipelineDone)
	}()
	select {
	case ok := <-ready:
		if !ok {
			return errors.New("contid-pipeline did not start")
		}
	case <-time.After(30 * time.Second):
		return errors.New("contid-pipeline did not start within 30s")
	}
	return nil
}

func (s *contidSide) pids() []int {
	if s.useContidd {
		return []int{s.daemon.pid(), s.journald.pid()}
	}
	return []int{s.pipeline.pid(), s.journald.pid()}
}

// count is the number of journal entries for the load's execs; contid
// writes nothing else for them, so it is both figures.
func (s *contidSide) count() (int, int, error) {
	n, err := s.countOurs()
	return n, n, err
}

func (s *contidSide) countOurs() (int, error) {
	return s.countMatching("AUDIT_FIELD_EXE=" + s.exe)
}

// countMatching counts the journal entries of the side's container that
// carry every field=value of matches.
func (s *contidSide) countMatching(matches ...string) (int, error) {
	args := []string{"--directory=" + s.journalDir, "--no-pager", "-o", "cat",
		"AUDIT_CONTAINER_ID=" + strconv.FormatUint(uint64(s.id), 10)}
	out, err := exec.Command("journalctl", append(args, matches...)...).Output()
	if err != nil {
		return 0, fmt.Errorf("journalctl: %w", err)
	}
	return bytes.Count(out, []byte("\n")), nil
}

func (s *contidSide) stopRound() error {
	s.lastCounters = ""
	if s.daemon != nil {
		if conn, err := dialP2P(s.daemon.socket); err == nil {
			obj := conn.Object(busName, objPath)
			w, _ := obj.GetProperty(managerIf + ".EventsWritten")
			l, _ := obj.GetProperty(managerIf + ".EventsLost")
			s.lastCounters = fmt.Sprintf("EventsWritten=%v EventsLost=%v", w.Value(), l.Value())
			conn.Close()
		}
		err := s.daemon.stop()
		s.daemon.undo()
		s.daemon = nil
		return err
	}
	if s.pipeline != nil {
		err := s.pipeline.stop()
		s.pipeline.undo()
		s.pipeline = nil
		select {
		case <-s.pipelineDone:
		case <-time.After(2 * time.Second):
		}
		s.lastCounters = strings.TrimSpace(s.pipelineOut.String())
		_ = kernel.Unpin(s.pipelinePins)
		return err
	}
	return nil
}

func dialP2P(path string) (*dbus.Conn, error) {
	conn, err := dbus.Dial("unix:path=" + path)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", path, err)
	}
	if err := conn.Auth(nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("auth on %s: %w", path, err)
	}
	if err := conn.Hello(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("hello on %s: %w", path, err)
	}
	return conn, nil
}

// auditdLogCount counts the load's exec events in auditd's raw log, and
// every syscall event in it (auditd logs all execs on the machine).
func auditdLogCount(logFile, exe string) (ours, total int, err error) {
	// Not by key: when another rule (someone else's) also matches an
	// execve, the event carries the first rule's key.
	return auditdSyscallCount(logFile, []byte(`exe="`+exe+`"`))
}

// auditdSyscallCount counts the SYSCALL records (one per event) in
// auditd's raw log that contain needle, and all of them.
func auditdSyscallCount(logFile string, needle []byte) (ours, total int, err error) {
	f, err := os.Open(logFile)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		b := sc.Bytes()
		if bytes.HasPrefix(b, []byte("type=SYSCALL ")) {
			total++
			if bytes.Contains(b, needle) {
				ours++
			}
		}
	}
	return ours, total, sc.Err()
}

// waitStable polls count until it stops growing (or reaches want and
// holds), bounded by limit, so the CPU window covers the whole drain.
func waitStable(count func() (int, error), want int, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	last, stable := -1, 0
	for {
		n, err := count()
		if err != nil {
			return n, err
		}
		if n == last {
			stable++
		} else {
			stable = 0
		}
		last = n
		if (n >= want && stable >= 1) || stable >= 4 || time.Now().After(deadline) {
			return n, nil
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func cpuOf(pids []int) float64 {
	var sum float64
	for _, p := range pids {
		if c, err := cpuSeconds(p); err == nil {
			sum += c
		}
	}
	return sum
}

type auditRound struct {
	Side          string  `json:"side"`
	OfferedPerS   int     `json:"offered_per_s"`
	Execs         int     `json:"execs"`
	AchievedPerS  float64 `json:"achieved_per_s"`
	Events        int     `json:"events_recorded"`
	AllEvents     int     `json:"events_written_all"`
	Disturbed     bool    `json:"disturbed,omitempty"`
	Pipeline      string  `json:"pipeline_counters,omitempty"`
	before        int
	Lost          int     `json:"events_lost"`
	KernelLost    int64   `json:"kernel_lost_delta"`
	CPUSeconds    float64 `json:"cpu_s"`
	KauditdCPU    float64 `json:"kauditd_cpu_s"`
	CPUPer1000    float64 `json:"cpu_s_per_1000_events"`
	LoadgenLateMS float64 `json:"loadgen_late_starts"`
}

// recount takes the final count after the pipeline stopped: a journald
// starved of CPU may still have been storing entries when the CPU window
// closed, and those are late, not lost.
func (r *auditRound) recount(count func() (int, int, error)) {
	n, _, err := count()
	if err != nil || n-r.before <= r.Events {
		return
	}
	r.Events = n - r.before
	r.Lost = max(0, r.Execs-r.Events)
	if r.Events > 0 {
		r.CPUPer1000 = round(r.CPUSeconds/(float64(r.Events)/1000), 4)
	}
}

// runLoad offers rate execs/s for secs inside cg and measures the CPU the
// given processes spend until their output stops growing.
func runLoad(cfg *config, cg benchCgroup, side string, rate int, secs float64, pids []int, count func() (int, int, error)) (auditRound, error) {
	r := auditRound{Side: side, OfferedPerS: rate}
	if err := ensureAuditSetup(); err != nil {
		return r, err
	}
	kpid := kauditdPID()
	st0, err := readAuditState()
	if err != nil {
		return r, err
	}
	before, beforeAll, err := count()
	if err != nil {
		return r, err
	}
	r.before = before
	cpu0, k0 := cpuOf(pids), cpuOf([]int{kpid})
	workers := rate / 200
	if workers < 2 {
		workers = 2
	}
	kv, err := runLoadgen(cfg, cg, "rate", strconv.Itoa(rate), strconv.FormatFloat(secs, 'f', 1, 64), strconv.Itoa(workers), loadTarget)
	if err != nil {
		return r, err
	}
	r.Execs = int(kv["done"])
	r.AchievedPerS = round(kv["done"]/(kv["ns"]/1e9), 1)
	r.LoadgenLateMS = kv["late"]
	after, err := waitStable(func() (int, error) {
		n, _, err := count()
		return n - before, err
	}, r.Execs, 20*time.Second)
	if err != nil {
		return r, err
	}
	_, afterAll, err := count()
	if err != nil {
		return r, err
	}
	r.AllEvents = afterAll - beforeAll
	r.CPUSeconds = round(cpuOf(pids)-cpu0, 3)
	r.KauditdCPU = round(cpuOf([]int{kpid})-k0, 3)
	st1, err := readAuditState()
	if err != nil {
		return r, err
	}
	r.KernelLost = st1["lost"] - st0["lost"]
	if r.KernelLost < 0 {
		// Someone reset the counter during the round: the delta is
		// unknown, and the round is not clean.
		r.KernelLost, r.Disturbed = 0, true
	}
	r.Events = after
	r.Lost = r.Execs - after
	if r.Lost < 0 {
		r.Lost = 0
	}
	// Both sides read the same system-wide stream (other execs on the
	// machine included) and are charged per 1,000 events of the load,
	// the attributed events; events_written_all is kept for context.
	if r.Events > 0 {
		r.CPUPer1000 = round(r.CPUSeconds/(float64(r.Events)/1000), 4)
	}
	// Something else on the machine may have changed the audit setup
	// during the round (tests of other packages); such a round is kept
	// in the details but not used for the figures.
	if n := auditReasserted; ensureAuditSetup() == nil && auditReasserted > n {
		r.Disturbed = true
	}
	progress("audit %s at %d/s: %d execs (%.0f/s achieved), %d of them recorded, %d lost (kernel lost +%d), %d events written in all, %.2f CPU s, %.4f CPU s per 1000 events%s",
		side, rate, r.Execs, r.AchievedPerS, r.Events, r.Lost, r.KernelLost, r.AllEvents, r.CPUSeconds, r.CPUPer1000, map[bool]string{true: " (DISTURBED: audit setup changed by something else)"}[r.Disturbed])
	return r, nil
}

// takeAudit checks that the tools of a contid-against-auditd comparison
// are installed and the audit netlink is free for it, and registers the
// restore of the audit state as found, rules under key included.
func takeAudit(key string) error {
	for _, c := range []string{"auditctl", "auditd", "journalctl", "unshare", "nsenter"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("%s not installed: %w", c, err)
		}
	}
	found, err := readAuditState()
	if err != nil {
		return err
	}
	if found["pid"] != 0 {
		return fmt.Errorf("an audit daemon (pid %d) is already registered; the comparison needs the audit netlink to itself", found["pid"])
	}
	if found["enabled"] == 2 {
		return errors.New("audit configuration is locked (enabled 2)")
	}
	cleanups.push("audit state", func() error { return found.restore(key) })
	return nil
}

func auditPhase(cfg *config, rep *report) error {
	keys := []string{"audit_cpu_ratio_vs_auditd", "contid_cpu_s_per_1000_events", "auditd_cpu_s_per_1000_events", "events_lost_1000eps", "max_events_per_s"}
	fail := func(err error) error {
		for _, k := range keys {
			rep.unmeasured(k, err.Error())
		}
		return err
	}
	benchAuditKey = fmt.Sprintf("contid-bench-%d", os.Getpid())
	key := benchAuditKey
	if err := takeAudit(key); err != nil {
		return fail(err)
	}
	if err := ensureAuditSetup(); err != nil {
		return fail(err)
	}

	dir, err := tempDir("contid-bench-audit-")
	if err != nil {
		return fail(err)
	}
	if loadTarget, err = copyTrue(dir); err != nil {
		return fail(err)
	}
	exe := loadTarget
	jd, jdir, err := startJournald(dir)
	if err != nil {
		return fail(err)
	}
	tree, err := makeCgroupTree("contid-bench-audit")
	if err != nil {
		return fail(err)
	}
	a := &contidSide{cfg: cfg, journald: jd, journalDir: jdir, exe: exe, pipelineBin: filepath.Join(filepath.Dir(cfg.loadgen), "contid-pipeline")}

	// Prefer the real daemon; fall back to the same library pipeline in a
	// process of its own when this contidd does not run it (yet).
	a.useContidd = true
	cg, err := tree.child("probe-contidd")
	if err != nil {
		return fail(err)
	}
	if err := probeSide(cfg, a, cg); err != nil {
		progress("audit: contidd cannot be measured (%v); using contid-pipeline", err)
		a.useContidd = false
		cg, err := tree.child("probe-pipeline")
		if err != nil {
			return fail(err)
		}
		if err := probeSide(cfg, a, cg); err != nil {
			return fail(err)
		}
	}
	how := "contidd (its own audit pipeline) + journald"
	if !a.useContidd {
		how = "contid-pipeline (kernel/audit reader + journal forwarder/writer, the library code contidd runs) + journald; contidd does not write audit events in this build"
	}
	progress("audit: side A is %s", how)
	rep.detail("audit_side_a", how)

	rounds, secs := 3, 10.0
	if cfg.quick {
		rounds, secs = 1, 5
	}
	var aRounds, bRounds []auditRound
	var ratios []float64
	for i := 0; i < rounds; i++ {
		order := []string{"contid", "auditd"}
		if i%2 == 1 {
			order = []string{"auditd", "contid"}
		}
		var ra, rb auditRound
		for _, side := range order {
			cg, err := tree.child(fmt.Sprintf("%s-%d", side, i))
			if err != nil {
				return fail(err)
			}
			if side == "contid" {
				if err := a.startRound(cg); err != nil {
					return fail(err)
				}
				ra, err = runLoad(cfg, cg, side, 1000, secs, a.pids(), a.count)
				if e := a.stopRound(); err == nil {
					err = e
				}
				ra.Pipeline = a.lastCounters
				ra.recount(a.count)
				if err != nil {
					return fail(err)
				}
				aRounds = append(aRounds, ra)
			} else {
				adir, err := tempDir("contid-bench-auditd-")
				if err != nil {
					return fail(err)
				}
				ad, logFile, err := startAuditd(adir)
				if err != nil {
					return fail(err)
				}
				rb, err = runLoad(cfg, cg, side, 1000, secs, []int{ad.pid()}, func() (int, int, error) { return auditdLogCount(logFile, exe) })
				if e := ad.stop(); err == nil {
					err = e
				}
				rb.recount(func() (int, int, error) { return auditdLogCount(logFile, exe) })
				if rb.Events == 0 {
					// Say what auditd did write, so a broken side is diagnosable.
					b, _ := os.ReadFile(logFile)
					lines := strings.Split(strings.TrimSpace(string(b)), "\n")
					progress("audit: auditd recorded none of the load; its log has %d lines, the last: %q", len(lines), lines[max(0, len(lines)-3):])
				}
				ad.undo()
				if err != nil {
					return fail(err)
				}
				bRounds = append(bRounds, rb)
			}
		}
		if rb.CPUPer1000 > 0 && !ra.Disturbed && !rb.Disturbed {
			ratios = append(ratios, ra.CPUPer1000/rb.CPUPer1000)
		}
	}
	usable := func(rs []auditRound) []auditRound {
		var ok []auditRound
		for _, r := range rs {
			if !r.Disturbed {
				ok = append(ok, r)
			}
		}
		if len(ok) == 0 {
			progress("audit: every round was disturbed by another audit user; the figures use them anyway")
			return rs
		}
		return ok
	}
	var perA, perB, achieved []float64
	lost := 0
	for _, r := range usable(aRounds) {
		perA = append(perA, r.CPUPer1000)
		lost += r.Lost + int(r.KernelLost)
		achieved = append(achieved, r.AchievedPerS)
	}
	for _, r := range usable(bRounds) {
		perB = append(perB, r.CPUPer1000)
	}
	sa, sb := summarize(perA), summarize(perB)
	rep.set("contid_cpu_s_per_1000_events", sa.Median)
	rep.set("auditd_cpu_s_per_1000_events", sb.Median)
	if sb.Median > 0 {
		rep.set("audit_cpu_ratio_vs_auditd", sa.Median/sb.Median)
	}
	rep.set("events_lost_1000eps", float64(lost))
	ach := summarize(achieved).Median
	rep.set("audit_load_achieved_per_s", ach)
	if ach < 900 {
		// The figures stand, but not for the rate the goal names.
		note := fmt.Sprintf("load reached only %.0f exec/s of 1000 offered (machine too slow or busy)", ach)
		for _, k := range []string{"events_lost_1000eps", "audit_cpu_ratio_vs_auditd", "audit_load_achieved_per_s"} {
			rep.annotate(k, note)
		}
	}
	rep.detail("audit_1000eps", map[string]any{
		"rule":                   "-a always,exit -F arch=b64 -S execve -k " + key + " (the same for both), backlog_limit 8192",
		"load":                   fmt.Sprintf("%s started %g s at 1000/s by test/bench/loadgen.c in a cgroup (tagged for contid)", loadTarget, secs),
		"contid_side":            how,
		"auditd_side":            "Debian auditd -n, log_format RAW, flush INCREMENTAL_ASYNC, no plugins",
		"ratio_per_round":        summarize(ratios),
		"rounds":                 append(append([]auditRound{}, aRounds...), bRounds...),
		"audit_setup_reasserted": auditReasserted,
		"journald_note":          "journald runs in its own network namespace so it does not ingest the audit multicast itself; its CPU is for contid's entries",
	})

	// The highest rate the pipeline sustains: ramp until events are lost
	// or the load generator itself cannot offer more.
	maxRate, bound := 0.0, "pipeline kept up at every rate offered; the load generator is the limit"
	for _, r := range usable(aRounds) {
		if r.Lost == 0 && r.KernelLost == 0 && r.Execs > 0 {
			maxRate = max(maxRate, float64(r.Events)/(float64(r.Execs)/r.AchievedPerS))
		}
	}
	rates := []int{1500, 2000, 3000, 4000, 6000}
	if cfg.quick {
		rates = []int{2000, 4000}
	}
	var ramp []auditRound
	for i, rate := range rates {
		cg, err := tree.child(fmt.Sprintf("ramp-%d", i))
		if err != nil {
			return fail(err)
		}
		if err := a.startRound(cg); err != nil {
			return fail(err)
		}
		r, err := runLoad(cfg, cg, "contid", rate, 5, a.pids(), a.count)
		if e := a.stopRound(); err == nil {
			err = e
		}
		r.Pipeline = a.lastCounters
		r.recount(a.count)
		if err != nil {
			return fail(err)
		}
		ramp = append(ramp, r)
		if r.Lost > 0 || r.KernelLost > 0 {
			bound = fmt.Sprintf("events lost at %d/s offered (%.0f/s achieved)", rate, r.AchievedPerS)
			break
		}
		rec := float64(r.Events) / (float64(r.Execs) / r.AchievedPerS)
		if rec > maxRate {
			maxRate = rec
		}
		if r.AchievedPerS < 0.9*float64(rate) {
			bound = fmt.Sprintf("the load generator reached only %.0f/s of %d/s offered, with nothing lost: a lower bound", r.AchievedPerS, rate)
			break
		}
	}
	if maxRate > 0 {
		rep.set("max_events_per_s", maxRate)
		if !strings.HasPrefix(bound, "events lost") {
			rep.annotate("max_events_per_s", "lower bound: "+bound)
		}
	} else {
		rep.unmeasured("max_events_per_s", bound)
	}
	rep.detail("max_rate", map[string]any{"limit": bound, "steps": ramp})
	progress("audit: max sustained %.0f events/s (%s)", maxRate, bound)
	return nil
}

// probeSide starts side A once, tags a cgroup, runs a few execs there and
// looks for their journal entries, so a broken side fails in seconds with
// a diagnosis instead of after a whole round.
func probeSide(cfg *config, a *contidSide, cg benchCgroup) error {
	defer func() { _ = a.stopRound() }()
	if err := a.startRound(cg); err != nil {
		return err
	}
	if err := ensureAuditSetup(); err != nil {
		return err
	}
	if _, err := runLoadgen(cfg, cg, "loop", "3", loadTarget); err != nil {
		return err
	}
	n, err := waitStable(a.countOurs, 3, 5*time.Second)
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	// Say what did arrive, if anything, for the container.
	out, _ := exec.Command("journalctl", "--directory="+a.journalDir, "--no-pager", "-o", "verbose", "-n", "1",
		"AUDIT_CONTAINER_ID="+strconv.FormatUint(uint64(a.id), 10)).CombinedOutput()
	extra := ""
	if a.pipelineOut != nil {
		_ = a.stopRound()
		extra = "; contid-pipeline said: " + a.lastCounters
	}
	st, _ := exec.Command("auditctl", "-s").CombinedOutput()
	rules, _ := exec.Command("auditctl", "-l").CombinedOutput()
	return fmt.Errorf("no journal entry with AUDIT_CONTAINER_ID=%d AUDIT_FIELD_EXE=%s after 3 execs in the tagged cgroup; last entry of the container: %q%s; audit status %q, rules %q",
		a.id, a.exe, out, extra, st, rules)
}

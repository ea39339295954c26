package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// floodKeys are the flood phase's metrics: how fast one process can open
// a file under an audit rule while contid's pipeline or auditd takes the
// events, and how many of them each side failed to record.
var floodKeys = []string{"flood_events_per_s_contid", "flood_events_per_s_auditd", "flood_ratio", "flood_lost", "flood_lost_auditd"}

var (
	floodJournaldAudit = flag.Bool("flood-journald-audit", false, "in the flood phase, let contid's journald also copy every raw audit record (as Debian's systemd-journald-audit.socket does)")
	floodSocket        = flag.String("flood-socket", "unicast", "contidd's [Audit] Socket= in the flood phase (auto, unicast, multicast); \"default\" leaves the key out, for a contidd that does not know it")
	// The producer: the flood phase runs contid-bench itself as one.
	floodOpen = flag.String("flood-open", "", "internal: open this file -flood-n times, after a line on stdin")
	floodN    = flag.Int("flood-n", 40000, "internal: how many opens the producer makes")
	floodFor  = flag.Duration("flood-for", 30*time.Second, "internal: the producer stops after this long, done or not")
)

// floodSettings are the kernel audit settings both sides run with: a
// producer that outruns its reader waits for room in the backlog for up
// to a minute instead of having its events dropped.
var floodSettings = [][]string{{"-b", "8192"}, {"--backlog_wait_time", "60000"}, {"-r", "0"}, {"-e", "1"}}

// runFloodProducer is contid-bench as the flood's producer. It says
// "ready" once the Go runtime has done its own opens, waits for a line on
// stdin (the rule for its PID is in place then), opens and closes the
// file as fast as it can, and prints how many attempts it made: every
// attempt is an audited openat, a failed one too.
func runFloodProducer() int {
	fmt.Println("ready")
	var line [1]byte
	if _, err := os.Stdin.Read(line[:]); err != nil {
		fmt.Fprintln(os.Stderr, "flood producer: waiting for the go:", err)
		return 1
	}
	start := time.Now()
	deadline := start.Add(*floodFor)
	attempts, failed := 0, 0
	for attempts < *floodN {
		if attempts%1000 == 0 && time.Now().After(deadline) {
			break
		}
		attempts++
		fd, err := unix.Open(*floodOpen, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			failed++
			continue
		}
		unix.Close(fd)
	}
	fmt.Printf("attempts=%d failed=%d ns=%d\n", attempts, failed, time.Since(start).Nanoseconds())
	return 0
}

// floodRun is one side's flood.
type floodRun struct {
	Side       string  `json:"side"`
	Attempts   int     `json:"opens"`
	Failed     int     `json:"opens_failed"`
	Seconds    float64 `json:"producer_s"`
	EventsPerS float64 `json:"events_per_s"`
	// TimedOut says the producer hit its time bound before N opens.
	TimedOut   bool    `json:"producer_timed_out,omitempty"`
	Recorded   int     `json:"events_recorded"`
	Lost       int     `json:"events_lost"`
	KernelLost int64   `json:"kernel_lost_delta"`
	DrainS     float64 `json:"drain_s"`
	CPUSeconds float64 `json:"reader_cpu_s"`
	// Status is the kernel's audit status as the flood started.
	Status  map[string]int64 `json:"audit_status"`
	Counter string           `json:"daemon_counters,omitempty"`
}

// applyFloodSettings gives the kernel the flood's backlog settings and
// checks they took.
func applyFloodSettings() error {
	for _, a := range floodSettings {
		if err := auditctl(a...); err != nil {
			return err
		}
	}
	st, err := readAuditState()
	if err != nil {
		return err
	}
	if st["enabled"] != 1 || st["backlog_limit"] != 8192 || st["backlog_wait_time"] != 60000 {
		return fmt.Errorf("audit settings did not take: enabled %d, backlog_limit %d, backlog_wait_time %d", st["enabled"], st["backlog_limit"], st["backlog_wait_time"])
	}
	return nil
}

// addPIDRule audits openat by pid under key until the returned function
// (also on the cleanup stack) removes it.
func addPIDRule(pid int, key string) (func(), error) {
	if err := auditctl("-a", "always,exit", "-F", "arch=b64", "-S", "openat", "-F", "pid="+strconv.Itoa(pid), "-k", key); err != nil {
		return nil, err
	}
	return cleanups.push("audit rule "+key, func() error { return auditctl("-D", "-k", key) }), nil
}

// flood starts the producer in cg, puts the rule for its PID in place,
// lets it open target n times and waits until count (the side's record of
// events under key) stops growing. pids are the side's reader processes,
// charged with the CPU they spend until then.
func flood(cg benchCgroup, side, target, key string, n int, pids []int, count func() (int, error)) (floodRun, error) {
	r := floodRun{Side: side}
	self, err := os.Executable()
	if err != nil {
		return r, err
	}
	cmd := exec.Command(self, "-flood-open", target, "-flood-n", strconv.Itoa(n), "-flood-for", floodFor.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return r, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return r, err
	}
	cmd.Stderr = os.Stderr
	if err := cg.start(cmd); err != nil {
		return r, err
	}
	waited := false
	defer func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	out := bufio.NewReader(stdout)
	ready := make(chan error, 1)
	go func() {
		line, err := out.ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("said %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			return r, fmt.Errorf("flood producer: %w", err)
		}
	case <-time.After(10 * time.Second):
		return r, errors.New("flood producer not ready within 10s")
	}
	st0, err := readAuditState()
	if err != nil {
		return r, err
	}
	r.Status = st0
	before, err := count()
	if err != nil {
		return r, err
	}
	cpu0 := cpuOf(pids)
	removeRule, err := addPIDRule(cmd.Process.Pid, key)
	if err != nil {
		return r, err
	}
	if _, err := stdin.Write([]byte("\n")); err != nil {
		removeRule()
		return r, err
	}
	// The producer checks its own time bound between opens, but one open
	// can wait out a full backlog_wait_time while the reader is stuck.
	killer := time.AfterFunc(*floodFor+90*time.Second, func() { _ = cmd.Process.Kill() })
	rest, _ := io.ReadAll(out)
	err = cmd.Wait()
	waited = true
	if !killer.Stop() {
		err = fmt.Errorf("killed after %s: %w", *floodFor+90*time.Second, err)
	}
	// Whatever the producer did, nothing else is recorded under key.
	removeRule()
	if err != nil {
		return r, fmt.Errorf("flood producer: %w: %s", err, rest)
	}
	kv := parseKV(string(rest))
	r.Attempts, r.Failed = int(kv["attempts"]), int(kv["failed"])
	r.Seconds = round(kv["ns"]/1e9, 3)
	if r.Attempts == 0 || r.Seconds <= 0 {
		return r, fmt.Errorf("flood producer said %q", rest)
	}
	r.TimedOut = r.Attempts < n
	r.EventsPerS = round(float64(r.Attempts)/r.Seconds, 1)
	t0 := time.Now()
	got, err := waitStable(func() (int, error) {
		c, err := count()
		return c - before, err
	}, r.Attempts, 30*time.Second)
	if err != nil {
		return r, err
	}
	r.DrainS = round(time.Since(t0).Seconds(), 1)
	r.CPUSeconds = round(cpuOf(pids)-cpu0, 3)
	st1, err := readAuditState()
	if err != nil {
		return r, err
	}
	r.KernelLost = st1["lost"] - st0["lost"]
	r.Recorded = got
	r.Lost = max(0, r.Attempts-got)
	return r, nil
}

// auditdKeyCount counts the events under key in auditd's raw log: the
// key is on the SYSCALL record, one per event.
func auditdKeyCount(logFile, key string) (int, error) {
	ours, _, err := auditdSyscallCount(logFile, []byte(` key="`+key+`"`))
	return ours, err
}

// recount takes the count again once the side has stopped: entries
// still on their way when the count looked stable are late, not lost.
func (r *floodRun) recount(count func() (int, error), before int) {
	if n, err := count(); err == nil && n-before > r.Recorded {
		r.Recorded = n - before
		r.Lost = max(0, r.Attempts-r.Recorded)
	}
}

func (r floodRun) String() string {
	s := fmt.Sprintf("%d opens in %.2fs (%.0f/s), %d recorded, %d lost (kernel lost +%d), drained in %.1fs, %.2f CPU s",
		r.Attempts, r.Seconds, r.EventsPerS, r.Recorded, r.Lost, r.KernelLost, r.DrainS, r.CPUSeconds)
	if r.TimedOut {
		s += " (producer stopped at its time bound)"
	}
	return s
}

// warmUp floods a few opens until the side records one, so the measured
// flood does not start before the side reads the audit stream (contidd
// says READY before its audit reader has joined), and a broken side fails
// in seconds.
func warmUp(cg benchCgroup, side, target, key string, count func(key string) (int, error)) (floodRun, error) {
	var r floodRun
	for try := 0; try < 5; try++ {
		var err error
		r, err = flood(cg, side+" warm-up", target, fmt.Sprintf("%s-warmup%d", key, try), 50, nil, func() (int, error) {
			return count(fmt.Sprintf("%s-warmup%d", key, try))
		})
		if err != nil {
			return r, err
		}
		if r.Recorded > 0 {
			return r, nil
		}
	}
	return r, fmt.Errorf("%s recorded none of 50 opens in 5 tries: %s", side, r)
}

// floodPhase measures the audit pipeline rather than fork: one process
// opens a file N times as fast as it can under an openat rule for its PID
// alone, once with contidd (its process in a tagged cgroup) taking the
// events into a private journald, once with Debian's auditd taking them
// into its log, both with the same backlog settings. A reader that keeps
// up with backpressure slows the producer; one that does not loses
// events. The phase reports both.
func floodPhase(cfg *config, rep *report) error {
	fail := func(err error) error {
		for _, k := range floodKeys {
			rep.unmeasured(k, err.Error())
		}
		return err
	}
	key := fmt.Sprintf("contid-bench-flood-%d", os.Getpid())
	if err := takeAudit(key); err != nil {
		return fail(err)
	}
	// -quick runs fewer rounds, never fewer opens: a smaller burst can
	// fit in the socket buffers and hide what the flood is there to show.
	n := 40000
	dir, err := tempDir("contid-bench-flood-")
	if err != nil {
		return fail(err)
	}
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("flood\n"), 0o644); err != nil {
		return fail(err)
	}
	tree, err := makeCgroupTree("contid-bench-flood")
	if err != nil {
		return fail(err)
	}
	socket := *floodSocket
	if socket == "default" {
		socket = ""
	}
	how := "contidd with [Audit] Socket=" + socket
	if socket == "" {
		how = "contidd with its default [Audit] Socket= (key left out)"
	}

	jd, jdir, err := startJournaldAudit(dir, *floodJournaldAudit)
	if err != nil {
		return fail(err)
	}
	a := &contidSide{cfg: cfg, journald: jd, journalDir: jdir, useContidd: true, auditSocket: socket}
	defer func() { _ = a.stopRound() }()
	registered := "none (multicast)"

	// contidRound floods from a cgroup a fresh contidd tagged.
	contidRound := func(i int) (floodRun, floodRun, error) {
		var warm, r floodRun
		cg, err := tree.child(fmt.Sprintf("contid-%d", i))
		if err != nil {
			return warm, r, err
		}
		// journald switches auditing off as it starts, and contidd may
		// change the settings as it starts: they go in before and after.
		if err := applyFloodSettings(); err != nil {
			return warm, r, err
		}
		if err := a.startRound(cg); err != nil {
			return warm, r, err
		}
		if err := applyFloodSettings(); err != nil {
			return warm, r, err
		}
		count := func(k string) (int, error) { return a.countMatching("AUDIT_FIELD_KEY=" + k) }
		k := fmt.Sprintf("%s-%d", key, i)
		if warm, err = warmUp(cg, "contid", target, k, count); err != nil {
			return warm, r, err
		}
		if st, err := readAuditState(); err == nil && st["pid"] != 0 {
			registered = fmt.Sprintf("pid %d (contidd is pid %d)", st["pid"], a.daemon.pid())
		} else if socket == "unicast" {
			// contidd reads the multicast group when it cannot be the
			// audit daemon: the figures would not be unicast's.
			return warm, r, fmt.Errorf("contidd with Socket=unicast is not the kernel's audit daemon (audit status %v, %v)", st, err)
		}
		if r, err = flood(cg, "contid", target, k, n, a.pids(), func() (int, error) { return count(k) }); err != nil {
			return warm, r, err
		}
		if err := a.stopRound(); err != nil {
			return warm, r, err
		}
		r.Counter = a.lastCounters
		r.recount(func() (int, error) { return count(k) }, 0)
		progress("flood contid %d: %s; %s", i, r, r.Counter)
		return warm, r, nil
	}
	// auditdRound floods from an untagged cgroup with a fresh auditd.
	auditdRound := func(i int) (floodRun, floodRun, error) {
		var warm, r floodRun
		cg, err := tree.child(fmt.Sprintf("auditd-%d", i))
		if err != nil {
			return warm, r, err
		}
		if err := applyFloodSettings(); err != nil {
			return warm, r, err
		}
		adir, err := tempDir("contid-bench-flood-auditd-")
		if err != nil {
			return warm, r, err
		}
		ad, logFile, err := startAuditd(adir)
		if err != nil {
			return warm, r, err
		}
		defer ad.undo()
		if err := applyFloodSettings(); err != nil {
			return warm, r, err
		}
		count := func(k string) (int, error) { return auditdKeyCount(logFile, k) }
		k := fmt.Sprintf("%s-%d", key, i)
		if warm, err = warmUp(cg, "auditd", target, k, count); err != nil {
			return warm, r, err
		}
		if r, err = flood(cg, "auditd", target, k, n, []int{ad.pid()}, func() (int, error) { return count(k) }); err != nil {
			return warm, r, err
		}
		if err := ad.stop(); err != nil {
			return warm, r, err
		}
		r.recount(func() (int, error) { return count(k) }, 0)
		progress("flood auditd %d: %s", i, r)
		return warm, r, nil
	}

	// ABBA: drift in the machine lands on both sides.
	rounds := 2
	if cfg.quick {
		rounds = 1
	}
	progress("flood: %s against auditd, %d opens a round, %d rounds each", how, n, rounds)
	var runs, warms []floodRun
	var rateA, rateB []float64
	lostA, lostB, worstA, worstB := 0, 0, 0, 0
	for i := 0; i < rounds; i++ {
		order := []string{"contid", "auditd"}
		if i%2 == 1 {
			order = []string{"auditd", "contid"}
		}
		for _, side := range order {
			var warm, r floodRun
			var err error
			if side == "contid" {
				warm, r, err = contidRound(i)
			} else {
				warm, r, err = auditdRound(i)
			}
			if err != nil {
				return fail(fmt.Errorf("%s round %d: %w", side, i, err))
			}
			runs, warms = append(runs, r), append(warms, warm)
			if side == "contid" {
				rateA = append(rateA, r.EventsPerS)
				lostA += r.Lost
				worstA = max(worstA, r.Lost)
			} else {
				rateB = append(rateB, r.EventsPerS)
				lostB += r.Lost
				worstB = max(worstB, r.Lost)
			}
			if r.TimedOut {
				rep.annotate("flood_events_per_s_"+side, fmt.Sprintf("the producer stopped at its %s bound after %d of %d opens", *floodFor, r.Attempts, n))
			}
		}
	}
	sa, sb := summarize(rateA), summarize(rateB)
	rep.set("flood_events_per_s_contid", sa.Median)
	rep.set("flood_events_per_s_auditd", sb.Median)
	rep.set("flood_ratio", sa.Median/sb.Median)
	// A round's loss is the figure: the worst one.
	rep.set("flood_lost", float64(worstA))
	rep.set("flood_lost_auditd", float64(worstB))
	var kernelLost []map[string]any
	for _, r := range runs {
		kernelLost = append(kernelLost, map[string]any{"side": r.Side, "kernel_lost_delta": r.KernelLost})
	}
	rep.detail("flood", map[string]any{
		"producer":        fmt.Sprintf("contid-bench -flood-open: open+close of a temp file, %d times a round as fast as it can", n),
		"rule":            "-a always,exit -F arch=b64 -S openat -F pid=<producer> -k " + key + "-<round>, added once the producer is ready, removed when it ends",
		"settings":        "backlog_limit 8192, backlog_wait_time 60000, rate_limit 0, enabled 1 (both sides); the host's audit status restored afterwards",
		"contid_side":     how + ", a private journald; the producer in a cgroup contidd tagged; recorded = journal entries with AUDIT_FIELD_KEY and the container's AUDIT_CONTAINER_ID",
		"auditd_side":     "Debian auditd -n, log_format RAW, flush INCREMENTAL_ASYNC, no plugins; the producer in an untagged cgroup; recorded = SYSCALL records with the key",
		"registered":      registered,
		"order":           "ABBA: contid, auditd, auditd, contid",
		"rate_contid":     sa,
		"rate_auditd":     sb,
		"lost_all_rounds": map[string]int{"contid": lostA, "auditd": lostB},
		"kernel_lost":     kernelLost,
		"runs":            runs,
		"warm_up":         warms,
		"producer_note":   "events_per_s is opens per second of the producer's own wall clock: the kernel makes it wait while the backlog is full",
	})
	return nil
}

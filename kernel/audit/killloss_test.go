package audit_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/contid/contid/internal/testenv"
	"github.com/contid/contid/journal"
	"github.com/contid/contid/kernel/audit"
)

// stalledReaderEnv makes the test binary a reader on an inherited
// unicast socket (fd 3) and spool (fd 4) behind a 1 MiB socket, whose
// handler takes nothing for the given time after its first event, and
// again after the first event that follows each SIGUSR1, and which
// reports how many records it read, how many times it was armed and has
// finished stalling, and how many serials its spool says it holds in
// gaps not yet counted, every 100 ms until it is killed:
// "journal-socket,stall,keep" (keep: its spool keeps the losses not yet
// in a loss entry).
const stalledReaderEnv = "CONTID_AUDIT_STALLED_READER"

func stalledReader(spec string) int {
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		fmt.Fprintln(os.Stderr, "bad spec", spec)
		return 2
	}
	stallFor, _ := time.ParseDuration(parts[1])
	w, err := journal.NewWriter(parts[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sp, err := audit.OpenSpool(os.NewFile(4, "audit-spool"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := audit.Config{Source: audit.Unicast, Inherited: os.NewFile(3, "audit-unicast"), Spool: sp, UnicastReceiveBuffer: 1 << 20}
	// The first loss is written at once and later ones wait for the loss
	// interval. Ten seconds, the default, can run out between the two
	// floods on a slow machine; the test needs the second flood's losses
	// still waiting when it kills the reader.
	fcfg := journal.Config{WriteUntagged: true, Queue: 1024, Done: sp.Done, LossInterval: time.Hour}
	if parts[2] == "keep" {
		fcfg.Unreported = sp
	}
	f := journal.NewForwarder(w, nil, fcfg)
	r, err := audit.NewReader(cfg, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	h := &armedStall{Forwarder: f, d: stallFor}
	h.arm()
	rearm := make(chan os.Signal, 1)
	signal.Notify(rearm, syscall.SIGUSR1)
	go func() {
		for range rearm {
			h.arm()
		}
	}()
	var mu sync.Mutex
	go func() {
		for {
			time.Sleep(100 * time.Millisecond)
			mu.Lock()
			fs, rs := f.Stats(), r.Stats()
			fmt.Printf("records %d lost %d kernel %d reader %d entries %d gaps %d arms %d stalls %d held %d\n", rs.Records, fs.Lost, fs.LostKernel, fs.LostReader, fs.LossEntries, rs.Gaps, h.arms.Load(), h.stalls.Load(), audit.HeldGaps(sp))
			mu.Unlock()
		}
	}()
	fmt.Println("ready")
	err = r.Run(context.Background(), h)
	fmt.Fprintln(os.Stderr, err)
	return 1
}

// armedStall blocks the first event after it is armed for d, so the
// socket overflows. arms counts the armings, stalls the stalls that
// ended: while the reader stalls it reads nothing, which is not the
// quiet of a reader that has caught up.
type armedStall struct {
	*journal.Forwarder
	d            time.Duration
	armed        atomic.Bool
	arms, stalls atomic.Int64
}

func (h *armedStall) arm() {
	h.armed.Store(true)
	h.arms.Add(1)
}

func (h *armedStall) HandleEvent(ev *audit.Event) {
	if h.armed.Swap(false) {
		time.Sleep(h.d)
		h.stalls.Add(1)
	}
	h.Forwarder.HandleEvent(ev)
}

// TestKilledAfterLoss: a tagged process floods openat events while the
// reader (the audit daemon, on a kept socket and spool) is stalled, so
// thousands are lost and the first loss entry is written once it has
// caught up. It floods again behind a second stall: these losses wait
// for the loss interval. The reader is SIGKILLed a few seconds after it
// has caught up again, before the kernel's counter is settled; or
// sooner, while it holds the serial gaps uncounted for the reassembly
// timeout. A successor reads on. Every serial from the producer's first
// event to its last is written or counted in a loss entry, once. The
// control, whose spool does not keep the waiting losses, leaves
// thousands of events neither written nor counted.
func TestKilledAfterLoss(t *testing.T) {
	for _, tc := range []struct {
		name  string
		quiet time.Duration // how long the reader read nothing when killed
		keep  bool
		held  bool // the second flood's gaps are still uncounted at the kill
	}{
		{"kept", 3 * time.Second, true, false},
		// As soon as it holds thousands of serials in gaps, within the
		// reassembly timeout, caught up or not: a fixed quiet time
		// does not do, since under load the flood outlasts the stall
		// by more than that timeout and its gaps are counted first.
		{"kept-gaps-held", 0, true, true},
		{"control-not-kept", 3 * time.Second, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			killAfterLoss(t, tc.quiet, tc.keep, tc.held, tc.name)
		})
	}
}

// readerProgress is one of the stalled reader's reports.
type readerProgress struct {
	line                   string
	records, lost, entries int64
	kernel, reader, gaps   int64
	arms, stalls, held     int64
	changed                time.Time // when records or stalls last changed
}

// watchReader follows the stalled reader's reports.
type watchReader struct {
	mu   sync.Mutex
	last readerProgress
}

func (w *watchReader) follow(sc *bufio.Scanner) {
	w.last.records, w.last.changed = -1, time.Now()
	for sc.Scan() {
		var p readerProgress
		if _, err := fmt.Sscanf(sc.Text(), "records %d lost %d kernel %d reader %d entries %d gaps %d arms %d stalls %d held %d",
			&p.records, &p.lost, &p.kernel, &p.reader, &p.entries, &p.gaps, &p.arms, &p.stalls, &p.held); err != nil {
			continue
		}
		p.line = sc.Text()
		w.mu.Lock()
		p.changed = w.last.changed
		if p.records != w.last.records || p.stalls != w.last.stalls {
			p.changed = time.Now()
		}
		w.last = p
		w.mu.Unlock()
	}
}

func (w *watchReader) now() readerProgress {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// waitQuiet waits until the reader has ended its stalls-th stall and
// read nothing for quiet since (a stalled reader reads nothing either).
func (w *watchReader) waitQuiet(t *testing.T, stalls int64, quiet time.Duration) readerProgress {
	t.Helper()
	for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if p := w.now(); p.stalls >= stalls && time.Since(p.changed) >= quiet {
			return p
		}
	}
	t.Fatalf("the reader kept reading (or stalling) for 120s: %s", w.now().line)
	return readerProgress{}
}

// waitHeld waits until the reader has ended its stalls-th stall and
// holds at least n serials in gaps it has not counted yet. They are
// counted a reassembly timeout (2 s) after the serial that shows them;
// a report is at most 100 ms old.
func (w *watchReader) waitHeld(t *testing.T, stalls, n int64) readerProgress {
	t.Helper()
	for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if p := w.now(); p.stalls >= stalls && p.held >= n {
			return p
		}
	}
	t.Fatalf("the reader held no %d serials in gaps after its stall: %s", n, w.now().line)
	return readerProgress{}
}

// waitArmed waits until the reader has been armed arms times.
func (w *watchReader) waitArmed(t *testing.T, arms int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if w.now().arms >= arms {
			return
		}
	}
	t.Fatalf("the reader was not re-armed: %s", w.now().line)
}

// killAfterLoss runs the two floods, the stalls and the kill.
func killAfterLoss(t *testing.T, quiet time.Duration, keep, held bool, name string) {
	t.Helper()
	s := newAuditSession(t)
	s.resetLost = true
	b := tracker(t)
	s.setBacklog(8192, 1000)
	cg := newCgroup(t, b, nil, "killloss", true)
	reg := fakeContainers{cg.chain.ID(): {cg.chain, "killloss", "killloss.scope"}}
	j := testenv.StartJournald(t)

	stored := keptUnicastSocket(t, audit.Config{Source: audit.Unicast, UnicastReceiveBuffer: 1 << 20})
	defer stored.Close()
	spool, err := audit.NewSpool(0)
	if err != nil {
		t.Fatal(err)
	}
	defer spool.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	mode := "nokeep"
	if keep {
		mode = "keep"
	}
	cmd.Env = append(os.Environ(), stalledReaderEnv+"="+j.Socket+",8s,"+mode)
	cmd.ExtraFiles = []*os.File{stored, spool.File()}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		t.Fatalf("stalled reader did not start: %q", sc.Text())
	}
	watch := &watchReader{}
	go watch.follow(sc)

	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	key := "contid-test-" + randomSuffix(t)
	before, _ := s.ctl.Status()
	first := runOpenHelper(t, s, cg.fd, 20000, 1e9, target, key)
	// Its first loss entry is written as soon as the gaps are counted.
	var afterFirst readerProgress
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		afterFirst = watch.waitQuiet(t, 1, 3*time.Second)
		if afterFirst.entries > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first flood lost nothing, or no loss entry was written: %s", afterFirst.line)
		}
	}
	t.Logf("after the first flood: %s", afterFirst.line)
	if afterFirst.stalls != 1 {
		t.Fatalf("the first stall did not end alone: %s", afterFirst.line)
	}
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	// Armed before the flood starts, so its first event (or a host
	// event just before it) stalls the reader.
	watch.waitArmed(t, 2)
	second := runOpenHelper(t, s, cg.fd, 20000, 1e9, target, key)
	var atKill readerProgress
	if held {
		atKill = watch.waitHeld(t, 2, 1000)
	} else {
		atKill = watch.waitQuiet(t, 2, quiet)
	}
	mid, _ := s.ctl.Status()
	t.Logf("killed: %s (the floods took %.1fs and %.1fs)", atKill.line, first.seconds, second.seconds)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// The losses counted since the first entry wait for the loss
	// interval: the kill finds them in no entry.
	waiting := atKill.lost - afterFirst.lost
	if atKill.entries != afterFirst.entries {
		t.Fatalf("a loss entry was written after the first flood's, so nothing waits: %s", atKill.line)
	}
	if !held && waiting < 1000 {
		t.Fatalf("the second flood lost %d events; the kill needs thousands waiting", waiting)
	}

	kept, err := audit.OpenSpool(spool.File())
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	// What the killed reader held uncounted, for its successor to count.
	heldGaps := audit.HeldGaps(kept)
	t.Logf("at the kill: %d losses waiting, %d serials held in gaps", waiting, heldGaps)
	if held && heldGaps < 1000 {
		t.Fatalf("%d serials were held in gaps at the kill; the case needs thousands", heldGaps)
	}
	fcfg := journal.Config{WriteUntagged: true, Done: kept.Done}
	if keep {
		fcfg.Unreported = kept
	}
	p := startPipelineOn(t, j, b, reg,
		audit.Config{Source: audit.Unicast, Inherited: stored, Spool: kept, UnicastReceiveBuffer: 1 << 20}, fcfg)
	p.waitIdle(t, 2*time.Second, 60*time.Second)
	time.Sleep(6 * time.Second)
	after, _ := s.ctl.Status()
	p.stop()
	fs := p.fwd.Stats()

	ids, other := map[string]bool{}, map[string]int{}
	var lo, hi uint64
	for _, e := range j.Select(t, []string{"AUDIT_EVENT_ID", "AUDIT_FIELD_NAME"}, "AUDIT_FIELD_KEY="+key) {
		if ids[e.Get("AUDIT_EVENT_ID")] {
			continue
		}
		ids[e.Get("AUDIT_EVENT_ID")] = true
		serial, _ := strconv.ParseUint(e.Get("AUDIT_EVENT_ID"), 10, 32)
		if lo == 0 || serial < lo {
			lo = serial
		}
		hi = max(hi, serial)
		if name := e.Get("AUDIT_FIELD_NAME"); name != target && name != "" {
			other[name]++
		}
	}
	made := first.offered + second.offered
	for _, n := range other {
		made += n
	}
	var entries, nEntries uint64
	for _, e := range j.Query(t, "MESSAGE_ID="+journal.MessageEventsLost) {
		n, _ := strconv.ParseUint(e.Get("AUDIT_LOST_COUNT"), 10, 64)
		entries += n
		nEntries++
	}
	for _, e := range j.Query(t, "MESSAGE_ID="+journal.MessageAuditGap) {
		n, _ := strconv.ParseUint(e.Get("AUDIT_GAP_COUNT"), 10, 64)
		entries += n
		nEntries++
	}
	// Host-wide, as the count is: every serial from the
	// producer's first to its last is written (any process's
	// event) or counted lost.
	all := map[uint64]bool{}
	for _, e := range j.Select(t, []string{"AUDIT_EVENT_ID"}, "_TRANSPORT=journal") {
		if serial, err := strconv.ParseUint(e.Get("AUDIT_EVENT_ID"), 10, 32); err == nil && serial >= lo && serial <= hi {
			all[serial] = true
		}
	}
	t.Logf("serials %d..%d (%d): %d written, %d of other processes; written + loss entries = %d",
		lo, hi, hi-lo+1, len(all), len(all)-len(ids), uint64(len(all))+entries)
	t.Logf("%s: made %d; written %d; %d losses waiting at the kill; loss entries %d summing %d; successor EventsLost %d (kernel %d, reader %d, stopped %d); kernel counter +%d before the kill, +%d after",
		name, made, len(ids), waiting, nEntries, entries, fs.Lost, fs.LostKernel, fs.LostReader, fs.LostStopped, mid.Lost-before.Lost, after.Lost-mid.Lost)
	got := uint64(len(all)) + entries
	if !keep {
		if got+uint64(waiting) > hi-lo+1 {
			t.Errorf("control: serials %d..%d: %d written + loss entries %d = %d; the %d losses waiting at the kill should be missing", lo, hi, len(all), entries, got, waiting)
		}
		return
	}
	if got != hi-lo+1 {
		t.Errorf("serials %d..%d: %d written + loss entries %d = %d, want %d", lo, hi, len(all), entries, got, hi-lo+1)
	}
}

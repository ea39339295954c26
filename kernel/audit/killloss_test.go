package audit_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contid/contid/internal/testenv"
	"github.com/contid/contid/journal"
	"github.com/contid/contid/kernel/audit"
)

// stalledReaderEnv makes the test binary a reader on an inherited
// unicast socket (fd 3) and spool (fd 4) behind a 1 MiB socket, whose
// handler takes nothing for the given time after its first event, and
// which reports how many records it read every 100 ms until it is
// killed: "journal-socket,stall,keep" (keep: its spool keeps the losses
// not yet in a loss entry).
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
	// As contidd runs it: the default loss interval.
	fcfg := journal.Config{WriteUntagged: true, Queue: 1024, Done: sp.Done}
	if parts[2] == "keep" {
		fcfg.Unreported = sp
	}
	f := journal.NewForwarder(w, nil, fcfg)
	r, err := audit.NewReader(cfg, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	h := &firstStall{Forwarder: f, d: stallFor}
	var mu sync.Mutex
	go func() {
		for {
			time.Sleep(100 * time.Millisecond)
			mu.Lock()
			fs, rs := f.Stats(), r.Stats()
			fmt.Printf("records %d lost %d kernel %d reader %d entries %d gaps %d\n", rs.Records, fs.Lost, fs.LostKernel, fs.LostReader, fs.LossEntries, rs.Gaps)
			mu.Unlock()
		}
	}()
	fmt.Println("ready")
	err = r.Run(context.Background(), h)
	fmt.Fprintln(os.Stderr, err)
	return 1
}

// firstStall blocks the first event for d, so the socket overflows.
type firstStall struct {
	*journal.Forwarder
	d    time.Duration
	once sync.Once
}

func (h *firstStall) HandleEvent(ev *audit.Event) {
	h.once.Do(func() { time.Sleep(h.d) })
	h.Forwarder.HandleEvent(ev)
}

// TestKilledAfterLoss: a tagged process floods openat events while the
// reader (the audit daemon, on a kept socket and spool) is stalled, so
// thousands are lost; the reader is SIGKILLed a few seconds after it has
// caught up, when its forwarder has written the first loss and batches
// the rest for its loss interval, and before the kernel's counter is
// settled; or sooner, while it holds the serial gaps uncounted for the
// reassembly timeout. A successor reads on. Every serial from the producer's first
// event to its last is written or counted in a loss entry, once. The
// control, whose spool does not keep the batched losses, leaves
// thousands of events neither written nor counted.
func TestKilledAfterLoss(t *testing.T) {
	for _, tc := range []struct {
		name  string
		quiet time.Duration // how long the reader read nothing when killed
		keep  bool
	}{
		{"kept", 3 * time.Second, true},
		// Within the reassembly timeout: gaps still held uncounted.
		{"kept-gaps-held", 500 * time.Millisecond, true},
		{"control-not-kept", 3 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The control needs the kill to land while the forwarder
			// still holds losses; when every loss made it into the first
			// entry before the kill, it shows nothing and is run again.
			// Each attempt is a subtest of its own, so that its journald,
			// cgroup and audit settings are gone before the next.
			for attempt := 1; attempt <= 3; attempt++ {
				inconclusive := false
				t.Run(fmt.Sprint("attempt-", attempt), func(t *testing.T) {
					inconclusive = killAfterLoss(t, tc.quiet, tc.keep, tc.name)
				})
				if !inconclusive {
					return
				}
				t.Logf("attempt %d: the kill lost too little for the control to show anything", attempt)
			}
			t.Error("control: in 3 attempts the kill never lost enough for the check to fail")
		})
	}
}

// killAfterLoss runs one flood, stall and kill. inconclusive: the
// control's kill lost nothing it could show.
func killAfterLoss(t *testing.T, quiet time.Duration, keep bool, name string) (inconclusive bool) {
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
	var mu sync.Mutex
	var lastLine string
	lastRecs, lastChange := int64(-1), time.Now()
	go func() {
		for sc.Scan() {
			var n int64
			fmt.Sscanf(sc.Text(), "records %d", &n)
			mu.Lock()
			lastLine = sc.Text()
			if n != lastRecs {
				lastRecs, lastChange = n, time.Now()
			}
			mu.Unlock()
		}
	}()

	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	key := "contid-test-" + randomSuffix(t)
	before, _ := s.ctl.Status()
	res := runOpenHelper(t, s, cg.fd, 20000, 1e9, target, key)
	for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		idle := time.Since(lastChange)
		mu.Unlock()
		if idle >= quiet {
			break
		}
	}
	mid, _ := s.ctl.Status()
	mu.Lock()
	t.Logf("killed: %s", lastLine)
	mu.Unlock()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	kept, err := audit.OpenSpool(spool.File())
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
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
	made := res.offered
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
	t.Logf("%s: made %d; written %d; loss entries %d summing %d; successor EventsLost %d (kernel %d, reader %d, stopped %d); kernel counter +%d before the kill, +%d after",
		name, made, len(ids), nEntries, entries, fs.Lost, fs.LostKernel, fs.LostReader, fs.LostStopped, mid.Lost-before.Lost, after.Lost-mid.Lost)
	got := uint64(len(all)) + entries
	if !keep {
		return got+1000 > hi-lo+1
	}
	if got != hi-lo+1 {
		t.Errorf("serials %d..%d: %d written + loss entries %d = %d, want %d", lo, hi, len(all), entries, got, hi-lo+1)
	}
	return false
}

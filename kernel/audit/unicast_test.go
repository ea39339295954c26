package audit_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"
	"github.com/elastic/go-libaudit/v2/rule"
	"golang.org/x/sys/unix"

	"github.com/contid/contid/internal/testenv"
	"github.com/contid/contid/journal"
	"github.com/contid/contid/kernel"
	"github.com/contid/contid/kernel/audit"
)

// TestFlood: a tagged process opens a file 40,000 times as fast as it
// can, under an openat rule. As the kernel's audit daemon the reader
// takes every event: the kernel slows the producer instead of dropping.
// Over multicast (the control) nothing slows the producer, and every
// event is either in the journal or counted as lost.
func TestFlood(t *testing.T) {
	count := 40000
	if testing.Short() {
		count = 10000
	}
	for _, tc := range []struct {
		source   audit.Source
		lossless bool
	}{
		{audit.Unicast, true},
		{audit.Multicast, false},
	} {
		t.Run(tc.source.String(), func(t *testing.T) {
			s := newAuditSession(t)
			s.resetLost = true
			b := tracker(t)
			s.setBacklog(8192, 60000)
			cg := newCgroup(t, b, nil, "flood", true)
			reg := fakeContainers{cg.chain.ID(): {cg.chain, "flood", "flood.scope"}}
			rcfg, fcfg := audit.Config{Source: tc.source}, journal.Config{}
			if tc.source == audit.Unicast {
				// As contidd runs it under systemd: every record goes
				// through the spool.
				spool, err := audit.NewSpool(0)
				if err != nil {
					t.Fatal(err)
				}
				defer spool.Close()
				rcfg.Spool, fcfg.Done = spool, spool.Done
			}
			p := startPipeline(t, b, reg, rcfg, fcfg)
			target := filepath.Join(t.TempDir(), "target")
			if err := os.WriteFile(target, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			key := "contid-test-" + randomSuffix(t)
			before, err := s.ctl.Status()
			if err != nil {
				t.Fatal(err)
			}
			res := runOpenHelper(t, s, cg.fd, count, 1e9, target, key)
			p.waitIdle(t, 2*time.Second, 60*time.Second)
			after, err := s.ctl.Status()
			if err != nil {
				t.Fatal(err)
			}
			p.stop()
			rs, fs := p.reader.Stats(), p.fwd.Stats()
			// An event the socket cut short may have lost its PATH
			// record, and with it the file name; it is still written.
			written := 0
			for _, e := range p.journald.Select(t, []string{"AUDIT_FIELD_NAME"}, "AUDIT_CONTAINER_ID="+idStr(cg.chain.ID()), "AUDIT_FIELD_KEY="+key) {
				if name := e.Get("AUDIT_FIELD_NAME"); name == target || name == "" {
					written++
				}
			}
			t.Logf("%s: %d opens in %.2fs (%.0f/s); written %d; lost: kernel counter +%d, reader %d, forwarder %d; max lag %v",
				tc.source, res.offered, res.seconds, float64(res.offered)/res.seconds, written, after.Lost-before.Lost, rs.ReaderLost, fs.Lost, rs.MaxLag)
			t.Logf("reader %+v; forwarder %+v", rs, fs)
			if tc.lossless {
				if written != res.offered || fs.Lost != 0 {
					t.Errorf("wrote %d of %d events, %d counted lost", written, res.offered, fs.Lost)
				}
				return
			}
			// Exact, but host-wide: the count also covers the other
			// events of that moment, such as the helper's own start-up
			// opens (about ten).
			if total := uint64(written) + fs.Lost; total < uint64(res.offered) || total > uint64(res.offered)+32 {
				t.Errorf("wrote %d and counted %d lost, of %d", written, fs.Lost, res.offered)
			}
		})
	}
}

// TestUnicastTaken: while another process is the kernel's audit daemon,
// a unicast reader is refused with ErrDaemonRegistered and leaves the
// registration alone; once that daemon closes, the channel is free.
func TestUnicastTaken(t *testing.T) {
	s := newAuditSession(t)
	first, err := audit.NewReader(audit.Config{Source: audit.Unicast}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out := runRegisterHelper(t); !strings.Contains(out, audit.ErrDaemonRegistered.Error()) {
		first.Close()
		t.Fatalf("a second daemon got: %q", out)
	}
	if st, err := s.ctl.Status(); err != nil || int(st.PID) != os.Getpid() {
		first.Close()
		t.Fatalf("after the refused attempt the kernel's audit PID is %v (%v), want %d", st.PID, err, os.Getpid())
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := s.ctl.Status(); err != nil || st.PID != 0 {
		t.Fatalf("after Close the kernel's audit PID is %v (%v), want 0", st.PID, err)
	}
	if out := runRegisterHelper(t); out != "registered" {
		t.Fatalf("the freed channel: %q", out)
	}
}

// execScene sets up what the restart tests share: an exec rule, the
// tracker, a tagged cgroup named name in the registry, and a journald.
func execScene(t *testing.T, name string) (*kernel.BPF, *testCgroup, fakeContainers, *testenv.Journald) {
	t.Helper()
	s := newAuditSession(t)
	b := tracker(t)
	s.setBacklog(8192, 60000)
	s.addRule(execRule("contid-test-" + randomSuffix(t)))
	cg := newCgroup(t, b, nil, name, true)
	reg := fakeContainers{cg.chain.ID(): {cg.chain, name, name + ".scope"}}
	return b, cg, reg, testenv.StartJournald(t)
}

// TestUnicastResume: a tagged container runs 2,500 execs while the reader
// is replaced, as when contidd restarts or is killed. The successor that
// takes over the socket the first left registered (as systemd's file
// descriptor store hands it over) gets every exec. The control, a
// successor that registers a socket of its own, misses what the kernel
// emitted in between.
func TestUnicastResume(t *testing.T) {
	for _, tc := range []struct {
		name    string
		inherit bool
	}{
		{"inherited", true},
		{"control-new-socket", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, cg, reg, j := execScene(t, "resume")
			w, err := journal.NewWriter(j.Socket)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()

			// run starts a reader and forwarder; the returned stop ends
			// them as a killed contidd would, leaving the registration.
			run := func(cfg audit.Config) (*audit.Reader, *journal.Forwarder, func()) {
				r, err := audit.NewReader(cfg, b)
				if err != nil {
					t.Fatalf("NewReader: %v", err)
				}
				f := journal.NewForwarder(w, reg, journal.Config{Queue: 1024})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- r.Run(ctx, f) }()
				return r, f, func() {
					cancel()
					if err := <-done; err != nil {
						t.Errorf("reader: %v", err)
					}
					f.Flush()
					f.Close()
					r.Close()
				}
			}
			first, firstFwd, stopFirst := run(audit.Config{Source: audit.Unicast})
			stored, err := first.Socket()
			if err != nil {
				t.Fatal(err)
			}
			first.KeepRegistered()

			marker := "r" + randomSuffix(t)
			wait := startHelper(t, cg.fd, 2500, 500, "/bin/true", marker)
			time.Sleep(500 * time.Millisecond)
			// The place a killed contidd last saved: behind where it
			// stopped reading.
			saved, _ := first.Position()
			time.Sleep(time.Second)
			stopFirst()
			// contidd away: what the kernel emits now waits in the socket.
			time.Sleep(time.Second)
			cfg := audit.Config{Source: audit.Unicast, Inherited: stored, After: &saved}
			if !tc.inherit {
				// Closing the stored copy ends the old channel, as a
				// systemctl stop does.
				stored.Close()
				cfg.Inherited = nil
			}
			second, fwd, stopSecond := run(cfg)
			if tc.inherit {
				stored.Close()
			}
			res := wait()
			waitRecords(t, second, 2*time.Second, 60*time.Second)
			stopSecond()
			if got := second.Stats().Resumed; got != tc.inherit {
				t.Errorf("Resumed = %v, want %v", got, tc.inherit)
			}
			written := len(j.Select(t, []string{"AUDIT_EVENT_ID"}, "AUDIT_CONTAINER_ID="+idStr(cg.chain.ID()), "AUDIT_FIELD_A1="+marker))
			t.Logf("%s: %d execs in %.2fs; %d written", tc.name, res.offered, res.seconds, written)
			t.Logf("first reader %+v, forwarder %+v", first.Stats(), firstFwd.Stats())
			t.Logf("second reader %+v, forwarder %+v", second.Stats(), fwd.Stats())
			if tc.inherit && written != res.offered {
				t.Errorf("the successor on the inherited socket: %d of %d execs written", written, res.offered)
			}
			if st := fwd.Stats(); tc.inherit && st.Lost != 0 {
				t.Errorf("the successor on the inherited socket counted %d lost (%+v): nothing was", st.Lost, st)
			}
			if st := fwd.Stats(); !tc.inherit && st.LostStopped == 0 {
				t.Errorf("control: the gap without the socket was not counted (%+v)", st)
			}
			if !tc.inherit && written >= res.offered {
				t.Errorf("control: %d of %d execs written across a gap without the socket; the check cannot fail", written, res.offered)
			}
		})
	}
}

// serialWitness records the serial of every event a multicast reader
// sees: the kernel multicasts each record whether or not an audit daemon
// is registered, so it sees the events no daemon read.
type serialWitness struct {
	mu      sync.Mutex
	serials map[uint32]bool
}

func (w *serialWitness) HandleEvent(ev *audit.Event) {
	w.mu.Lock()
	w.serials[ev.Serial] = true
	w.mu.Unlock()
}
func (*serialWitness) HandleLoss(audit.LossKind, uint64) {}
func (*serialWitness) Tick(time.Time)                    {}

// between counts the serials seen strictly between a and b.
func (w *serialWitness) between(a, b uint32) (n uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for s := range w.serials {
		if int32(s-a) > 0 && int32(b-s) > 0 {
			n++
		}
	}
	return n
}

// betweenNotIn counts the serials seen strictly between a and b that
// other did not see.
func (w *serialWitness) betweenNotIn(a, b uint32, other *serialWitness) (n uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	other.mu.Lock()
	defer other.mu.Unlock()
	for s := range w.serials {
		if int32(s-a) > 0 && int32(b-s) > 0 && !other.serials[s] {
			n++
		}
	}
	return n
}

// TestStopGap: a reader stops, the kernel emits events nobody reads, and
// the next reader, given where the first stopped, writes one entry that
// counts exactly the events in between (as a multicast witness saw them)
// and adds them to the losses. The control, a reader not given the
// position, cannot tell: the gap stays silent.
func TestStopGap(t *testing.T) {
	for _, tc := range []struct {
		name         string
		withPosition bool
	}{
		{"position", true},
		{"control-no-position", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newAuditSession(t)
			b := tracker(t)
			s.setBacklog(8192, 60000)
			cg := newCgroup(t, b, nil, "gap", true)
			target := filepath.Join(t.TempDir(), "target")
			if err := os.WriteFile(target, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			witness := &serialWitness{serials: map[uint32]bool{}}
			wr, err := audit.NewReader(audit.Config{Source: audit.Multicast}, nil)
			if err != nil {
				t.Fatal(err)
			}
			wctx, wstop := context.WithCancel(context.Background())
			wdone := make(chan error, 1)
			go func() { wdone <- wr.Run(wctx, witness) }()
			defer func() { wstop(); <-wdone; wr.Close() }()

			first := startPipeline(t, b, nil, audit.Config{Source: audit.Unicast}, journal.Config{})
			runOpenHelper(t, s, cg.fd, 200, 2000, target, "contid-test-"+randomSuffix(t))
			first.waitIdle(t, time.Second, 30*time.Second)
			first.stop()
			pos, ok := first.reader.Position()
			if !ok {
				t.Fatal("the first reader read nothing")
			}
			unread := runOpenHelper(t, s, cg.fd, 300, 2000, target, "contid-test-"+randomSuffix(t))
			cfg := audit.Config{Source: audit.Unicast}
			if tc.withPosition {
				cfg.After = &pos
			}
			second := startPipeline(t, b, nil, cfg, journal.Config{})
			runOpenHelper(t, s, cg.fd, 100, 2000, target, "contid-test-"+randomSuffix(t))
			second.waitIdle(t, time.Second, 30*time.Second)
			second.stop()
			fs := second.fwd.Stats()
			gaps := second.journald.Query(t, "MESSAGE_ID="+journal.MessageAuditGap)
			if !tc.withPosition {
				if len(gaps) != 0 || fs.LostStopped != 0 {
					t.Fatalf("without a position: %d gap entries, %d counted", len(gaps), fs.LostStopped)
				}
				return
			}
			if len(gaps) != 1 {
				t.Fatalf("%d gap entries, want 1 (forwarder %+v)", len(gaps), fs)
			}
			g := gaps[0]
			count, _ := strconv.ParseUint(g.Get("AUDIT_GAP_COUNT"), 10, 64)
			before, _ := strconv.ParseUint(g.Get("AUDIT_GAP_BEFORE"), 10, 64)
			// The new reader may read some of them: the kernel's
			// record of its registration, and records the kernel held
			// from before it (the gap runs to its probe, past them).
			want := witness.betweenNotIn(pos.Serial, uint32(before), second.handed)
			t.Logf("gap entry %q; %d opens while stopped; the witness saw %d events in between, %d of them not read", g.Get("MESSAGE"), unread.offered, witness.between(pos.Serial, uint32(before)), want)
			if count != want || fs.LostStopped != count {
				t.Errorf("gap entry counts %d, the forwarder %d; the witness saw %d events between serials %d and %d", count, fs.LostStopped, want, pos.Serial, before)
			}
			if count < uint64(unread.offered) {
				t.Errorf("gap of %d events, but %d opens ran while stopped", count, unread.offered)
			}
		})
	}
}

// TestRulesState: after the project's rules file is loaded, the kernel
// holds every rule of it; a rule deleted behind contid's back shows as
// missing, by its line.
func TestRulesState(t *testing.T) {
	s := newAuditSession(t)
	path := "../../units/contid.rules"
	added, refused := s.loadRules(path)
	if len(refused) != 0 {
		t.Fatalf("refused: %v", refused)
	}
	loaded, missing, err := s.ctl.RulesState(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 0 || loaded == 0 {
		t.Fatalf("after loading: %d loaded, missing %v", loaded, missing)
	}
	if len(added) == 0 {
		t.Skip("skipped: every rule was already loaded before the test, so none can be deleted safely")
	}
	if err := s.ctl.DeleteRule(added[0]); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.ctl.AddRule(added[0]) }()
	loaded2, missing, err := s.ctl.RulesState(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 1 || loaded2 != loaded-1 || !strings.Contains(missing[0].Text, "-a always,exit") {
		t.Fatalf("after deleting one: %d loaded, missing %+v", loaded2, missing)
	}
}

// TestMixedLoops: a tagged and an untagged exec loop run at once. Every
// tagged exec is written attributed to its container, and no untagged
// one is attributed (untagged events are written too here, so a miss
// shows as an entry without a container rather than as no entry).
func TestMixedLoops(t *testing.T) {
	s := newAuditSession(t)
	b := tracker(t)
	s.setBacklog(8192, 60000)
	key := "contid-test-" + randomSuffix(t)
	s.addRule(execRule(key))
	tagged := newCgroup(t, b, nil, "mixed-tagged", true)
	untagged := newCgroup(t, b, nil, "mixed-untagged", false)
	reg := fakeContainers{tagged.chain.ID(): {tagged.chain, "mixed", "mixed.scope"}}
	p := startPipeline(t, b, reg, audit.Config{Source: audit.Unicast}, journal.Config{WriteUntagged: true})

	count := 1500
	if testing.Short() {
		count = 400
	}
	inMarker, outMarker := "in"+randomSuffix(t), "out"+randomSuffix(t)
	waitIn := startHelper(t, tagged.fd, count, 0, "/bin/true", inMarker)
	waitOut := startHelper(t, untagged.fd, count, 0, "/bin/true", outMarker)
	in, out := waitIn(), waitOut()
	p.waitIdle(t, 2*time.Second, 60*time.Second)
	p.stop()
	id := idStr(tagged.chain.ID())
	inAll := p.journald.Select(t, []string{"AUDIT_CONTAINER_ID"}, "AUDIT_FIELD_A1="+inMarker)
	outAll := p.journald.Select(t, []string{"AUDIT_CONTAINER_ID"}, "AUDIT_FIELD_A1="+outMarker)
	inAttributed, outAttributed := 0, 0
	for _, e := range inAll {
		if e.Get("AUDIT_CONTAINER_ID") == id {
			inAttributed++
		}
	}
	for _, e := range outAll {
		if e.Get("AUDIT_CONTAINER_ID") != "" {
			outAttributed++
		}
	}
	t.Logf("tagged: %d execs in %.2fs, %d written, %d attributed; untagged: %d execs in %.2fs, %d written, %d attributed",
		in.offered, in.seconds, len(inAll), inAttributed, out.offered, out.seconds, len(outAll), outAttributed)
	if inAttributed != in.offered {
		t.Errorf("%d of %d tagged execs attributed", inAttributed, in.offered)
	}
	if outAttributed != 0 || len(outAll) != out.offered {
		t.Errorf("untagged: %d of %d written, %d attributed (want all written, none attributed)", len(outAll), out.offered, outAttributed)
	}
}

// killedReaderEnv makes the test binary a reader that a test kills (see
// killedReader): "journal-socket,send-delay,spool".
const killedReaderEnv = "CONTID_AUDIT_KILLED_READER"

// slowSender stands for a journald that falls behind, so that events
// pile up between reading and writing, as they do under load.
type slowSender struct {
	w     *journal.Writer
	delay time.Duration
}

func (s slowSender) Send(e *journal.Entry) error {
	time.Sleep(s.delay)
	return s.w.Send(e)
}

// killedReader reads on from the unicast socket passed as fd 3, with the
// spool passed as fd 4 when asked, and writes every event (it attributes
// none) until it is killed.
func killedReader(spec string) int {
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		fmt.Fprintln(os.Stderr, "bad spec", spec)
		return 2
	}
	delay, _ := time.ParseDuration(parts[1])
	w, err := journal.NewWriter(parts[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := audit.Config{Source: audit.Unicast, Inherited: os.NewFile(3, "audit-unicast")}
	fcfg := journal.Config{WriteUntagged: true, Queue: 1024}
	if parts[2] == "spool" {
		sp, err := audit.OpenSpool(os.NewFile(4, "audit-spool"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		cfg.Spool, fcfg.Done = sp, sp.Done
	}
	r, err := audit.NewReader(cfg, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	err = r.Run(context.Background(), journal.NewForwarder(slowSender{w, delay}, nil, fcfg))
	fmt.Fprintln(os.Stderr, err)
	return 1
}

// TestUnicastKilled: a reader is killed with SIGKILL while a tagged
// container runs 2,500 execs and its journald lags, so hundreds of
// events it read are still in reassembly or queued for the journal. The
// successor, on the kept socket and the kept spool, writes every one of
// them. The control, without the spool, loses what the killed reader
// held.
func TestUnicastKilled(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spool bool
	}{
		{"spool", true},
		{"control-no-spool", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, cg, reg, j := execScene(t, "killed")

			// Register, and keep the socket as systemd's store would.
			stored := keptUnicastSocket(t, audit.Config{Source: audit.Unicast})
			defer stored.Close()
			mode := "none"
			files := []*os.File{stored}
			var spool *audit.Spool
			if tc.spool {
				var err error
				if spool, err = audit.NewSpool(0); err != nil {
					t.Fatal(err)
				}
				defer spool.Close()
				files = append(files, spool.File())
				mode = "spool"
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), killedReaderEnv+"="+j.Socket+",20ms,"+mode)
			cmd.ExtraFiles = files
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line := make([]byte, 6)
			if _, err := io.ReadFull(out, line); err != nil || string(line) != "ready\n" {
				cmd.Process.Kill()
				t.Fatalf("killed reader did not start: %q %v", line, err)
			}

			marker := "k" + randomSuffix(t)
			wait := startHelper(t, cg.fd, 2500, 500, "/bin/true", marker)
			time.Sleep(2 * time.Second)
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()

			cfg := audit.Config{Source: audit.Unicast, Inherited: stored}
			fcfg := journal.Config{Queue: 1024}
			if tc.spool {
				kept, err := audit.OpenSpool(spool.File())
				if err != nil {
					t.Fatal(err)
				}
				defer kept.Close()
				cfg.Spool, fcfg.Done = kept, kept.Done
			}
			p := startPipelineOn(t, j, b, reg, cfg, fcfg)
			res := wait()
			p.waitIdle(t, 2*time.Second, 60*time.Second)
			p.stop()
			rs := p.reader.Stats()
			ids := map[string]int{}
			for _, e := range j.Select(t, []string{"AUDIT_EVENT_ID"}, "AUDIT_FIELD_A1="+marker) {
				ids[e.Get("AUDIT_EVENT_ID")]++
			}
			dups := 0
			for _, n := range ids {
				dups += n - 1
			}
			fs := p.fwd.Stats()
			t.Logf("%s: %d execs in %.2fs; %d distinct events written (%d twice); the successor replayed %d records, counted %d lost (reader %+v)",
				tc.name, res.offered, res.seconds, len(ids), dups, rs.Replayed, fs.Lost, rs)
			if tc.spool {
				// Nothing was lost, so nothing may be counted: not the
				// serials the killed reader wrote and the successor
				// skips, nor late records.
				if fs.Lost != 0 {
					t.Errorf("the successor counted %d events lost, none was", fs.Lost)
				}
				if len(ids) != res.offered {
					t.Errorf("across the kill: %d of %d execs written", len(ids), res.offered)
				}
				// Killed between a write and its Done, one event is
				// written again; no more.
				if dups > 1 {
					t.Errorf("%d events written twice", dups)
				}
				if rs.Replayed == 0 {
					t.Errorf("the successor replayed nothing: the kill came when nothing was held, so the check proves nothing")
				}
				return
			}
			if len(ids) >= res.offered {
				t.Errorf("control: %d of %d execs written without the spool; the check cannot fail", len(ids), res.offered)
			}
		})
	}
}

// pidCounter counts the system call events of one process.
type pidCounter struct {
	pid int
	// a0, when set, counts only system calls whose first argument it is.
	a0 string
	n  atomic.Int64
}

func (c *pidCounter) HandleEvent(ev *audit.Event) {
	if !ev.HasPID || int(ev.PID) != c.pid {
		return
	}
	for _, r := range ev.Records {
		if r.Type != auparse.AUDIT_SYSCALL {
			continue
		}
		if a0, _ := r.Get("a0"); c.a0 == "" || a0 == c.a0 {
			c.n.Add(1)
		}
		return
	}
}
func (*pidCounter) HandleLoss(audit.LossKind, uint64) {}
func (*pidCounter) Tick(time.Time)                    {}

// TestExemptSelf: a process that is not the registered audit daemon (as
// contidd beside auditd, or after it read on from a kept socket) has its
// own bpf(2) calls audited under the shipped rules, each an event it
// would attribute with more bpf(2) calls. Exempted, it causes none; the
// control, not exempted, causes one per call.
func TestExemptSelf(t *testing.T) {
	for _, tc := range []struct {
		name   string
		exempt bool
	}{
		{"exempt", true},
		{"control-not-exempt", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newAuditSession(t)
			s.addRule("-a always,exit -F arch=b64 -S bpf -k contid-test-" + randomSuffix(t))
			if tc.exempt {
				remove, err := s.ctl.ExemptSelf()
				if err != nil {
					t.Fatal(err)
				}
				defer func() {
					if err := remove(); err != nil {
						t.Errorf("removing the exemption: %v", err)
					}
				}()
			}
			r, err := audit.NewReader(audit.Config{Source: audit.Multicast}, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Only the calls below: the kernel may still deliver events
			// of this process's earlier calls (other tests', other
			// rules') late, when kauditd lags behind.
			own := &pidCounter{pid: os.Getpid(), a0: "ffffffffffffffff"}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx, own) }()
			const calls = 50
			for i := 0; i < calls; i++ {
				// An invalid command: refused, and audited all the same.
				_, _, _ = unix.Syscall(unix.SYS_BPF, ^uintptr(0), 0, 0)
			}
			waitRecords(t, r, time.Second, 10*time.Second)
			cancel()
			<-done
			r.Close()
			got := own.n.Load()
			t.Logf("%s: %d bpf(2) calls, %d events of this process", tc.name, calls, got)
			if tc.exempt && got != 0 {
				t.Errorf("exempted, this process still caused %d events", got)
			}
			if !tc.exempt && got < calls {
				t.Errorf("control: %d events for %d audited calls; the check cannot fail", got, calls)
			}
		})
	}
}

// TestEnsureExempt: reloading the audit rules (auditd's start runs
// auditctl -D) removes contidd's exemption; EnsureExempt puts it back, in
// front of the rules, and leaves it alone while it is there.
func TestEnsureExempt(t *testing.T) {
	s := newAuditSession(t)
	remove, err := s.ctl.ExemptSelf()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := remove(); err != nil {
			t.Errorf("removing the exemption: %v", err)
		}
	}()
	steps := []struct {
		name         string
		before       func() error
		wantRestored bool
	}{
		{"present", func() error { return nil }, false},
		{"removed by a reload", s.ctl.DropExemptions, true},
		{"present again", func() error { return nil }, false},
	}
	for _, st := range steps {
		if err := st.before(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		restored, err := s.ctl.EnsureExempt()
		if err != nil || restored != st.wantRestored {
			t.Errorf("%s: EnsureExempt = %v, %v; want %v", st.name, restored, err, st.wantRestored)
		}
		held, err := s.ctl.Rules()
		if err != nil || len(held) == 0 {
			t.Fatalf("%s: rules %d, %v", st.name, len(held), err)
		}
		if line, _ := rule.ToCommandLine(held[0], false); !strings.Contains(line, "contid-self") {
			t.Errorf("%s: the first rule is %q, not the exemption", st.name, line)
		}
	}
}

// TestUnicastStallCounted: as the audit daemon behind a 1 MiB socket,
// the reader stops taking events for a while (its handler blocks, as
// behind a journald that takes nothing) during a flood of openat events
// from a tagged process. The kernel drops records in its queues, after
// and before they took serials, and counts some of them. Every event
// the producer made is then either written, attributed, or counted in
// EventsLost and in a loss entry, exactly: the control without a stall
// loses nothing, and the stall loses thousands.
func TestUnicastStallCounted(t *testing.T) {
	count := 20000
	for _, tc := range []struct {
		name  string
		stall time.Duration
	}{
		{"no stall", 0},
		{"stalled", 8 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newAuditSession(t)
			s.resetLost = true
			b := tracker(t)
			// A short wait (4 s at HZ=250) keeps a producer the kernel
			// forgets to wake from holding the test for minutes.
			s.setBacklog(8192, 1000)
			cg := newCgroup(t, b, nil, "stall", true)
			reg := fakeContainers{cg.chain.ID(): {cg.chain, "stall", "stall.scope"}}
			j := testenv.StartJournald(t)
			w, err := journal.NewWriter(j.Socket)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			spool, err := audit.NewSpool(0)
			if err != nil {
				t.Fatal(err)
			}
			defer spool.Close()
			r, err := audit.NewReader(audit.Config{Source: audit.Unicast, UnicastReceiveBuffer: 1 << 20, Spool: spool}, b)
			if err != nil {
				t.Fatal(err)
			}
			f := journal.NewForwarder(w, reg, journal.Config{Queue: 1024, LossInterval: time.Second, Done: spool.Done})
			stall, halt := runStalling(t, r, f)
			defer halt()

			target := filepath.Join(t.TempDir(), "target")
			if err := os.WriteFile(target, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			key := "contid-test-" + randomSuffix(t)
			before, err := s.ctl.Status()
			if err != nil {
				t.Fatal(err)
			}
			released := time.AfterFunc(tc.stall, func() { close(stall) })
			defer released.Stop()
			start := time.Now()
			res := runOpenHelper(t, s, cg.fd, count, 1e9, target, key)
			produced := time.Since(start)
			// Let the reader catch up and the rise of the kernel's
			// counter settle, then stop: stopping settles what is left.
			waitRecords(t, r, 2*time.Second, 120*time.Second)
			time.Sleep(6 * time.Second)
			after, err := s.ctl.Status()
			if err != nil {
				t.Fatal(err)
			}
			halt()
			rs, fs := r.Stats(), f.Stats()
			// The producer may open a few other files as it starts,
			// depending on how soon the rule for its PID takes effect:
			// made before the flood, they are written, never lost.
			written, other := 0, map[string]int{}
			for _, e := range j.Select(t, []string{"AUDIT_FIELD_NAME"}, "AUDIT_CONTAINER_ID="+idStr(cg.chain.ID()), "AUDIT_FIELD_KEY="+key) {
				written++
				if name := e.Get("AUDIT_FIELD_NAME"); name != target && name != "" {
					other[name]++
				}
			}
			made := res.offered
			for _, n := range other {
				made += n
			}
			var entries uint64
			for _, e := range j.Query(t, "MESSAGE_ID="+journal.MessageEventsLost) {
				n, _ := strconv.ParseUint(e.Get("AUDIT_LOST_COUNT"), 10, 64)
				entries += n
			}
			t.Logf("other opens: %v", other)
			t.Logf("%s: %d opens in %v; written %d; loss entries %d; EventsLost %d (kernel %d, reader %d); kernel counter +%d; gaps %d; overruns %d",
				tc.name, res.offered, produced.Round(time.Millisecond), written, entries, fs.Lost, fs.LostKernel, fs.LostReader,
				after.Lost-before.Lost, rs.Gaps, rs.Overruns)
			if entries != fs.Lost {
				t.Errorf("loss entries report %d, EventsLost is %d", entries, fs.Lost)
			}
			if got := uint64(written) + fs.Lost; got != uint64(made) {
				t.Errorf("written %d + lost %d = %d, the producer made %d", written, fs.Lost, got, made)
			}
			if tc.stall == 0 && fs.Lost != 0 {
				t.Errorf("without a stall %d counted lost", fs.Lost)
			}
			if tc.stall > 0 && fs.Lost < 1000 {
				t.Errorf("the stall lost only %d: it did not overflow the socket", fs.Lost)
			}
		})
	}
}

package registry

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contid/contid"
)

// TestCrashKeepsEveryGrantedID damages the journal past its last line the
// ways its layout allows: the tail after the last line left as zeros (the
// preallocated padding), cut off (the size update of a grow never reached
// the disk), or holding the start of a next line, possibly followed by
// zeros. The run before ended either with Close (every line synced) or in
// a crash of contidd (every line written, not necessarily synced, but in
// the page cache). After each, on a kernel that forgot everything (a
// reboot), every granted ID must still be recorded and no new allocation
// may repeat one. Losing unsynced lines is TestCrashLosesRecordsNeverIDs.
func TestCrashKeepsEveryGrantedID(t *testing.T) {
	torn := []byte(`{"op":"put","rec":{"id":99,"chain":[99],"sta`)
	tests := []struct {
		name string
		// tail rewrites the journal after the last line (end).
		tail func(b []byte, end int) []byte
	}{
		{"zero padded", func(b []byte, end int) []byte { return b }},
		{"truncated after the last line", func(b []byte, end int) []byte { return b[:end] }},
		{"truncated inside the padding", func(b []byte, end int) []byte { return b[:end+7] }},
		{"padding longer than a chunk", func(b []byte, end int) []byte {
			return append(b[:end:end], make([]byte, journalChunk+123)...)
		}},
		{"torn line then zeros", func(b []byte, end int) []byte {
			copy(b[end:], torn)
			return b
		}},
		{"torn line at the end of the file", func(b []byte, end int) []byte {
			return append(b[:end:end], torn...)
		}},
	}
	for _, tt := range tests {
		for _, end := range []string{"close", "crash"} {
			t.Run(tt.name+"/"+end, func(t *testing.T) {
				h := newHarness(t, Config{Logf: func(string, ...any) {}})
				// Open compacted an empty registry: everything below is
				// in the journal only, the file a crash damages.
				granted := map[contid.ID]bool{}
				for i := range 20 {
					c := h.mustTag(orchestrator, 0, fmt.Sprintf("/machine.slice/c%d.scope", i), Options{})
					granted[c.ID] = true
				}
				explicit := h.mustTag(orchestrator, 500, "/machine.slice/explicit.scope", Options{})
				granted[explicit.ID] = true
				if end == "close" {
					if err := h.r.Close(); err != nil {
						t.Fatal(err)
					}
				} else {
					h.crash()
				}

				j := filepath.Join(h.dir, journalFile)
				b, err := os.ReadFile(j)
				if err != nil {
					t.Fatal(err)
				}
				end := bytes.LastIndexByte(b, '\n') + 1
				if end == 0 || len(b) != journalChunk || !allZero(b[end:]) {
					t.Fatalf("journal of %d bytes, records end at %d: not the preallocated layout this test models", len(b), end)
				}
				if err := os.WriteFile(j, tt.tail(b, end), 0o600); err != nil {
					t.Fatal(err)
				}

				h.k = newFakeKernel()
				h.open()
				for id := range granted {
					if _, err := h.r.Get(id); err != nil {
						t.Errorf("granted ID %d lost: %v", id, err)
					}
				}
				if hwm := h.r.HighWater(); hwm < explicit.ID {
					t.Errorf("high-water mark %d below granted ID %d", hwm, explicit.ID)
				}
				for i := range 5 {
					c := h.mustTag(orchestrator, 0, fmt.Sprintf("/machine.slice/after%d.scope", i), Options{})
					if granted[c.ID] || c.ID <= explicit.ID {
						t.Fatalf("ID %d handed out again after the crash (granted up to %d)", c.ID, explicit.ID)
					}
					granted[c.ID] = true
				}
				// What was written after the crash survives the next one too.
				if err := h.r.Close(); err != nil {
					t.Fatal(err)
				}
				h.k = newFakeKernel()
				h.open()
				if n := len(h.r.List()); n != len(granted) {
					t.Fatalf("%d records after a second reopen, want %d", n, len(granted))
				}
			})
		}
	}
}

// noFlush keeps the background flusher from syncing during a test, so what
// is synced is exactly what the tagging path synced itself.
func noFlush(t *testing.T) {
	t.Helper()
	old := flushInterval
	flushInterval = time.Hour
	t.Cleanup(func() { flushInterval = old })
}

// crash ends the run as kill -9 would: no sync, no close line, every
// written line left in the page cache (the file). It stops the flusher
// first so nothing is synced behind the test's back, and returns how many
// bytes of the journal were synced.
func (h *harness) crash() int64 {
	h.t.Helper()
	r := h.r
	r.change.Lock()
	defer r.change.Unlock()
	st := r.st
	close(st.stop)
	<-st.flushed
	st.stop = nil
	synced := st.syncedBytes()
	st.journal.Close()
	st.journal = nil
	st.lock.Close()
	st.lock = nil
	r.closed = true
	return synced
}

// losePower makes the journal what a power loss right after the crash can
// leave: the synced part, then nothing (the size never reached the disk)
// or zeros (it did, the data did not). The kernel forgets too: a reboot.
func (h *harness) losePower(synced int64, keepSize bool) {
	h.t.Helper()
	j := filepath.Join(h.dir, journalFile)
	b, err := os.ReadFile(j)
	if err != nil {
		h.t.Fatal(err)
	}
	if keepSize {
		clear(b[synced:])
	} else {
		b = b[:synced]
	}
	if err := os.WriteFile(j, b, 0o600); err != nil {
		h.t.Fatal(err)
	}
	h.k = newFakeKernel()
}

// other is a privileged caller that owns nothing, so asking for an ID that
// exists is IdInUse, never a pod.
var other = Caller{PID: 200, Start: 7000, Privileged: true, Cgroup: "/system.slice/other.service"}

// TestCrashLosesRecordsNeverIDs: a crash, with or without a power loss
// that takes the unsynced end of the journal, may lose records but never
// lets an ID handed out before it be handed out again, by allocation or by
// explicit request, whether or not its record survived.
func TestCrashLosesRecordsNeverIDs(t *testing.T) {
	tests := []struct {
		name string
		// after the crash; true if records may be lost
		damage func(h *harness, synced int64) bool
	}{
		{"power loss, journal cut at the synced length", func(h *harness, synced int64) bool {
			h.losePower(synced, false)
			return true
		}},
		{"power loss, zeros after the synced length", func(h *harness, synced int64) bool {
			h.losePower(synced, true)
			return true
		}},
		{"contidd crash, kernel and page cache intact", func(h *harness, synced int64) bool { return false }},
		{"contidd crash, then a clean reboot", func(h *harness, synced int64) bool {
			h.k = newFakeKernel()
			return false
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noFlush(t)
			h := newHarness(t, Config{Logf: func(string, ...any) {}})
			handedOut := map[contid.ID]bool{}
			tag := func(id contid.ID, path string) *Container {
				c := h.mustTag(orchestrator, id, path, Options{})
				handedOut[c.ID] = true
				return c
			}
			for i := range 10 {
				tag(0, fmt.Sprintf("/machine.slice/early%d.scope", i))
			}
			// A background flush: the records so far are durable, the
			// ones below are not.
			if err := h.r.st.sync(); err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				tag(0, fmt.Sprintf("/machine.slice/late%d.scope", i))
			}
			// Its lease sync makes everything before it durable too;
			// nothing after it is synced.
			big := tag(50_000, "/machine.slice/above-lease.scope")
			tag(300, "/machine.slice/inside-lease.scope") // no sync
			after := tag(0, "/machine.slice/after-big.scope")
			if err := h.r.SetMetadata(after.ID, "renamed", "x.scope"); err != nil {
				t.Fatal(err)
			}
			h.k.failTag = fmt.Errorf("injected")
			if _, err := h.r.TagCgroup(orchestrator, 0, target("/machine.slice/burnt.scope"), Options{}); err == nil {
				t.Fatal("injected kernel failure did not fail")
			}
			h.k.failTag = nil
			h.k.mu.Lock()
			handedOut[h.k.next] = true // the burnt one
			h.k.mu.Unlock()
			maxOut := big.ID
			for id := range handedOut {
				maxOut = max(maxOut, id)
			}

			synced := h.crash()
			lossy := tt.damage(h, synced)
			h.open()

			var lost []contid.ID
			for id := range handedOut {
				if _, err := h.r.Get(id); err != nil {
					lost = append(lost, id)
				}
			}
			switch {
			case lossy && len(lost) < 2:
				// 50,000's record, 300, the allocation after them
				// and the burnt one were never synced.
				t.Fatalf("the simulated power loss lost %v: the test does not exercise lost records", lost)
			case !lossy && len(lost) != 1:
				// Only the burnt ID has no record.
				t.Fatalf("records lost without a power loss: %v", lost)
			}
			if w := strings.Join(h.r.Warnings(), "\n"); !strings.Contains(w, "without closing") {
				t.Errorf("no warning about the unclean end: %q", w)
			}
			for i := range 5 {
				c := h.mustTag(orchestrator, 0, fmt.Sprintf("/machine.slice/new%d.scope", i), Options{})
				if c.ID <= maxOut {
					t.Fatalf("allocated ID %d after the crash, IDs up to %d were handed out before it", c.ID, maxOut)
				}
			}
			for id := range handedOut {
				_, err := h.r.TagCgroup(other, id, target(fmt.Sprintf("/machine.slice/again%d.scope", id)), Options{})
				wantErr(t, err, contid.ErrIDInUse)
			}
			// The seal outlives the next, clean, restart and reboot.
			h.reopen()
			h.k = newFakeKernel()
			h.reopen()
			for _, id := range lost {
				_, err := h.r.TagCgroup(other, id, target(fmt.Sprintf("/machine.slice/later%d.scope", id)), Options{})
				wantErr(t, err, contid.ErrIDInUse)
			}
		})
	}
}

// TestCrashRightAfterLease: the lease line is synced before its first ID
// is used, so a crash that loses that ID's record (its only record) still
// keeps the ID from being handed out again.
func TestCrashRightAfterLease(t *testing.T) {
	noFlush(t)
	h := newHarness(t, Config{Logf: func(string, ...any) {}})
	c := h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{})
	synced := h.crash()
	h.losePower(synced, true)
	h.open()
	if _, err := h.r.Get(c.ID); err == nil {
		t.Fatalf("record of %d survived: the power loss did not take it, nothing is tested", c.ID)
	}
	if n := len(h.r.List()); n != 0 {
		t.Fatalf("%d records after losing the only one", n)
	}
	if d := h.mustTag(orchestrator, 0, "/machine.slice/b.scope", Options{}); d.ID <= c.ID || d.ID > c.ID+leaseBlock+1 {
		t.Fatalf("first ID after the crash %d, want above %d by at most the lease block", d.ID, c.ID)
	}
	_, err := h.r.TagCgroup(other, c.ID, target("/machine.slice/c.scope"), Options{})
	wantErr(t, err, contid.ErrIDInUse)
}

// TestJournalHoleBeforeLaterLines: writeback can reach the disk out of
// order, so a power loss may zero an unsynced line and keep one written
// after it. The later line is read.
func TestJournalHoleBeforeLaterLines(t *testing.T) {
	noFlush(t)
	h := newHarness(t, Config{Logf: func(string, ...any) {}})
	a := h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{})
	b := h.mustTag(orchestrator, 0, "/machine.slice/b.scope", Options{})
	c := h.mustTag(orchestrator, 0, "/machine.slice/c.scope", Options{})
	h.crash()
	j := filepath.Join(h.dir, journalFile)
	data, err := os.ReadFile(j)
	if err != nil {
		t.Fatal(err)
	}
	bLine := []byte(fmt.Sprintf(`{"op":"put","rec":{"id":%d,`, b.ID))
	start := bytes.Index(data, bLine)
	if start < 0 {
		t.Fatalf("no line for %d in the journal", b.ID)
	}
	clear(data[start : start+bytes.IndexByte(data[start:], '\n')+1])
	if err := os.WriteFile(j, data, 0o600); err != nil {
		t.Fatal(err)
	}
	h.k = newFakeKernel()
	h.open()
	for _, want := range []struct {
		id   contid.ID
		kept bool
	}{{a.ID, true}, {b.ID, false}, {c.ID, true}} {
		if _, err := h.r.Get(want.id); (err == nil) != want.kept {
			t.Errorf("record %d: kept %v, want %v (%v)", want.id, err == nil, want.kept, err)
		}
	}
}

// TestLeaseOneSyncPerBlock: allocating leaseBlock+1 IDs costs two syncs,
// the lease lines, and nothing else on the tagging path.
func TestLeaseOneSyncPerBlock(t *testing.T) {
	noFlush(t)
	h := newHarness(t, Config{Logf: func(string, ...any) {}})
	before := h.r.st.syncs.Load()
	// The first lease reaches a block past the first ID.
	for i := range leaseBlock + 1 {
		h.mustTag(orchestrator, 0, fmt.Sprintf("/machine.slice/c%d.scope", i), Options{})
	}
	if n := h.r.st.syncs.Load() - before; n != 1 {
		t.Fatalf("%d syncs for %d IDs, want 1", n, leaseBlock+1)
	}
	h.mustTag(orchestrator, 0, "/machine.slice/next-block.scope", Options{})
	// An explicit ID inside the lease needs none; one beyond it does.
	h.mustTag(orchestrator, leaseBlock*3/2, "/machine.slice/explicit.scope", Options{})
	if n := h.r.st.syncs.Load() - before; n != 2 {
		t.Fatalf("%d syncs after the next block began, want 2", n)
	}
	h.mustTag(orchestrator, 10*leaseBlock, "/machine.slice/far.scope", Options{})
	if n := h.r.st.syncs.Load() - before; n != 3 {
		t.Fatalf("%d syncs after an explicit ID beyond the lease, want 3", n)
	}
}

// TestCleanCloseLetsLeaseLapse: after Close nothing is lost, so a restart,
// even with a reboot, neither skips IDs nor refuses unused ones.
func TestCleanCloseLetsLeaseLapse(t *testing.T) {
	h := newHarness(t, Config{})
	h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{})
	h.mustTag(orchestrator, 70, "/machine.slice/b.scope", Options{})
	if err := h.r.Close(); err != nil {
		t.Fatal(err)
	}
	h.k = newFakeKernel()
	h.open()
	if w := h.r.Warnings(); len(w) != 0 {
		t.Fatalf("warnings after a clean close: %q", w)
	}
	if c := h.mustTag(orchestrator, 0, "/machine.slice/c.scope", Options{}); c.ID != 71 {
		t.Fatalf("first ID after a clean restart %d, want 71", c.ID)
	}
	if _, err := h.r.TagCgroup(other, 50, target("/machine.slice/d.scope"), Options{}); err != nil {
		t.Fatalf("unused ID 50 refused after a clean restart: %v", err)
	}
}

// TestFailedWriteKeepsLease: when a write or sync failed during the run,
// the records may miss an ID, so Close must not mark the end clean.
func TestFailedWriteKeepsLease(t *testing.T) {
	h := newHarness(t, Config{Logf: func(string, ...any) {}})
	c := h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{})
	h.r.st.failed.Store(true)
	if err := h.r.Close(); err != nil {
		t.Fatal(err)
	}
	h.k = newFakeKernel()
	h.open()
	if d := h.mustTag(orchestrator, 0, "/machine.slice/b.scope", Options{}); d.ID <= c.ID+leaseBlock {
		t.Fatalf("first ID %d after a run with a failed write: the lease up to %d lapsed", d.ID, c.ID+leaseBlock)
	}
}

// TestLeaseSurvivesCompaction: compaction drops the journal's lease
// lines; IDs handed out afterwards under the same lease must still be
// reserved after a power loss.
func TestLeaseSurvivesCompaction(t *testing.T) {
	noFlush(t)
	h := newHarness(t, Config{Logf: func(string, ...any) {}})
	h.mustTag(orchestrator, 0, "/machine.slice/a.scope", Options{})
	h.r.change.Lock()
	err := h.r.st.compact(h.r)
	h.r.change.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	b := h.mustTag(orchestrator, 0, "/machine.slice/b.scope", Options{})
	synced := h.crash()
	h.losePower(synced, false)
	h.open()
	if _, err := h.r.Get(b.ID); err == nil {
		t.Fatalf("record of %d survived: nothing is tested", b.ID)
	}
	if c := h.mustTag(orchestrator, 0, "/machine.slice/c.scope", Options{}); c.ID <= b.ID {
		t.Fatalf("ID %d handed out again after compaction and a power loss", c.ID)
	}
}

package dbus

import (
	"testing"

	"github.com/contid/contid"
	"github.com/contid/contid/kernel"
)

// A step of what the ledger is shown: a recorded denial carrying the
// kernel's total as the guard read it, a sweep of the kernel's totals,
// or the release of the container with its final total.
type ledgerStep struct {
	kind  string // "carry", "sweep", "forget"
	total uint64
	want  uint64 // what the step journals
}

func TestDenialLedger(t *testing.T) {
	const id = contid.ID(7)
	tests := []struct {
		name  string
		steps []ledgerStep
	}{
		{"nothing suppressed says nothing", []ledgerStep{
			{"carry", 0, 0}, {"sweep", 0, 0}, {"sweep", 0, 0}, {"forget", 0, 0},
		}},
		{"a denial carries the growth since the last entry", []ledgerStep{
			{"carry", 5, 5}, {"carry", 5, 0}, {"carry", 12, 7},
		}},
		{"an older total read late says nothing twice", []ledgerStep{
			{"carry", 12, 12}, {"carry", 9, 0}, {"carry", 13, 1},
		}},
		{"a sweep waits one round for a denial to carry the count", []ledgerStep{
			{"sweep", 40, 0}, {"carry", 45, 45}, {"sweep", 45, 0}, {"sweep", 45, 0},
		}},
		{"a tail no denial carries is summarised at the next sweep", []ledgerStep{
			{"carry", 3, 3}, {"sweep", 10, 0}, {"sweep", 10, 7}, {"sweep", 10, 0},
		}},
		{"a sweep says only what was seen a round before", []ledgerStep{
			{"sweep", 10, 0}, {"sweep", 25, 10}, {"sweep", 30, 15}, {"sweep", 30, 5}, {"sweep", 30, 0},
		}},
		{"a denial after a summary carries only the rest", []ledgerStep{
			{"sweep", 10, 0}, {"sweep", 20, 10}, {"carry", 22, 12}, {"sweep", 22, 0},
		}},
		{"release says what no entry said", []ledgerStep{
			{"carry", 4, 4}, {"sweep", 9, 0}, {"forget", 11, 7},
		}},
		{"release of a container never journaled says its whole total", []ledgerStep{
			{"forget", 30, 30},
		}},
		{"after release the kernel counts from 0 again", []ledgerStep{
			{"carry", 8, 8}, {"forget", 8, 0}, {"carry", 2, 2}, {"sweep", 3, 0}, {"sweep", 3, 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l denialLedger
			var said, final uint64
			for i, s := range tt.steps {
				var got uint64
				switch s.kind {
				case "carry":
					got, _ = l.carry(id, s.total)
				case "sweep":
					got = l.sweep(map[contid.ID]uint64{id: s.total})[id].n
				case "forget":
					got = l.forget(id, s.total)
					said = 0 // a new count starts
					final = 0
				}
				if got != s.want {
					t.Fatalf("step %d (%s %d): journaled %d, want %d", i, s.kind, s.total, got, s.want)
				}
				if s.kind != "forget" {
					said += got
					final = max(final, s.total)
				}
			}
			if last := tt.steps[len(tt.steps)-1]; last.kind != "forget" && said > final {
				t.Fatalf("journaled %d, more than the kernel's total %d", said, final)
			}
		})
	}
}

// TestDenialLedgerKeepsContainersApart: one container's counts never
// move another's.
func TestDenialLedgerKeepsContainersApart(t *testing.T) {
	var l denialLedger
	if n, _ := l.carry(1, 100); n != 100 {
		t.Fatalf("container 1 carried %d, want 100", n)
	}
	if n, _ := l.carry(2, 3); n != 3 {
		t.Fatalf("container 2 carried %d, want 3", n)
	}
	l.sweep(map[contid.ID]uint64{1: 150, 2: 3})
	due := l.sweep(map[contid.ID]uint64{1: 150, 2: 3})
	if len(due) != 1 || due[1] != (denialDue{n: 50, said: 150}) {
		t.Fatalf("second sweep due %v, want only container 1's 50", due)
	}
	if got := l.suppressed(1); got != 150 {
		t.Fatalf("DenialsSuppressed of 1 = %d, want 150", got)
	}
	if got := l.suppressed(2); got != 3 {
		t.Fatalf("DenialsSuppressed of 2 = %d, want 3", got)
	}
}

// TestDenialCountsJournaledOnce drives the Manager as contidd's event
// loop and ticker do: denial events carrying the kernel's totals in the
// order the ring buffer gives them, sweeps in between, and the release.
// However the counts arrive, the journal's sum is the kernel's final
// total, and the other container's records are its own.
func TestDenialCountsJournaledOnce(t *testing.T) {
	m, a, em, _ := newTestManager(t)
	tr := m.cfg.Tracker.(*fakeTracker)
	flooder, other := contid.ID(40), contid.ID(41)
	set := func(id contid.ID, n uint64) {
		tr.mu.Lock()
		if tr.suppressed == nil {
			tr.suppressed = map[contid.ID]uint64{}
		}
		tr.suppressed[id] = n
		tr.mu.Unlock()
	}
	deny := func(id contid.ID, total uint64) {
		m.HandleKernelEvent(kernel.Event{Kind: kernel.EventDenied, Tag: contid.Tag{Chain: contid.Chain{id}}, PID: 9, Op: "kill", Suppressed: total})
	}
	// A flood: recorded denials carry growing totals, one read out of
	// order; the tail grows after the last recorded one.
	for _, total := range []uint64{0, 0, 12, 30, 29, 64} {
		deny(flooder, total)
	}
	deny(other, 0)
	set(flooder, 90)
	m.sweepDenials()
	deny(other, 0)
	set(flooder, 100)
	m.sweepDenials()
	m.sweepDenials()
	set(flooder, 104)
	m.forgetDenials(flooder)

	a.mu.Lock()
	defer a.mu.Unlock()
	if got := a.suppressed["40"]; got != 104 {
		t.Errorf("journaled %d of the flooder's unrecorded denials, want 104", got)
	}
	if got := a.suppressed["41"]; got != 0 {
		t.Errorf("the other container was said to have %d unrecorded denials", got)
	}
	var denials, summaries int
	for _, op := range a.ops {
		switch {
		case op.op == "deny" && op.chain == "41":
			denials++
		case op.op == "suppressed" && op.chain == "40":
			summaries++
		}
	}
	if denials != 2 {
		t.Errorf("%d denial records of the other container, want 2", denials)
	}
	// The first sweep waits; the second says 90-64, the third 100-90,
	// the release 104-100.
	if summaries != 3 {
		t.Errorf("%d summaries of the flooder, want 3", summaries)
	}
	m.flushSignals()
	em.mu.Lock()
	defer em.mu.Unlock()
	if n := len(em.signals); n != 8 {
		t.Errorf("%d TamperDenied signals, want one per recorded denial (8)", n)
	}
}

// TestDenialCountsSurviveRestart: a contidd that restarts goes on from
// what the one before journaled (kept with the kernel's pins), so a
// count is neither said twice nor skipped. The control is a Manager
// that starts without the mark: it says the whole count again.
func TestDenialCountsSurviveRestart(t *testing.T) {
	const id = contid.ID(40)
	tests := []struct {
		name     string
		keepMark bool
		want     uint64 // journaled by the second contidd
	}{
		{"with the mark", true, 30},
		{"without the mark (control)", false, 130},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, a, _, _ := newTestManager(t)
			tr := m.cfg.Tracker.(*fakeTracker)
			tr.mu.Lock()
			tr.suppressed = map[contid.ID]uint64{id: 100}
			tr.mu.Unlock()
			m.HandleKernelEvent(kernel.Event{Kind: kernel.EventDenied, Tag: contid.Tag{Chain: contid.Chain{id}}, PID: 9, Op: "kill", Suppressed: 100})
			if got := a.suppressed["40"]; got != 100 {
				t.Fatalf("first contidd journaled %d, want 100", got)
			}
			tr.mu.Lock()
			tr.suppressed[id] = 130
			if !tt.keepMark {
				tr.said = nil
			}
			tr.mu.Unlock()
			// The restart: a new Manager on the same kernel state.
			next := NewManager(Config{Registry: m.cfg.Registry, Tracker: tr, Cgroups: m.cfg.Cgroups, Version: "test"})
			a2 := &fakeAuditor{}
			next.SetAuditor(a2)
			next.sweepDenials()
			next.sweepDenials()
			if got := a2.suppressed["40"]; got != tt.want {
				t.Fatalf("second contidd journaled %d, want %d", got, tt.want)
			}
		})
	}
}

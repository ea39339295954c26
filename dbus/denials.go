package dbus

import (
	"sync"

	"github.com/contid/contid"
	"github.com/contid/contid/registry"
)

// Enforcing mode records each container's refusals one by one only up
// to a budget (kernel/bpf/denial.c); past it the kernel counts them, per
// container, in a total that only grows. The guards never learn what
// was journaled: the ledger keeps that here, so each suppressed denial
// is journaled exactly once, in the count of a recorded denial of its
// container (carry) or, when none comes, in a summary (sweep). The
// totals are read in any order (a recorded denial read before another
// CPU's larger total, a sweep between), so only growth past what was
// journaled counts. What was journaled is also kept in a pinned map
// (denial_said) that only user space uses, for the next contidd.
type denialLedger struct {
	mu sync.Mutex
	c  map[contid.ID]*denialCount
}

type denialCount struct {
	journaled uint64 // what entries have said so far
	latest    uint64 // the largest total seen (DenialsSuppressed)
	// swept is the total at the sweep before: a count waits one sweep
	// for a recorded denial to carry it, so a flood's count rides on its
	// denial entries and summaries say only a tail.
	swept uint64
	// persisted is what denial_said holds, so that it only grows.
	persisted uint64
}

// denialDue is what a summary must say, and the container's journaled
// total once it has.
type denialDue struct{ n, said uint64 }

// seed takes what an earlier contidd journaled.
func (l *denialLedger) seed(said map[contid.ID]uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, n := range said {
		d := l.entry(id)
		d.journaled, d.latest, d.swept, d.persisted = n, n, n, n
	}
}

func (l *denialLedger) entry(id contid.ID) *denialCount {
	if l.c == nil {
		l.c = map[contid.ID]*denialCount{}
	}
	d := l.c[id]
	if d == nil {
		d = &denialCount{}
		l.c[id] = d
	}
	return d
}

// carry returns how many of total a recorded denial of id should say,
// and counts them as journaled; said is the journaled total after it.
func (l *denialLedger) carry(id contid.ID, total uint64) (n, said uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.entry(id)
	d.latest = max(d.latest, total)
	if total <= d.journaled {
		return 0, d.journaled
	}
	n = total - d.journaled
	d.journaled = total
	return n, total
}

// sweep takes the kernel's totals and returns, per container, what a
// summary must say: the part of the total seen at the previous sweep
// that no recorded denial has carried since.
func (l *denialLedger) sweep(totals map[contid.ID]uint64) map[contid.ID]denialDue {
	l.mu.Lock()
	defer l.mu.Unlock()
	var due map[contid.ID]denialDue
	for id, total := range totals {
		d := l.entry(id)
		d.latest = max(d.latest, total)
		if ready := min(d.swept, total); ready > d.journaled {
			if due == nil {
				due = map[contid.ID]denialDue{}
			}
			due[id] = denialDue{n: ready - d.journaled, said: ready}
			d.journaled = ready
		}
		d.swept = total
	}
	return due
}

// forget drops id once the kernel's entry is gone, returning what of its
// final total was never journaled. A later total for the same ID (a
// denial after the release) starts again from 0, as the kernel's does.
func (l *denialLedger) forget(id contid.ID, final uint64) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var said uint64
	if d := l.c[id]; d != nil {
		said = d.journaled
		delete(l.c, id)
	}
	if final <= said {
		return 0
	}
	return final - said
}

// persist reports whether said is news for denial_said, and takes it as
// written. Writes happen after the entry that said the count, from two
// goroutines (events and the tick): this keeps a late, smaller one from
// undoing a larger. A forgotten container is not written again.
func (l *denialLedger) persist(id contid.ID, said uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.c[id]
	if d == nil || said <= d.persisted {
		return false
	}
	d.persisted = said
	return true
}

// suppressed is the DenialsSuppressed property: the container's total as
// last read, counted or not.
func (l *denialLedger) suppressed(id contid.ID) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d := l.c[id]; d != nil {
		return d.latest
	}
	return 0
}

// sweepDenials journals the counts no recorded denial carried; Run calls
// it each tick.
func (m *Manager) sweepDenials() {
	totals, err := m.cfg.Tracker.DenialsSuppressed()
	if err != nil {
		m.log(PrioWarning, "Failed to read the kernel's counts of unrecorded denials: %v", err)
		return
	}
	for id, d := range m.denials.sweep(totals) {
		m.recordSuppressed(id, d.n)
		m.noteSaid(id, d.said)
	}
}

// seedDenials goes on from what an earlier contidd journaled, so that a
// restart neither repeats a count nor skips one. Should the write of the
// mark fail after an entry, the next contidd says that count again:
// repeated rather than lost.
func (m *Manager) seedDenials() {
	said, err := m.cfg.Tracker.DenialsSaid()
	if err != nil {
		m.log(PrioWarning, "%v; counts of unrecorded denials journaled before this start may be journaled again.", err)
		return
	}
	m.denials.seed(said)
}

// noteSaid keeps in the kernel's pins what the journal has said of id's
// count, once the entry is written.
func (m *Manager) noteSaid(id contid.ID, said uint64) {
	if !m.denials.persist(id, said) {
		return
	}
	if err := m.cfg.Tracker.NoteDenialsSaid(id, said); err != nil {
		m.log(PrioWarning, "%v", err)
	}
}

// forgetDenials journals what a released container's budget held, then
// drops it with the ledger's record.
func (m *Manager) forgetDenials(id contid.ID) {
	final, err := m.cfg.Tracker.ForgetDenials(id)
	if err != nil {
		m.log(PrioWarning, "%v", err)
		return
	}
	if n := m.denials.forget(id, final); n > 0 {
		m.recordSuppressed(id, n)
	}
}

func (m *Manager) recordSuppressed(id contid.ID, n uint64) {
	chain := contid.Chain{id}
	var l contid.Labels
	if c, err := m.cfg.Registry.Get(id); err == nil {
		chain, l = c.Chain, labelsOf(c)
	}
	m.audit(func(a Auditor) error { return a.RecordDenialsSuppressed(chain, l, n) })
}

// deniedSuppressed is a container's DenialsSuppressed.
func (m *Manager) deniedSuppressed(c *registry.Container) uint64 {
	return m.denials.suppressed(c.ID)
}

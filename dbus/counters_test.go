package dbus

import (
	"slices"
	"testing"
)

// EventsWritten/EventsLost read the pipeline's counters when asked, and a
// change is announced once by the periodic flush, not on every event.
func TestEventCountersFollowSource(t *testing.T) {
	m, _, em, _ := newTestManager(t)
	var written, lost uint64
	m.SetEventSource(func() (uint64, uint64) { return written, lost })

	changes := func() int {
		em.mu.Lock()
		defer em.mu.Unlock()
		n := 0
		for _, s := range em.signals {
			if s == ifaceProperties+".PropertiesChanged" {
				n++
			}
		}
		return n
	}
	for _, step := range []struct {
		written, lost uint64
		wantChanges   int
	}{
		{0, 0, 0},
		{10, 0, 1},
		{10, 0, 1}, // unchanged: nothing new to announce
		{25, 3, 2},
	} {
		written, lost = step.written, step.lost
		m.flushCounters()
		props := m.managerProperties()
		if got := props["EventsWritten"].Value(); got != step.written {
			t.Errorf("EventsWritten = %v, want %d", got, step.written)
		}
		if got := props["EventsLost"].Value(); got != step.lost {
			t.Errorf("EventsLost = %v, want %d", got, step.lost)
		}
		if got := changes(); got != step.wantChanges {
			t.Errorf("after %d/%d: %d PropertiesChanged, want %d (signals %v)", step.written, step.lost, got, step.wantChanges, slices.Clone(em.signals))
		}
	}
}

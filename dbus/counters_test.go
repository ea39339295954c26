package dbus

import (
	"slices"
	"testing"
)

// The Events* properties read the pipeline's counters when asked, and a
// change is announced once by the periodic flush, not on every event.
func TestEventCountersFollowSource(t *testing.T) {
	m, _, em, _ := newTestManager(t)
	var now EventCounts
	m.SetEventSource(func() EventCounts { return now })

	changes := func() int {
		m.flushSignals()
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
		counts      EventCounts
		wantChanges int
	}{
		{EventCounts{}, 0},
		{EventCounts{Written: 10}, 1},
		{EventCounts{Written: 10}, 1}, // unchanged: nothing new to announce
		{EventCounts{Written: 25, Lost: 3}, 2},
		{EventCounts{Written: 25, Lost: 3, Ambiguous: 2}, 3},
		{EventCounts{Written: 27, Lost: 3, Ambiguous: 2}, 4},
	} {
		now = step.counts
		m.flushCounters()
		props := m.managerProperties()
		for name, want := range map[string]uint64{
			"EventsWritten":   step.counts.Written,
			"EventsLost":      step.counts.Lost,
			"EventsAmbiguous": step.counts.Ambiguous,
		} {
			if got := props[name].Value(); got != want {
				t.Errorf("%s = %v, want %d", name, got, want)
			}
		}
		if got := changes(); got != step.wantChanges {
			t.Errorf("after %+v: %d PropertiesChanged, want %d (signals %v)", step.counts, got, step.wantChanges, slices.Clone(em.signals))
		}
	}
}

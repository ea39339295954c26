package daemon

import (
	"testing"
	"time"
)

// A ticking loop is stalled once its last beat is older than the limit;
// a bracketed one only while one piece of work has run that long, so an
// idle writer is alive however long it waits.
func TestProgressStalled(t *testing.T) {
	const limit = time.Second
	now := time.Now()
	ago := func(d time.Duration) int64 { return now.Add(-d).UnixNano() }
	tests := []struct {
		name    string
		ticking bool
		last    int64
		busy    int64
		stalled bool
	}{
		{"loop beat just now", true, ago(0), 0, false},
		{"loop beat within the limit", true, ago(limit / 2), 0, false},
		{"loop silent past the limit", true, ago(2 * limit), 0, true},
		{"writer idle for long", false, ago(time.Hour), 0, false},
		{"writer in a short write", false, ago(time.Hour), ago(limit / 2), false},
		{"writer stuck in a write", false, ago(0), ago(2 * limit), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProgress(2 * limit)
			h := p.add("x", tt.ticking)
			h.last.Store(tt.last)
			h.busySince.Store(tt.busy)
			got := p.stalled(now, limit)
			if (len(got) == 1) != tt.stalled || len(got) > 1 {
				t.Fatalf("stalled = %v, want stalled %v", got, tt.stalled)
			}
		})
	}
	p := newProgress(2 * limit)
	p.loop("gone").last.Store(ago(time.Hour))
	p.remove("gone")
	if got := p.stalled(now, limit); len(got) != 0 {
		t.Fatalf("a removed loop still counts: %v", got)
	}
}

package audit_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/contid/contid/journal"
	"github.com/contid/contid/kernel/audit"
)

// TestStopGapDrops: a tagged process opens a file at a steady rate
// across a stop of the reader (the audit daemon) and past the new
// reader's start, while the backlog wait time is 0, so that the kernel
// drops records over the backlog limit before they take a serial: events
// only its lost counter knows of, in no gap. Every event of the flood
// must be written, in the gap, or counted lost. Settling the counter's
// rise against the stop gap (to spare an overcount of a record or two)
// absorbed such drops: with drops after the start, of 1,000,000 events
// 171,703 written + 186,680 in the gap + 583,049 counted lost left 58,568
// counted nowhere; with drops while stopped, 612,807 + 14,817 + 360,078
// left 12,298. Counting the rise as it comes, the flood is covered.
func TestStopGapDrops(t *testing.T) {
	for _, tc := range []struct {
		name string
		// whileStopped drops records while no reader reads; otherwise
		// from the new reader's start on.
		whileStopped bool
	}{
		{"after the start", false},
		{"while stopped", true},
	} {
		t.Run(tc.name, func(t *testing.T) { stopGapDrops(t, tc.whileStopped) })
	}
}

func stopGapDrops(t *testing.T, whileStopped bool) {
	f := startStopFlood(t, "stopdrop", 1000000, 100000)
	s, b, reg, j, key, first, flood, pos := f.s, f.b, f.reg, f.j, f.key, f.first, f.flood, f.pos
	if whileStopped {
		s.setBacklog(64, 0)
	}
	time.Sleep(3 * time.Second)
	if whileStopped {
		s.setBacklog(8192, 60000)
	}
	atStart, err := s.ctl.Status()
	if err != nil {
		t.Fatal(err)
	}
	second := startPipelineOn(t, j, b, reg, audit.Config{Source: audit.Unicast, After: &pos}, journal.Config{WriteUntagged: true})
	if !whileStopped {
		s.setBacklog(64, 0)
	}
	res := <-flood
	s.setBacklog(8192, 60000)
	second.waitIdle(t, 2*time.Second, 120*time.Second)
	time.Sleep(6 * time.Second)
	atEnd, err := s.ctl.Status()
	if err != nil {
		t.Fatal(err)
	}
	second.stop()
	fs := second.fwd.Stats()
	ls := first.fwd.Stats()

	var lossSum, gapSum uint64
	for _, e := range j.Query(t, "MESSAGE_ID="+journal.MessageEventsLost) {
		n, _ := strconv.ParseUint(e.Get("AUDIT_LOST_COUNT"), 10, 64)
		lossSum += n
	}
	for _, e := range j.Query(t, "MESSAGE_ID="+journal.MessageAuditGap) {
		n, _ := strconv.ParseUint(e.Get("AUDIT_GAP_COUNT"), 10, 64)
		gapSum += n
	}
	mine := len(j.Select(t, []string{"AUDIT_EVENT_ID"}, "AUDIT_FIELD_KEY="+key))
	got := uint64(mine) + gapSum + lossSum
	t.Logf("%d opens in %.2fs; lost counter %d at the new start, %d at its end; first EventsLost %d; second EventsLost %d (kernel %d, reader %d, stopped %d)",
		res.offered, res.seconds, atStart.Lost, atEnd.Lost, ls.Lost, fs.Lost, fs.LostKernel, fs.LostReader, fs.LostStopped)
	t.Logf("%d written + %d in the gap + %d counted lost = %d, the flood made %d", mine, gapSum, lossSum, got, res.offered)
	if got < uint64(res.offered) {
		t.Errorf("%d written + %d in the gap + %d counted lost = %d, the flood made %d: %d events counted nowhere", mine, gapSum, lossSum, got, res.offered, uint64(res.offered)-got)
	}
}

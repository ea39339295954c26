package audit

import (
	"os"

	"github.com/elastic/go-libaudit/v2/auparse"

	"strings"
	"time"
)

// BootID is the kernel's ID of this boot ("" if unreadable).
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Position returns where the reader is: the last record it read, or
// Config.After before it read any.
func (r *Reader) Position() (Position, bool) {
	if p := r.last.Load(); p != nil {
		q := *p
		q.Lost = r.lostCounted.Load()
		return q, true
	}
	if r.cfg.After != nil {
		return *r.cfg.After, true
	}
	return Position{}, false
}

// advance notes each record's serial. The first one read is compared
// with Config.After: the serials in between went unread.
func (r *Reader) advance(serial uint32, at time.Time) {
	prev := r.last.Load()
	if prev == nil {
		r.reportGap(serial, at)
	} else if int32(serial-prev.Serial) <= 0 {
		// Records of events on other CPUs interleave: keep the highest.
		return
	}
	r.last.Store(&Position{Boot: r.boot, Serial: serial, Time: at, Lost: r.lostCounted.Load()})
}

func (r *Reader) reportGap(first uint32, at time.Time) {
	after := r.cfg.After
	// A reader that took over the kept socket reads on where its
	// predecessor stopped reading, which may be past the position it last
	// saved: nothing went unread, and whatever the kernel dropped shows
	// as missing serials in the stream.
	if after == nil || after.Boot == "" || after.Boot != r.boot || r.resumed {
		return
	}
	d := int32(first - after.Serial)
	if d <= 1 {
		return
	}
	if r.cfg.Source == Unicast {
		// The first records a new audit daemon reads can be ones the
		// kernel still held from before it registered, with the events
		// emitted while no daemon read missing after them as well as
		// before: the gap runs to the probe's serial, which is higher
		// than any of them.
		if err := r.ctl.WriteUser(auparse.AUDIT_TRUSTED_APP, probeText); err == nil {
			r.stop = stopGap{pending: true, after: *after, first: first, firstAt: at, seen: map[uint32]struct{}{}}
			return
		}
	}
	r.handleGap(Gap{Events: uint64(d - 1), After: after.Serial, Before: first, Stopped: after.Time, Resumed: at})
}

func (r *Reader) handleGap(g Gap) {
	if gh, ok := r.handler.(GapHandler); ok {
		gh.HandleGap(g)
		return
	}
	r.handler.HandleLoss(LossStopped, g.Events)
}

// stopGap is the gap behind a new audit daemon while its probe is out:
// every serial after the position it was given and before the probe's
// was emitted before it registered, and each it does not read went
// unread while no contidd read.
type stopGap struct {
	pending bool
	after   Position
	// first is the first serial read, and when.
	first   uint32
	firstAt time.Time
	// probe is the probe's serial, once it came back, and when.
	probe    uint32
	returned bool
	probeAt  time.Time
	// seen are the serials handed on between after and the probe.
	seen map[uint32]struct{}
}

// stopProbeMax bounds the wait for the probe: if it never comes back
// (auditing switched off, say), the gap ends at the first serial read.
const stopProbeMax = 30 * time.Second

// stopProbeReturned: the probe came back with this serial. What the
// stream misses below it is the stop gap's, not a loss of its own.
func (r *Reader) stopProbeReturned(serial uint32, now time.Time) {
	st := &r.stop
	if !st.pending || st.returned {
		return
	}
	st.probe, st.returned, st.probeAt = serial, true, now
	g := &r.gaps
	g.suspects = g.suspects[:0]
	r.keepSuspects()
	g.floor, g.hasFloor, g.hasHigh = serial, true, false
}

// stopSeen notes a serial handed on while the stop gap is open.
func (r *Reader) stopSeen(serial uint32) {
	if st := &r.stop; st.pending && int32(serial-st.after.Serial) > 0 && (!st.returned || int32(st.probe-serial) > 0) {
		st.seen[serial] = struct{}{}
	}
}

// settleStopGap reports the stop gap once events below the probe had a
// reassembly timeout to complete, or at once when force (the reader
// stops).
func (r *Reader) settleStopGap(now time.Time, force bool) {
	st := &r.stop
	if !st.pending {
		return
	}
	g := Gap{After: st.after.Serial, Stopped: st.after.Time, Resumed: st.firstAt}
	switch {
	case st.returned && (force || now.Sub(st.probeAt) > r.cfg.ReassemblyTimeout+r.cfg.TickInterval):
		var read uint64
		for serial := range st.seen {
			if int32(st.probe-serial) > 0 {
				read++
			}
		}
		g.Before = st.probe
		g.Events = uint64(st.probe-st.after.Serial-1) - read
	case !st.returned && (force || now.Sub(st.firstAt) > stopProbeMax):
		g.Before = st.first
		g.Events = uint64(st.first - st.after.Serial - 1)
	default:
		return
	}
	r.stop = stopGap{}
	if g.Events > 0 {
		r.handleGap(g)
	}
}

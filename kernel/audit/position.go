package audit

import (
	"os"
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
	g := Gap{Events: uint64(d - 1), After: after.Serial, Before: first, Stopped: after.Time, Resumed: at}
	if gh, ok := r.handler.(GapHandler); ok {
		gh.HandleGap(g)
		return
	}
	r.handler.HandleLoss(LossStopped, g.Events)
}

package audit

import (
	"context"
	"sync"
	"time"
)

// The kernel's lost counter (audit status `lost`) counts records, not
// events, and it counts two kinds of drop:
//
//   - before the record took a serial: audit_log_start gives up when the
//     backlog stays over its limit for the wait time (or at once for a
//     caller that may not sleep), or cannot allocate the buffer. Only
//     the counter knows of such a record. If another record of its event
//     did take a serial, the event still shows: a SYSCALL record dropped
//     this way leaves the rest headless, anything else leaves an event
//     short of a record, still written.
//   - after it took one: the rate limit in audit_log_end, and kauditd
//     giving up on its retry or hold queue (both bounded by the backlog
//     limit). The record's serial then never comes, or its event comes
//     headless.
//
// kauditd also drops without counting: a record it could not deliver to
// the daemon's socket goes to kauditd_hold_skb, which discards it
// silently unless the kernel was booted with audit=1.
//
// As the audit daemon the reader is sent every serial the kernel hands
// out, so it counts the events lost after taking a serial exactly, from
// the stream: serials that never came and headless events. Adding the
// counter's rise on top counts those twice whenever the kernel counted
// them; leaving it out misses events dropped whole before taking a
// serial. So the rise is settled against what the stream shows: once
// the reader has caught up with the rise (read its socket empty, and
// waited out reassembly), each record the stream showed lost since the
// previous settlement accounts for one record of the rise, and only the
// remainder is counted. A multicast reader counts the rise as it comes:
// its own gaps are counted only around its socket's overflows, and the
// kernel multicasts a record before its unicast delivery can fail.

// settleMax bounds how long a rise waits for the reader to catch up: a
// reader that never reads its socket empty still counts it.
const settleMax = time.Minute

// kernelFeed carries the counter from the poller to the read loop: the
// rise since the last take, and the counter value it runs to.
type kernelFeed struct {
	mu   sync.Mutex
	rise uint64
	at   uint32
	has  bool
}

func (f *kernelFeed) add(rise uint64, at uint32) {
	f.mu.Lock()
	f.rise += rise
	f.at, f.has = at, true
	f.mu.Unlock()
}

func (f *kernelFeed) take() (rise uint64, at uint32, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rise, at, ok = f.rise, f.at, f.has
	f.rise, f.has = 0, false
	return rise, at, ok
}

// kernelAccount is the read loop's side of the counter (unicast).
type kernelAccount struct {
	// pending is the rise not yet settled, through the counter value it
	// runs to; first is when it began, caughtUp when the socket was
	// first read empty after its last part came (zero: not yet).
	pending  uint64
	through  uint32
	first    time.Time
	caughtUp time.Time
	// credit is the records the stream showed lost since the last
	// settlement, at is when the last of them was seen.
	credit uint64
	at     time.Time
}

// settleDelay is how long after catching up a rise waits for the stream
// to show what it lost: a serial gap is counted a reassembly timeout
// after the later serial, a headless rest once reassembly gives up on it.
func (r *Reader) settleDelay() time.Duration {
	return 2*r.cfg.ReassemblyTimeout + 2*r.cfg.TickInterval
}

// takeKernelLost moves the poller's rise into the account: counted at
// once over multicast, held for settling as the audit daemon.
func (r *Reader) takeKernelLost(now time.Time) {
	rise, at, ok := r.kfeed.take()
	if !ok {
		return
	}
	k := &r.kacct
	if r.cfg.Source != Unicast {
		r.countKernelLost(rise)
		r.setCounted(at)
		return
	}
	k.through = at
	if rise == 0 {
		if k.pending == 0 {
			r.setCounted(at)
		}
		return
	}
	if k.pending == 0 {
		r.lapseCredit(now)
		k.first = now
	}
	k.pending += rise
	k.caughtUp = time.Time{}
}

// readEmpty: a read found the socket empty, so everything the kernel had
// delivered before is read.
func (r *Reader) readEmpty(now time.Time) {
	if k := &r.kacct; k.pending > 0 && k.caughtUp.IsZero() {
		k.caughtUp = now
	}
}

// streamLost notes n records the stream showed lost after they took a
// serial, which the kernel may also have counted.
func (r *Reader) streamLost(n uint64, now time.Time) {
	if r.cfg.Source != Unicast || n == 0 {
		return
	}
	r.kacct.credit += n
	r.kacct.at = now
	r.keepCredit()
}

// keepCredit records the credit in the spool beside the counter value
// counted up to: a successor of a killed contidd settles the rise since
// that value against it, as this one would have, rather than counting
// the rise whole on top of the losses the stream showed.
func (r *Reader) keepCredit() {
	if sp := r.cfg.Spool; sp != nil {
		sp.setCredit(r.kacct.credit)
	}
}

// settleKernelLost counts what of a caught-up rise the stream does not
// account for; force settles whatever is pending (the reader stops).
// Credit with no rise to meet lapses after the settle delay, so an old
// gap cannot hide a later drop.
func (r *Reader) settleKernelLost(now time.Time, force bool) {
	k := &r.kacct
	if k.pending == 0 {
		r.lapseCredit(now)
		return
	}
	ready := !k.caughtUp.IsZero() && now.Sub(k.caughtUp) >= r.settleDelay()
	if !force && !ready && now.Sub(k.first) < settleMax {
		return
	}
	used := min(k.pending, k.credit)
	k.credit -= used
	// Before the count and the counter value: a kill in between counts
	// again, rather than misses.
	r.keepCredit()
	n := k.pending - used
	k.pending, k.first, k.caughtUp = 0, time.Time{}, time.Time{}
	r.countKernelLost(n)
	r.setCounted(k.through)
}

// lapseCredit forgets credit no rise met within the settle delay.
func (r *Reader) lapseCredit(now time.Time) {
	if k := &r.kacct; k.credit > 0 && now.Sub(k.at) > r.settleDelay() {
		k.credit = 0
		r.keepCredit()
	}
}

func (r *Reader) countKernelLost(n uint64) {
	if n > 0 {
		r.stats.kernelLost.Add(n)
		r.handler.HandleLoss(LossKernel, n)
	}
}

// setCounted records the counter value up to which its rise is counted:
// in the spool at once, which a killed contidd leaves to its successor,
// and in Position, saved every second.
func (r *Reader) setCounted(at uint32) {
	r.lostCounted.Store(at)
	if sp := r.cfg.Spool; sp != nil {
		sp.setKernelLost(at)
	}
}

// lostWhileAway feeds the rise of the kernel's counter since the
// previous contidd last counted it, in this boot: as its spool says,
// which it updates as it counts, or else as its saved Position says,
// which lags by up to a second. A counter below that value was reset
// (auditctl --reset-lost): all of it is new.
func (r *Reader) lostWhileAway(now uint32) {
	prev, ok := uint32(0), false
	if sp := r.cfg.Spool; sp != nil {
		prev, ok = sp.kernelLost()
		if ok {
			// What the stream showed lost since prev, before the kill.
			r.kacct.credit, r.kacct.at = sp.credit(), time.Now()
		}
	}
	fromSpool := ok
	if after := r.cfg.After; !ok && after != nil && after.Boot != "" && after.Boot == r.boot {
		prev, ok = after.Lost, true
	}
	if !ok {
		r.setCounted(now)
		return
	}
	n := now
	if now >= prev {
		n = now - prev
	}
	if !fromSpool {
		// The predecessor stopped, or its spool is gone: the rise is what
		// the kernel dropped while no contidd read, and it is counted at
		// once. Left to the settlement, it would meet the serial gaps
		// this reader finds after its start, and without audit=1 kauditd
		// drops records it cannot deliver without counting them: such a
		// gap would hide as many records the kernel dropped before they
		// took a serial while contidd was away (5,149 of a 1,000,000-event
		// flood in TestStopGapDrops). What the counter and a gap both
		// hold is counted twice instead.
		r.countKernelLost(uint64(n))
		r.setCounted(now)
		return
	}
	// A killed predecessor's spool: the rise since the value it counted
	// up to is settled against what its stream showed lost, as it would
	// have settled it.
	r.setCounted(prev)
	r.kfeed.add(uint64(n), now)
}

// lostCounter reads the kernel's lost counter with AUDIT_GET.
func (r *Reader) lostCounter() (uint32, error) {
	st, err := r.ctl.Status()
	if err != nil {
		return 0, err
	}
	return st.Lost, nil
}

// pollLost feeds the rise of the kernel's lost counter to the read loop.
// The counter is 32 bits and `auditctl --reset-lost` zeroes it, so a drop
// is read as a reset and counted from zero.
func (r *Reader) pollLost(ctx context.Context, last uint32) {
	t := time.NewTicker(r.cfg.StatusInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := r.lostCounter()
		if err != nil {
			continue
		}
		if cur >= last {
			r.kfeed.add(uint64(cur-last), cur)
		} else {
			r.kfeed.add(uint64(cur), cur)
		}
		last = cur
	}
}

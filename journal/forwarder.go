package journal

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/contid/contid"
	"github.com/contid/contid/kernel/audit"
)

// Containers gives the registry's view of an ID: its chain (innermost
// first) and what names it. The daemon adapts the registry to it; journal
// does not import the registry.
type Containers interface {
	Lookup(id contid.ID) (chain contid.Chain, l Labels, ok bool)
}

// Labels are what names a container in its entries; empty ones are left
// out. The type is the root package's, which the D-Bus layer's records
// share.
type Labels = contid.Labels

// addLabels writes the labels' fields into e: every entry attributed to a
// container, and contid's own records of it, carry the same ones.
func addLabels(e *Entry, l *Labels) {
	if l.Name != "" {
		e.Add("AUDIT_CONTAINER_NAME", l.Name)
	}
	if l.Unit != "" {
		e.Add("AUDIT_CONTAINER_UNIT", l.Unit)
	}
	if l.Manager != "" {
		e.Add("AUDIT_CONTAINER_MANAGER", l.Manager)
	}
	if l.Image != "" {
		e.Add("AUDIT_CONTAINER_IMAGE", l.Image)
	}
	if l.ManagerID != "" {
		e.Add("AUDIT_CONTAINER_MANAGER_ID", l.ManagerID)
	}
	if l.UUID != "" {
		e.Add("AUDIT_CONTAINER_UUID", l.UUID)
	}
}

// Config tunes the forwarder; the zero value gives the defaults.
type Config struct {
	// WriteUntagged also writes events of processes in no container
	// (without AUDIT_CONTAINER_* fields). Off by default: the host's
	// audit log is auditd's and journald's business. Events whose PID
	// was reused too close to tell are written either way (see
	// buildEvent).
	WriteUntagged bool
	// LossInterval is the least time between two loss entries; losses in
	// between are summed into the next one. Default 10s.
	LossInterval time.Duration
	// Queue, if positive, decouples writing from reading: up to Queue
	// encoded entries wait for a writer goroutine. Call Close when done.
	Queue int
	// OnLoss, if set, is called after each loss entry with the counters,
	// so the daemon can emit PropertiesChanged for EventsLost.
	OnLoss func(Stats)
	// Done, if set, is called with each event's serial once the event is
	// in the journal or known not to go there (untagged, or refused by
	// journald and counted), in the order the events came: the audit
	// reader's spool may then forget it.
	Done func(serial uint32)
	// Unreported, if set, keeps the losses counted and not yet in a loss
	// entry where the next contidd finds them (the audit spool): a
	// forwarder started with it reports what its killed predecessor
	// had not, and counts it in its Stats.
	Unreported LossKeeper
	// Passwd is the file that names UIDs in MESSAGEs; default
	// /etc/passwd.
	Passwd string
}

// LossKeeper keeps the losses not yet reported across a kill;
// *audit.Spool is one.
type LossKeeper interface {
	KeepLoss(audit.LossCounts)
	KeptLoss() audit.LossCounts
}

// Stats are the forwarder's counters.
type Stats struct {
	Written     uint64 // events written to the journal
	Lost        uint64 // LostKernel + LostReader + LostStopped + WriteFailed
	LostKernel  uint64 // the kernel's lost counter rose by this much
	LostReader  uint64 // serials that never reached the reader
	LostStopped uint64 // events emitted while no contidd read
	WriteFailed uint64 // events journald did not accept
	Untagged    uint64 // events of untagged processes, not written (ambiguous ones are written)
	LossEntries uint64 // loss entries written
	Truncated   uint64 // events written with fields or bytes left out
}

// Forwarder turns audit events into journal entries: it implements
// audit.Handler. Its Handle methods run on the reader's goroutine; Stats
// may be called from anywhere.
type Forwarder struct {
	out        Sender
	containers Containers
	cfg        Config

	entry Entry
	msg   []byte
	// users names the UIDs in MESSAGEs; only the reader's goroutine
	// uses it.
	users *userNames
	types []string
	// val, argv and argBuf are reused by appendAuditFields.
	val, argv, argBuf []byte

	// queue and free cycle Config.Queue entries between the reader and
	// the writer goroutine; nil when writing synchronously.
	queue, free chan *queued
	drained     chan struct{}

	written, lostKernel, lostReader, lostStopped, writeFailed, untagged, lossEntries, truncated atomic.Uint64

	// pending is the loss not yet reported, and since when.
	mu         sync.Mutex
	pending    lossWindow
	lastReport time.Time
}

type lossWindow struct {
	kernel, reader, stopped, write uint64
	since                          time.Time
}

func (w lossWindow) total() uint64 { return w.kernel + w.reader + w.stopped + w.write }

var (
	_ audit.Handler    = (*Forwarder)(nil)
	_ audit.GapHandler = (*Forwarder)(nil)
)

// NewForwarder writes to out, looking containers up in c (nil: IDs only).
func NewForwarder(out Sender, c Containers, cfg Config) *Forwarder {
	if cfg.LossInterval <= 0 {
		cfg.LossInterval = 10 * time.Second
	}
	passwd := cfg.Passwd
	if passwd == "" {
		passwd = "/etc/passwd"
	}
	f := &Forwarder{out: out, containers: c, cfg: cfg, users: newUserNames(passwd)}
	if cfg.Queue > 0 {
		f.queue = make(chan *queued, cfg.Queue)
		f.free = make(chan *queued, cfg.Queue)
		f.drained = make(chan struct{})
		for i := 0; i < cfg.Queue; i++ {
			f.free <- new(queued)
		}
		go f.writeQueued()
	}
	if k := cfg.Unreported; k != nil {
		if c := k.KeptLoss(); c.Kernel+c.Reader+c.Stopped+c.Write > 0 {
			f.lostKernel.Add(c.Kernel)
			f.lostReader.Add(c.Reader)
			f.lostStopped.Add(c.Stopped)
			f.writeFailed.Add(c.Write)
			f.pending = lossWindow{kernel: c.Kernel, reader: c.Reader, stopped: c.Stopped, write: c.Write, since: c.Since}
			if f.pending.since.IsZero() {
				f.pending.since = time.Now()
			}
		}
	}
	return f
}

// keepPending hands the unreported losses to Config.Unreported; f.mu is
// held.
func (f *Forwarder) keepPending() {
	if k := f.cfg.Unreported; k != nil {
		w := f.pending
		k.KeepLoss(audit.LossCounts{Kernel: w.kernel, Reader: w.reader, Stopped: w.stopped, Write: w.write, Since: w.since})
	}
}

// Stats returns the counters.
func (f *Forwarder) Stats() Stats {
	s := Stats{
		Written:     f.written.Load(),
		LostKernel:  f.lostKernel.Load(),
		LostReader:  f.lostReader.Load(),
		LostStopped: f.lostStopped.Load(),
		WriteFailed: f.writeFailed.Load(),
		Untagged:    f.untagged.Load(),
		LossEntries: f.lossEntries.Load(),
		Truncated:   f.truncated.Load(),
	}
	s.Lost = s.LostKernel + s.LostReader + s.LostStopped + s.WriteFailed
	return s
}

// HandleEvent implements audit.Handler. With a queue, the entry is
// encoded here and written by the writer goroutine, so a slow journald
// does not hold up the reader (and with it attribution, which must
// happen before the event's PID is reused).
func (f *Forwarder) HandleEvent(ev *audit.Event) {
	_, switches := auditingSwitch(ev)
	// An ambiguous event may be a container's: dropped, it would let a
	// container that recycles PIDs fast make its own calls vanish.
	skip := !ev.Tagged() && !ev.Ambiguous() && !f.cfg.WriteUntagged && !switches
	if skip {
		f.untagged.Add(1)
	}
	if f.queue == nil {
		if !skip {
			f.buildEvent(&f.entry, ev)
			f.send(&f.entry)
		}
		f.done(ev.Serial)
		return
	}
	if skip && f.cfg.Done == nil {
		return
	}
	// A skipped event still takes its turn in the queue: it is done only
	// once every event before it is written.
	q := <-f.free
	q.serial, q.skip = ev.Serial, skip
	if !skip {
		f.buildEvent(&q.entry, ev)
	}
	f.queue <- q
}

// auditingSwitch reports whether the event switches kernel auditing on or
// off, and the new value. Such an event is written whoever caused it, and
// a switch off as a warning: while auditing is off the kernel audits
// nothing, so nothing is lost or counted, and this entry is the only
// trace of the gap. (The kernel names no PID in it, so it could not be
// attributed to a container anyway.)
func auditingSwitch(ev *audit.Event) (enabled string, ok bool) {
	for i := range ev.Records {
		if ev.Records[i].Type == auparse.AUDIT_CONFIG_CHANGE {
			if v, ok := ev.Records[i].Get("audit_enabled"); ok {
				return v, true
			}
		}
	}
	return "", false
}

// queued is an event waiting for the writer goroutine.
type queued struct {
	entry  Entry
	serial uint32
	skip   bool
}

func (f *Forwarder) done(serial uint32) {
	if f.cfg.Done != nil {
		f.cfg.Done(serial)
	}
}

func (f *Forwarder) send(e *Entry) {
	if err := f.out.Send(e); err != nil {
		f.writeFailed.Add(1)
		f.addLoss(lossWindow{write: 1}, time.Now())
		return
	}
	f.written.Add(1)
}

// writeQueued is the writer goroutine.
func (f *Forwarder) writeQueued() {
	defer close(f.drained)
	for q := range f.queue {
		if !q.skip {
			f.send(&q.entry)
		}
		f.done(q.serial)
		f.free <- q
	}
}

// Close writes what is queued and any pending loss entry, and stops the
// writer goroutine. Call it after the reader has stopped.
func (f *Forwarder) Close() {
	if f.queue != nil {
		close(f.queue)
		<-f.drained
		f.queue = nil
	}
	f.Flush()
}

// HandleLoss implements audit.Handler.
func (f *Forwarder) HandleLoss(kind audit.LossKind, count uint64) {
	var w lossWindow
	switch kind {
	case audit.LossKernel:
		f.lostKernel.Add(count)
		w.kernel = count
	case audit.LossStopped:
		f.lostStopped.Add(count)
		w.stopped = count
	default:
		f.lostReader.Add(count)
		w.reader = count
	}
	f.addLoss(w, time.Now())
}

// HandleGap implements audit.GapHandler: the gap is counted with the
// losses and written at once as its own entry, with its times and
// serials.
func (f *Forwarder) HandleGap(g audit.Gap) {
	f.lostStopped.Add(g.Events)
	var e Entry
	stopped, resumed := g.Stopped.UTC().Format(time.RFC3339Nano), g.Resumed.UTC().Format(time.RFC3339Nano)
	e.Add("MESSAGE_ID", MessageAuditGap)
	e.Add("MESSAGE", strconv.FormatUint(g.Events, 10)+" audit events went unread while contidd was stopped, from "+stopped+" to "+resumed)
	e.AddUint("PRIORITY", 4)
	trailIdentity(&e)
	e.AddUint("AUDIT_GAP_COUNT", g.Events)
	e.AddUint("AUDIT_GAP_AFTER", uint64(g.After))
	e.AddUint("AUDIT_GAP_BEFORE", uint64(g.Before))
	e.Add("AUDIT_GAP_STOPPED", stopped)
	e.Add("AUDIT_GAP_RESUMED", resumed)
	if err := f.out.Send(&e); err != nil {
		// Still never silent: the count goes out with the next loss
		// entry.
		f.addLoss(lossWindow{stopped: g.Events}, time.Now())
		return
	}
	f.lossEntries.Add(1)
	if f.cfg.OnLoss != nil {
		f.cfg.OnLoss(f.Stats())
	}
}

// Tick implements audit.Handler: it writes a pending loss entry once the
// rate limit allows.
func (f *Forwarder) Tick(now time.Time) { f.flushLoss(now, false) }

// Flush writes any pending loss entry now, ignoring the rate limit (for
// shutdown).
func (f *Forwarder) Flush() { f.flushLoss(time.Now(), true) }

func (f *Forwarder) addLoss(w lossWindow, now time.Time) {
	f.mu.Lock()
	if f.pending.total() == 0 {
		f.pending.since = now
	}
	f.pending.kernel += w.kernel
	f.pending.reader += w.reader
	f.pending.stopped += w.stopped
	f.pending.write += w.write
	f.keepPending()
	f.mu.Unlock()
	f.flushLoss(now, false)
}

// flushLoss writes one entry for everything lost since the last one. If
// journald refuses it, the window stays pending and the next tick tries
// again: loss is never dropped silently.
func (f *Forwarder) flushLoss(now time.Time, force bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.pending
	if w.total() == 0 || (!force && !f.lastReport.IsZero() && now.Sub(f.lastReport) < f.cfg.LossInterval) {
		return
	}
	var e Entry
	since := w.since.UTC().Format(time.RFC3339Nano)
	e.Add("MESSAGE_ID", MessageEventsLost)
	e.Add("MESSAGE", strconv.FormatUint(w.total(), 10)+" audit events lost since "+since+
		" (kernel "+strconv.FormatUint(w.kernel, 10)+", reader "+strconv.FormatUint(w.reader, 10)+
		", unread while stopped "+strconv.FormatUint(w.stopped, 10)+", write "+strconv.FormatUint(w.write, 10)+")")
	e.AddUint("PRIORITY", 4)
	trailIdentity(&e)
	e.AddUint("AUDIT_LOST_COUNT", w.total())
	e.AddUint("AUDIT_LOST_KERNEL", w.kernel)
	e.AddUint("AUDIT_LOST_READER", w.reader)
	e.AddUint("AUDIT_LOST_STOPPED", w.stopped)
	e.AddUint("AUDIT_LOST_WRITE", w.write)
	e.Add("AUDIT_LOST_SINCE", since)
	e.AddUint("AUDIT_LOST_SINCE_USEC", uint64(w.since.UnixMicro()))
	if err := f.out.Send(&e); err != nil {
		return
	}
	f.pending = lossWindow{}
	f.keepPending()
	f.lastReport = now
	f.lossEntries.Add(1)
	if f.cfg.OnLoss != nil {
		// Outside the lock would be nicer, but the callback only reads
		// atomics and must not call back into the forwarder.
		f.cfg.OnLoss(f.Stats())
	}
}

// buildEvent encodes ev into e.
func (f *Forwarder) buildEvent(e *Entry, ev *audit.Event) {
	e.Reset()

	var chain contid.Chain
	var labels Labels
	var chainBuf [contid.MaxDepth]contid.ID
	if ev.Tagged() {
		ok := false
		if f.containers != nil {
			chain, labels, ok = f.containers.Lookup(ev.Container)
		}
		if !ok || len(chain) == 0 || chain[0] != ev.Container {
			// The registry may not know an autotagged ID yet; the
			// innermost ID is still certain.
			chainBuf[0] = ev.Container
			chain = chainBuf[:1]
		}
	}

	f.msg = f.msg[:0]
	if ev.Ambiguous() {
		f.msg = f.appendAmbiguity(f.msg, ev.Candidates)
	}
	f.msg = appendSummary(f.msg, ev, chain, labels.Name, f.users)
	e.AddBytes("MESSAGE", f.msg)
	priority := uint64(6)
	if !eventSucceeded(ev) || ev.Ambiguous() {
		priority = 5
	}
	if v, ok := auditingSwitch(ev); ok && v == "0" {
		priority = 4
	}
	e.AddUint("PRIORITY", priority)
	trailIdentity(e)
	if len(chain) > 0 {
		e.AddUint("AUDIT_CONTAINER_ID", uint64(chain[0]))
		for _, id := range chain {
			e.AddUint("AUDIT_CONTAINER_WITHIN", uint64(id))
		}
		f.msg = appendChain(f.msg[:0], chain)
		e.AddBytes("AUDIT_CONTAINER_CHAIN", f.msg)
		addLabels(e, &labels)
		if ev.Attribution == contid.ExitedProcess {
			e.Add("AUDIT_CONTAINER_ATTRIBUTION", "exited")
		} else {
			e.Add("AUDIT_CONTAINER_ATTRIBUTION", "live")
		}
	} else if ev.Ambiguous() {
		// No AUDIT_CONTAINER_ID nor _WITHIN: a match on those (and
		// contidctl events) must keep finding only what a container
		// certainly did. The candidates have a field of their own.
		e.Add("AUDIT_CONTAINER_ATTRIBUTION", "ambiguous")
		for _, id := range ev.Candidates {
			if id != contid.Unset {
				e.AddUint("AUDIT_CONTAINER_CANDIDATE", uint64(id))
			}
		}
	}
	e.AddUint("AUDIT_EVENT_ID", uint64(ev.Serial))
	f.msg = strconv.AppendInt(f.msg[:0], ev.Time.Unix(), 10)
	f.msg = append(f.msg, '.')
	ms := ev.Time.Nanosecond() / int(time.Millisecond)
	f.msg = append(f.msg, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	e.AddBytes("AUDIT_EVENT_TIME", f.msg)

	f.types = ev.TypeNames(f.types[:0])
	f.msg = f.msg[:0]
	for i, t := range f.types {
		if i > 0 {
			f.msg = append(f.msg, ',')
		}
		f.msg = append(f.msg, t...)
	}
	e.AddBytes("AUDIT_EVENT_TYPES", f.msg)

	if cut := f.appendAuditFields(e, ev); cut.any() {
		e.AddUint("AUDIT_TRUNCATED_FIELDS", cut.fields)
		e.AddUint("AUDIT_TRUNCATED_BYTES", cut.bytes)
		f.truncated.Add(1)
	}
}

// appendAmbiguity starts the MESSAGE of an event whose PID was reused too
// close to it, naming the candidates (and their names where the registry
// knows them): "could not tell which of containers 4 (web) and 7 (PID
// reused): ".
func (f *Forwarder) appendAmbiguity(b []byte, cands contid.Candidates) []byte {
	named := func(b []byte, id contid.ID) []byte {
		b = strconv.AppendUint(b, uint64(id), 10)
		if f.containers == nil {
			return b
		}
		if _, l, ok := f.containers.Lookup(id); ok && l.Name != "" {
			b = append(b, " ("...)
			b = append(b, l.Name...)
			b = append(b, ')')
		}
		return b
	}
	var ids contid.Candidates
	n := 0
	for _, id := range cands {
		if id != contid.Unset {
			ids[n] = id
			n++
		}
	}
	switch n {
	case 2:
		b = append(b, "could not tell which of containers "...)
		b = named(b, ids[0])
		b = append(b, " and "...)
		b = named(b, ids[1])
		b = append(b, " (PID reused): "...)
	case 1:
		b = append(b, "could not tell whether container "...)
		b = named(b, ids[0])
		b = append(b, " or a process in no container (PID reused): "...)
	default:
		b = append(b, "could not tell which process made the call (PID reused twice since, its earlier lives no longer on record): "...)
	}
	return b
}

// eventSucceeded reads SYSCALL's success= or a user record's res=.
func eventSucceeded(ev *audit.Event) bool {
	if v, ok := ev.Get("success"); ok {
		return v == "yes"
	}
	if v, ok := ev.Get("res"); ok {
		return v == "success" || v == "yes" || v == "1"
	}
	return true
}

func appendChain(b []byte, c contid.Chain) []byte {
	for i, id := range c {
		if i > 0 {
			b = append(b, ",^"...)
		}
		b = strconv.AppendUint(b, uint64(id), 10)
	}
	return b
}

func archName(hex string) string {
	a, err := strconv.ParseUint(hex, 16, 32)
	if err != nil {
		return hex
	}
	if n, ok := auparse.AuditArchNames[auparse.AuditArch(a)]; ok {
		return n
	}
	return hex
}

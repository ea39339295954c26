// Package audit reads the kernel audit stream, reassembles and parses its
// events, attributes each to the container of the process that caused it,
// and accounts for every event lost on the way. It also writes contid's
// own records into the kernel audit log and loads audit rules.
//
// It speaks netlink directly (through go-libaudit's types and reassembler)
// and never touches BPF: attribution goes through the small Attributor
// interface that *kernel.BPF satisfies.
package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"
	"github.com/elastic/go-libaudit/v2/auparse"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
)

// Attributor finds the container a process belonged to at a given time,
// for live and exited processes alike. *kernel.BPF satisfies it.
type Attributor interface {
	// ppid is the parent the event names, 0 if none. An AmbiguousPID
	// comes with the candidates it could not choose between.
	Attribute(pid, ppid uint32, at time.Time) (contid.ID, contid.Attribution, contid.Candidates, error)
}

// LossKind says where events were lost.
type LossKind int

const (
	// LossKernel: the kernel's own lost counter rose (backlog overflow,
	// rate limit, memory, kauditd's queues). It counts records; as the
	// audit daemon only the part of its rise that no missing serial or
	// headless event accounts for is reported (see kernellost.go).
	LossKernel LossKind = iota + 1
	// LossReader: the multicast socket overflowed (ENOBUFS) while we were
	// behind; the count is the serials missing around the overflow.
	LossReader
	// LossStopped: no contidd read while the kernel emitted these (a
	// stop and a later start); the count is the serials in between.
	LossStopped
)

func (k LossKind) String() string {
	switch k {
	case LossKernel:
		return "kernel"
	case LossReader:
		return "reader"
	case LossStopped:
		return "stopped"
	}
	return "unknown"
}

// Gap is a stretch of the stream no contidd read: from where the
// previous one stopped to the first record this one read.
type Gap struct {
	// Events is how many events the kernel emitted in between (the
	// serials between the two), tagged or not.
	Events uint64
	// After is the last serial read before the gap, Before the first
	// after it.
	After, Before uint32
	// Stopped is when the previous reader read its last record;
	// Resumed when this one read its first.
	Stopped, Resumed time.Time
}

// GapHandler is a Handler that also takes gaps. A Handler without it
// gets a gap as HandleLoss(LossStopped, gap.Events).
type GapHandler interface {
	HandleGap(Gap)
}

// Position is where a reader is in the stream: the boot (serials start
// again at each), the last serial it read and when. A contidd saves it
// when it stops, and the next one passes it as Config.After.
type Position struct {
	Boot   string    `json:"boot"`
	Serial uint32    `json:"serial"`
	Time   time.Time `json:"time"`
	// Lost is the kernel's lost counter then, so the next reader counts
	// what the kernel dropped meanwhile.
	Lost uint32 `json:"lost"`
}

// Handler consumes the stream. Its methods are called from one goroutine,
// the reader's, in order; a slow handler makes the reader fall behind,
// which shows up as LossReader.
type Handler interface {
	// HandleEvent receives each event; ev is reused after it returns.
	HandleEvent(ev *Event)
	// HandleLoss reports count events lost of the given kind.
	HandleLoss(kind LossKind, count uint64)
	// Tick is called at least every Config.TickInterval, so the handler
	// can flush rate-limited summaries without a timer of its own.
	Tick(now time.Time)
}

// Source is the channel the reader takes the kernel's records from.
type Source int

const (
	// Multicast reads the AUDIT_NLGRP_READLOG group. It needs no
	// registration and coexists with any audit daemon, but the kernel
	// drops what the socket cannot take: losses are counted, not
	// prevented.
	Multicast Source = iota
	// Unicast makes the reader the kernel's audit daemon (AUDIT_SET of
	// the PID, as auditd does). The kernel then queues records for it
	// and, past the backlog limit, makes the producing task wait for up
	// to the backlog wait time instead of dropping: a flood slows the
	// container down rather than hiding in the trail.
	Unicast
)

func (s Source) String() string {
	switch s {
	case Multicast:
		return "multicast"
	case Unicast:
		return "unicast"
	}
	return "unknown"
}

// ErrDaemonRegistered: another live process is the kernel's audit daemon,
// so the unicast channel is taken.
var ErrDaemonRegistered = errors.New("another audit daemon holds the kernel's unicast channel")

// Config tunes the reader; the zero value gives the defaults.
type Config struct {
	// Source picks the channel. Default Multicast.
	Source Source
	// Inherited is a unicast socket an earlier contidd registered and
	// left in systemd's file descriptor store (see Reader.Handover). The
	// reader reads it instead of opening a new one, so whatever the
	// kernel queued to it while contidd was away is still there.
	// Unicast only; the reader uses a duplicate, the caller keeps f.
	Inherited *os.File
	// After is where the previous reader stopped, if known: the first
	// serial this one reads shows how many events went unread in
	// between, which the handler gets as a Gap.
	After *Position
	// ReceiveBuffer is the netlink receive buffer to ask for, in bytes.
	// Default 16 MiB: about two seconds of a 1,000 exec/s burst.
	ReceiveBuffer int
	// MaxInFlight is how many serials the reassembler holds while their
	// records trickle in. Below 100 it splits events under load and
	// reports phantom gaps, so smaller values are raised to 100.
	MaxInFlight int
	// ReassemblyTimeout evicts an event whose end never came. Default 2s.
	ReassemblyTimeout time.Duration
	// Spool keeps what the reader read until the journal has it: records are received into it, and what an earlier contidd
	// left unwritten in it is replayed first (see Spool). The caller
	// reports finished events with Spool.Done and closes it after Run.
	Spool *Spool
	// ReceiveBuffer of a unicast reader: what the kernel queues while
	// contidd restarts or falls behind waits here. Default 64 MiB.
	// (The multicast default stays at ReceiveBuffer.)
	UnicastReceiveBuffer int
	// StatusInterval is how often the kernel's lost counter is polled.
	// Default 1s.
	StatusInterval time.Duration
	// TickInterval bounds the time between Handler.Tick calls. Default
	// 100ms.
	TickInterval time.Duration
}

func (c *Config) setDefaults() {
	if c.ReceiveBuffer <= 0 {
		c.ReceiveBuffer = 16 << 20
	}
	if c.UnicastReceiveBuffer <= 0 {
		c.UnicastReceiveBuffer = 64 << 20
	}
	if c.MaxInFlight < 100 {
		c.MaxInFlight = 256
	}
	if c.ReassemblyTimeout <= 0 {
		c.ReassemblyTimeout = 2 * time.Second
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = time.Second
	}
	if c.TickInterval <= 0 {
		c.TickInterval = 100 * time.Millisecond
	}
}

// ReaderStats are the reader's own counters, readable at any time.
type ReaderStats struct {
	Records    uint64 // netlink messages received
	Events     uint64 // events reassembled
	Tagged     uint64 // events attributed to a container
	Ambiguous  uint64 // events whose PID was reused: never attributed, handed on with their candidates
	KernelLost uint64 // rise of the kernel's lost counter counted as lost since start
	ReaderLost uint64 // events dropped at our socket (overflow)
	Overruns   uint64 // ENOBUFS from the socket
	Rejected   uint64 // datagrams not from the kernel, or unparsable
	Gaps       uint64 // serials never seen, lost or not (see EventsLost)
	// MaxLag is the longest time from an event's audit timestamp to its
	// attribution: the window in which a PID may be reused under us.
	MaxLag       time.Duration
	ReceiveBytes int // the netlink receive buffer granted
	// Source is the channel in use; Resumed says the unicast socket was
	// inherited from an earlier contidd rather than registered anew.
	Source  Source
	Resumed bool
	// Replayed is how many records came from the spool an earlier
	// contidd left unwritten; SpoolEvicted how many events a full spool
	// gave up before they were written (lost only if contidd then dies).
	Replayed     uint64
	SpoolEvicted uint64
	// NoKernelCounter: the kernel refused its audit status (EPERM
	// outside the initial PID namespace), so events dropped before they
	// took a serial are not counted; those the stream shows still are.
	NoKernelCounter bool
}

// Reader follows the kernel audit stream, through the multicast group or
// as the kernel's audit daemon (Config.Source).
type Reader struct {
	cfg  Config
	attr Attributor
	mc   *conn
	ctl  *Control

	handler Handler
	// noCounter: the kernel's lost counter cannot be read (see Run).
	noCounter atomic.Bool
	reasm     *libaudit.Reassembler
	parser    parser
	event     Event

	// kfeed is fed by the status poller and drained by the read loop,
	// so every Handler call happens on one goroutine; kacct settles it
	// (see kernellost.go).
	kfeed kernelFeed
	kacct kernelAccount
	stats struct {
		records, events, tagged, ambiguous, kernelLost, readerLost, overruns, rejected, gaps atomic.Uint64
		replayed                                                                             atomic.Uint64
		maxLag                                                                               atomic.Int64
	}
	overflow  overflowWindow
	probeMark []byte
	// stop is the gap behind a new audit daemon until its probe is back.
	stop stopGap
	// recent lets the rest of an event reassembly gave up on find its
	// process.
	recent recentEvents
	// gaps are the reader's own count of serials that never came (see
	// seen).
	gaps serialGaps
	// pendingGaps are serial gaps seen outside an overflow window, kept
	// a while: a multicast socket reports its overflow only once it is
	// read empty, after the records that show the gap.
	pendingGaps []pendingGap
	rcvbuf      int

	// early holds records that came on the unicast socket before the
	// kernel acknowledged the registration; Run reads them first.
	early [][]byte
	// resumed: the unicast socket was inherited. handedOver: a copy is
	// in systemd's store, so Close must leave the registration alone
	// for the next contidd.
	resumed    bool
	handedOver atomic.Bool
	// open holds the serials of syscall events whose SYSCALL record came
	// and whose EOE has not, and when they began (unicast only): a reader
	// that hands over stops between events, not inside one.
	open map[uint32]time.Time
	// started is when Run began.
	started time.Time
	// last is the Position of the last record read, for Position.
	last atomic.Pointer[Position]
	// boot is this boot's ID, for Position.
	boot string
	// lostCounted is the kernel's lost counter up to which its rise is
	// counted, for Position.
	lostCounted atomic.Uint32

	// mu guards closing and exited: Close must not release the sockets
	// while Run still reads them.
	mu        sync.Mutex
	closing   bool
	exited    chan struct{}
	closeOnce sync.Once
}

// NewReader opens the reader's socket and a control socket for status
// polls. Multicast needs CAP_AUDIT_READ, unicast CAP_AUDIT_CONTROL (as
// AUDIT_GET does); CAP_NET_ADMIN lets it raise the receive buffer past
// net.core.rmem_max. In unicast mode it returns ErrDaemonRegistered when
// another live process is the kernel's audit daemon.
func NewReader(cfg Config, attr Attributor) (*Reader, error) {
	cfg.setDefaults()
	r := &Reader{cfg: cfg, attr: attr, boot: BootID()}
	var err error
	r.ctl, err = NewControl()
	if err != nil {
		return nil, fmt.Errorf("audit control socket: %w", err)
	}
	switch cfg.Source {
	case Multicast:
		r.mc, err = dial(unix.AUDIT_NLGRP_READLOG)
		if err != nil {
			err = fmt.Errorf("audit multicast reader: %w", err)
		}
	case Unicast:
		err = r.openUnicast(cfg.Inherited)
	default:
		err = fmt.Errorf("audit reader: unknown source %d", cfg.Source)
	}
	if err != nil {
		r.ctl.Close()
		return nil, err
	}
	// A smaller buffer than asked for still works; the figure is in
	// Stats so operators can see it.
	size := cfg.ReceiveBuffer
	if cfg.Source == Unicast {
		size = cfg.UnicastReceiveBuffer
	}
	r.rcvbuf, _ = r.mc.setReceiveBuffer(size)
	if cfg.Source == Unicast && !r.resumed {
		if err := r.register(); err != nil {
			r.mc.Close()
			r.ctl.Close()
			return nil, err
		}
	}
	return r, nil
}

// Stats returns the reader's counters.
func (r *Reader) Stats() ReaderStats {
	st := ReaderStats{
		Records:      r.stats.records.Load(),
		Events:       r.stats.events.Load(),
		Tagged:       r.stats.tagged.Load(),
		Ambiguous:    r.stats.ambiguous.Load(),
		KernelLost:   r.stats.kernelLost.Load(),
		ReaderLost:   r.stats.readerLost.Load(),
		Overruns:     r.stats.overruns.Load(),
		Rejected:     r.stats.rejected.Load(),
		Gaps:         r.stats.gaps.Load(),
		MaxLag:       time.Duration(r.stats.maxLag.Load()),
		ReceiveBytes: r.rcvbuf,
		Source:       r.cfg.Source,
		Resumed:      r.resumed,
		Replayed:     r.stats.replayed.Load(),

		NoKernelCounter: r.noCounter.Load(),
	}
	if r.cfg.Spool != nil {
		st.SpoolEvicted = r.cfg.Spool.evicted.Load()
	}
	return st
}

// Close ends Run (within a tick) and releases the sockets.
func (r *Reader) Close() error {
	r.mu.Lock()
	r.closing = true
	exited := r.exited
	r.mu.Unlock()
	if exited != nil {
		<-exited
	}
	var err error
	r.closeOnce.Do(func() {
		if r.cfg.Source == Unicast && !r.handedOver.Load() {
			err = r.unregister()
		}
		err = errors.Join(err, r.mc.Close(), r.ctl.Close())
	})
	return err
}

func (r *Reader) isClosing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closing
}

// Run reads until ctx ends or the reader is closed, handing events and
// losses to h. Events still in reassembly are flushed to h on the way out.
func (r *Reader) Run(ctx context.Context, h Handler) error {
	r.mu.Lock()
	if r.closing || r.exited != nil {
		r.mu.Unlock()
		return errors.New("audit reader closed or already running")
	}
	r.exited = make(chan struct{})
	r.mu.Unlock()
	defer close(r.exited)

	r.handler = h
	reasm, err := libaudit.NewReassembler(r.cfg.MaxInFlight, r.cfg.ReassemblyTimeout, (*stream)(r))
	if err != nil {
		return fmt.Errorf("audit reassembler: %w", err)
	}
	r.reasm = reasm
	// On the way out, after the poller stopped: flush reassembly, count
	// the gaps still held, then settle the last rise of the kernel's
	// counter against them.
	defer func() {
		_ = reasm.Close()
		r.settleStopGap(time.Now(), true)
		r.claimSuspects(time.Time{}, true)
		now := time.Now()
		r.takeKernelLost(now)
		r.settleKernelLost(now, true)
	}()

	// Outside the initial PID namespace (a contidd in a container booted
	// with systemd-nspawn) the kernel answers AUDIT_GET with EPERM but
	// still delivers the multicast stream. The reader then counts the
	// losses the stream shows (missing serials, headless events) and not
	// the drops only the counter knows, and says so in its Stats rather
	// than attributing nothing.
	baseline, err := r.lostCounter()
	switch {
	case errors.Is(err, syscall.EPERM) && r.cfg.Source == Multicast:
		r.noCounter.Store(true)
	case err != nil:
		return fmt.Errorf("audit status: %w", err)
	default:
		r.lostWhileAway(baseline)
		pollCtx, stopPoll := context.WithCancel(ctx)
		var polling sync.WaitGroup
		polling.Add(1)
		go func() {
			defer polling.Done()
			r.pollLost(pollCtx, baseline)
		}()
		defer polling.Wait()
		defer stopPoll()
	}

	r.started = time.Now()
	// A kept socket may have filled while no contidd ran, and the kernel
	// dropped what followed: once it is read empty, the probe's serial
	// shows how many.
	r.overflow.probe = r.resumed
	r.replaySpool()
	for _, b := range r.early {
		var pos uint64
		if r.cfg.Spool != nil {
			pos = r.cfg.Spool.append(b)
		}
		r.take(b, pos)
	}
	r.early = nil
	buf := make([]byte, unix.NLMSG_HDRLEN+libaudit.AuditMessageMaxLength)
	nextTick := time.Now().Add(r.cfg.TickInterval)
	for {
		if ctx.Err() != nil || r.isClosing() {
			r.readQueued(buf)
			return nil
		}
		now := time.Now()
		if !now.Before(nextTick) {
			r.tick(now)
			nextTick = now.Add(r.cfg.TickInterval)
		}
		b, pos, err := r.receive(buf, time.Until(nextTick)+time.Millisecond)
		switch {
		case err == nil:
			r.take(b, pos)
		case errors.Is(err, os.ErrDeadlineExceeded):
			r.readEmpty(time.Now())
			if r.overflow.probe {
				r.sendProbe()
			}
		case errors.Is(err, unix.ENOBUFS):
			// The socket overflowed; the missing serials will show as a
			// gap once reading resumes, which gives the count.
			r.overflowed(time.Now())
		case errors.Is(err, ErrNotFromKernel):
			r.stats.rejected.Add(1)
		default:
			return fmt.Errorf("audit %s read: %w", r.cfg.Source, err)
		}
	}
}

func (r *Reader) tick(now time.Time) {
	r.takeKernelLost(now)
	_ = r.reasm.Maintain()
	r.closeOverflow(now)
	r.claimPendingGaps(now, false)
	r.settleStopGap(now, false)
	r.claimSuspects(now, false)
	r.settleKernelLost(now, false)
	r.pruneOpen(now)
	r.handler.Tick(now)
}

// receive reads one datagram from the kernel: into the spool's next slot
// when there is a spool (pos is where), else into buf.
func (r *Reader) receive(buf []byte, timeout time.Duration) (b []byte, pos uint64, err error) {
	sp := r.cfg.Spool
	if sp == nil {
		n, err := r.mc.recv(buf, timeout)
		if err != nil {
			return nil, 0, err
		}
		return buf[:n], 0, nil
	}
	slot := sp.slot()
	n, err := r.mc.recv(slot, timeout)
	if err != nil {
		sp.discard()
		return nil, 0, err
	}
	sp.commit(n)
	return slot[:n], sp.slotAt, nil
}

// take handles one record read, at pos in the spool if there is one.
func (r *Reader) take(b []byte, pos uint64) { r.push(b, pos) }

// replaySpool hands on what the spool holds that an earlier contidd read
// and never finished, before anything new is read.
func (r *Reader) replaySpool() {
	sp := r.cfg.Spool
	if sp == nil {
		return
	}
	recs, evicted := sp.pending()
	held := r.gaps.fromSpool(sp)
	if held > 0 {
		// Counted now, as the contidd before would have: a reader is
		// sent every serial, and its successor reads on after them.
		r.gapped(held)
	}
	sp.keepSuspects(nil, 0)
	for _, rec := range recs {
		r.take(rec.b, rec.pos)
	}
	sp.replayed()
	r.stats.replayed.Add(uint64(len(recs)))
	if evicted > 0 {
		r.lose(evicted)
	}
	sp.forgetEvicted()
}

// push parses one netlink message, at pos in the spool if there is one,
// and feeds it to the reassembler, whose callbacks (on this goroutine)
// deliver completed events.
func (r *Reader) push(b []byte, pos uint64) {
	if len(b) < unix.NLMSG_HDRLEN {
		r.stats.rejected.Add(1)
		return
	}
	typ := auparse.AuditMessageType(binary.NativeEndian.Uint16(b[4:6]))
	if isControlMessage(typ) {
		return
	}
	// Kernel messages carry no terminator, user records often a NUL.
	payload := trimPayload(b[unix.NLMSG_HDRLEN:])
	at, serial, body, err := parseHeader(payload)
	if err != nil {
		r.stats.rejected.Add(1)
		return
	}
	r.stats.records.Add(1)
	r.trackOpen(typ, serial)
	r.advance(serial, at)
	if typ == auparse.AUDIT_TRUSTED_APP && r.isOwnProbe(payload[body:]) {
		r.probeReturned(time.Now())
		r.stopProbeReturned(serial, time.Now())
	}
	// Marked before the reassembler sees it, which may hand its event on
	// (and the handler report it done) at once. The reassembler keeps
	// every record but an EOE in some event.
	if sp := r.cfg.Spool; sp != nil {
		sp.mark(serial, pos, len(b), typ != auparse.AUDIT_EOE)
	}
	r.reasm.PushMessage(&auparse.AuditMessage{
		RecordType: typ,
		Timestamp:  at,
		Sequence:   serial,
		RawData:    string(payload),
		Payload:    body,
	})
}

// overflowWindowMax bounds an overflow window whose probe never came
// back (the kernel dropped it too, or auditing was switched off). A
// window normally ends when the probe returns, however long the reader
// takes to work through its socket behind a slow journald.
const overflowWindowMax = 2 * time.Minute

// overflowWindow tracks the time after a socket overflow.
type overflowWindow struct {
	open     bool
	until    time.Time
	overruns uint64
	gaps     uint64
	// probe: the socket overflowed and no probe record was sent since.
	probe bool
}

// probeText is the record a reader writes after an overflow, and after
// taking over a kept socket. A congested multicast socket gets nothing
// until it is read empty, and a full unicast socket makes the kernel drop
// what follows, so a flood that ends while we are behind leaves no later
// record whose serial would show how many were dropped; the probe is that
// record.
const probeText = "op=contid-overflow-probe"

// stream adapts the reader to libaudit.Stream without exporting the
// callbacks on Reader.
type stream Reader

func (s *stream) ReassemblyComplete(msgs []*auparse.AuditMessage) {
	r := (*Reader)(s)
	// The spool learns of the event before the handler, which may report
	// it done at once; an event the handler never gets is settled here.
	handed := false
	if sp := r.cfg.Spool; sp != nil && len(msgs) > 0 {
		defer func() {
			if !handed {
				sp.handOn(msgs[0].Sequence, len(msgs), false)
			}
		}()
	}
	if len(msgs) > 0 {
		r.seen(msgs[0].Sequence)
	}
	ev := &r.event
	if !ev.build(&r.parser, msgs) {
		return
	}
	rest := isTailFragment(msgs) && r.recent.inherit(ev)
	if !rest && (r.cfg.Source == Unicast || r.overflow.open) && isTailFragment(msgs) {
		// The kernel dropped this event's SYSCALL record (before it
		// took the serial, at the backlog, or after, in kauditd's
		// queues), or the contidd before us read it; the serial was
		// seen, so no gap counts it, and without its SYSCALL record it
		// names no process to attribute. As the audit daemon the reader
		// is sent every record, so a headless event is always such a
		// loss; over multicast only while the socket overflowed.
		r.stats.readerLost.Add(1)
		r.handler.HandleLoss(LossReader, 1)
		r.streamLost(1, time.Now())
		return
	}
	r.stats.events.Add(1)
	if lag := time.Since(ev.Time); lag > time.Duration(r.stats.maxLag.Load()) {
		r.stats.maxLag.Store(int64(lag))
	}
	if ev.HasPID && r.attr != nil && !rest {
		id, how, cands, err := r.attr.Attribute(ev.PID, ev.PPID, ev.Time)
		switch {
		case err != nil:
		case how == contid.AmbiguousPID:
			ev.Attribution, ev.Candidates = how, cands
			r.stats.ambiguous.Add(1)
		case (how == contid.LiveProcess || how == contid.ExitedProcess) && id != contid.Unset:
			ev.Container, ev.Attribution = id, how
			r.stats.tagged.Add(1)
		}
	}
	switch {
	case rest && ev.Tagged():
		r.stats.tagged.Add(1)
	case rest && ev.Ambiguous():
		r.stats.ambiguous.Add(1)
	case ev.HasPID:
		r.recent.remember(ev)
	}
	if sp := r.cfg.Spool; sp != nil {
		sp.handOn(msgs[0].Sequence, len(msgs), true)
		handed = true
	}
	r.handler.HandleEvent(ev)
}

// recentEvents is the process and attribution of the events handed on
// last, by serial. Reassembly gives up on an event whose records do not
// all come within its timeout (a reader held up by a slow journald) or
// its window; the rest then comes as an event of its own, without the
// SYSCALL record that names the process, and would go unattributed,
// unwritten. It takes the process and container of the first part.
type recentEvents struct {
	by    map[uint32]recentEvent
	order []uint32
	next  int
}

type recentEvent struct {
	pid, ppid uint32
	id        contid.ID
	how       contid.Attribution
	cands     contid.Candidates
}

// recentMax bounds recentEvents: far more than the reassembler holds in
// flight (MaxInFlight), so the rest of any event it gave up on finds its
// first part.
const recentMax = 4096

func (q *recentEvents) remember(ev *Event) {
	if q.by == nil {
		q.by = make(map[uint32]recentEvent, recentMax)
		q.order = make([]uint32, 0, recentMax)
	}
	if _, ok := q.by[ev.Serial]; ok {
		return
	}
	if len(q.order) < recentMax {
		q.order = append(q.order, ev.Serial)
	} else {
		delete(q.by, q.order[q.next])
		q.order[q.next] = ev.Serial
		q.next = (q.next + 1) % recentMax
	}
	q.by[ev.Serial] = recentEvent{ev.PID, ev.PPID, ev.Container, ev.Attribution, ev.Candidates}
}

// inherit gives ev, the rest of an event, what its first part had; false
// if that is not known.
func (q *recentEvents) inherit(ev *Event) bool {
	a, ok := q.by[ev.Serial]
	if !ok {
		return false
	}
	ev.PID, ev.PPID, ev.HasPID = a.pid, a.ppid, true
	ev.Container, ev.Attribution, ev.Candidates = a.id, a.how, a.cands
	return true
}

// isTailFragment: the records of a syscall event, without the SYSCALL
// record that leads it.
func isTailFragment(msgs []*auparse.AuditMessage) bool {
	tail := false
	for _, m := range msgs {
		switch m.RecordType {
		case auparse.AUDIT_SYSCALL:
			return false
		case auparse.AUDIT_CWD, auparse.AUDIT_PATH, auparse.AUDIT_PROCTITLE, auparse.AUDIT_EXECVE, auparse.AUDIT_EOE:
			tail = true
		}
	}
	return tail
}

// EventsLost is the reassembler's count of missing serials. The reader
// keeps its own (see seen): the reassembler's goes back with a late
// event's serial and counts every serial after it again.
func (s *stream) EventsLost(int) {}

// gapped takes n serials that never came. Over multicast these gaps are
// a statistic only: the socket's own drops are counted around its
// overflows, in push, and a multicast reader that joined late would
// otherwise count what it never subscribed to.
func (r *Reader) gapped(n uint64) {
	if n == 0 {
		return
	}
	r.stats.gaps.Add(n)
	switch {
	case r.cfg.Source == Unicast:
		// As the audit daemon the reader is sent every record; a serial
		// that never came was dropped in the kernel's queues, which
		// give up on a reader that does not keep up (after a tenth of
		// a second) and do not always count what they drop.
		r.lose(n)
		r.streamLost(n, time.Now())
	case r.overflow.open:
		r.overflow.gaps += n
		r.lose(n)
	default:
		r.pendingGaps = append(r.pendingGaps, pendingGap{n: n, at: time.Now()})
	}
}

// pendingGapAge is how long a gap seen outside an overflow window waits
// for the overflow that explains it.
const pendingGapAge = 10 * time.Second

type pendingGap struct {
	n  uint64
	at time.Time
}

func (r *Reader) lose(n uint64) {
	r.stats.readerLost.Add(n)
	r.handler.HandleLoss(LossReader, n)
}

// claimPendingGaps counts the gaps seen shortly before an overflow was
// reported as that overflow's losses, and forgets older ones: without an
// overflow a gap is a statistic only.
func (r *Reader) claimPendingGaps(now time.Time, claim bool) {
	kept := r.pendingGaps[:0]
	for _, g := range r.pendingGaps {
		switch {
		case now.Sub(g.at) > pendingGapAge:
		case claim:
			r.overflow.gaps += g.n
			r.lose(g.n)
		default:
			kept = append(kept, g)
		}
	}
	r.pendingGaps = kept
}

// overflowed opens (or extends) a window after ENOBUFS during which
// missing serials count as losses, and claims those seen just before. The
// socket first hands out what it queued before the drop, so the gap shows
// later: the window lasts until the probe sent after the socket was read
// empty comes back.
func (r *Reader) overflowed(now time.Time) {
	r.stats.overruns.Add(1)
	if r.cfg.Source == Unicast {
		// The kernel gave up sending one record to a full socket and
		// queued it again; what it finally drops is a missing serial,
		// which reassembly counts once a later record arrives. The
		// probe is that record, should the flood be over by then.
		r.overflow.probe = true
		return
	}
	r.overflow.open = true
	r.overflow.probe = true
	r.overflow.overruns++
	r.overflow.until = now.Add(overflowWindowMax)
	r.claimPendingGaps(now, true)
}

// isOwnProbe: the record is the probe this process wrote. The kernel
// starts a user record with the writer's PID, which no other process can
// forge, so a container writing the same text does not end the window.
func (r *Reader) isOwnProbe(body []byte) bool {
	if r.probeMark == nil {
		r.probeMark = []byte("pid=" + strconv.Itoa(os.Getpid()) + " ")
	}
	return bytes.HasPrefix(body, r.probeMark) && bytes.Contains(body, []byte(probeText))
}

// sendProbe writes the probe record once the socket is read empty, so
// the kernel delivers to it again.
func (r *Reader) sendProbe() {
	r.overflow.probe = false
	_ = r.ctl.WriteUser(auparse.AUDIT_TRUSTED_APP, probeText)
}

// closeOverflow ends an expired window. ENOBUFS means at least one
// message was dropped; if no gap was seen (say the reader restarted its
// count), each overrun still counts as one loss, so it is never silent.
func (r *Reader) closeOverflow(now time.Time) {
	if !r.overflow.open || now.Before(r.overflow.until) {
		return
	}
	r.endOverflow()
}

// probeReturned ends the window soon after our probe comes back, unless
// the socket overflowed again after it was sent: reassembly reports the
// gap before the probe only once the probe's event is complete.
func (r *Reader) probeReturned(now time.Time) {
	if r.overflow.open && !r.overflow.probe {
		r.overflow.until = now.Add(2*r.cfg.ReassemblyTimeout + r.cfg.TickInterval)
	}
}

func (r *Reader) endOverflow() {
	if r.overflow.gaps == 0 {
		r.stats.readerLost.Add(r.overflow.overruns)
		r.handler.HandleLoss(LossReader, r.overflow.overruns)
	}
	r.overflow = overflowWindow{}
}

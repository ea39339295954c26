package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"
	"github.com/elastic/go-libaudit/v2/auparse"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
	"github.com/contid/contid/config"
	cdbus "github.com/contid/contid/dbus"
	"github.com/contid/contid/journal"
	"github.com/contid/contid/kernel/audit"
	"github.com/contid/contid/registry"
)

// AuditPipeline is the Options.Extra goroutine that carries the kernel's
// audit events to the journal (docs/DESIGN.md): it reads the multicast
// stream, attributes each event through the kernel layer, writes tagged
// ones (and ambiguous ones, marked) to journald at journalSocket ("" for
// the standard socket), backs the Events* properties with its counters,
// and gives the Manager the Recorder that logs contid's own operations.
//
// A missing audit subsystem or journald is said once and does not stop
// contidd: tagging and enforcement do not depend on them.
func AuditPipeline(journalSocket string) func(ctx context.Context, d *Daemon) error {
	return func(ctx context.Context, d *Daemon) error {
		w, err := journal.NewWriter(journalSocket)
		if err != nil {
			d.Log.Logf(cdbus.PrioWarning, "Audit events will not be written: %v", err)
			return nil
		}
		defer w.Close()

		ctl, err := audit.NewControl()
		if err != nil {
			// Still record contid's own operations in the journal.
			d.Manager.SetAuditor(journal.NewRecorder(nil, w))
			d.Log.Logf(cdbus.PrioWarning, "No kernel audit (%v): contid's own records go to the journal only, and no audit events are attributed.", err)
			SetUp(ctx)
			<-ctx.Done() // the Recorder writes through w until shutdown
			return nil
		}
		defer ctl.Close()
		d.Manager.SetAuditor(journal.NewRecorder(ctl, w))
		enableAuditing(d.Log, ctl, d.Config.EnableAuditing)
		// Buffered: the reader only asks, never waits for the check.
		exemptCheck := make(chan struct{}, 1)
		if remove, err := ctl.ExemptSelf(); err != nil {
			d.Log.Logf(cdbus.PrioWarning, "contidd's own system calls stay audited (%v): attributing an event then causes more.", err)
		} else {
			defer func() { _ = remove() }()
			// Stopped before the exemption is removed, so it cannot put
			// it back after.
			watchCtx, stopWatch := context.WithCancel(ctx)
			watched := make(chan struct{})
			go func() {
				defer close(watched)
				keepExempt(watchCtx, d.Log, ctl, exemptCheck)
			}()
			defer func() { stopWatch(); <-watched }()
		}
		raiseBacklogLimit(d.Log, ctl, d.Config.BacklogLimit)
		// The settings a reload applies to the kernel's audit state.
		defer d.onReload(func(prev, next config.Config) {
			if next.EnableAuditing != prev.EnableAuditing {
				enableAuditing(d.Log, ctl, next.EnableAuditing)
			}
			if next.BacklogLimit != prev.BacklogLimit {
				raiseBacklogLimit(d.Log, ctl, next.BacklogLimit)
			}
		})()
		if d.Config.LoadRules {
			loaded, refused, err := ctl.LoadRules(d.Config.RulesFile)
			if err != nil {
				d.Log.Logf(cdbus.PrioWarning, "Loading audit rules from %s: %v", d.Config.RulesFile, err)
			} else {
				for _, rl := range refused {
					d.Log.Logf(cdbus.PrioWarning, "Audit rules %s, line %d (%s) not loaded: %v", d.Config.RulesFile, rl.Number, rl.Text, rl.Err)
				}
				d.Log.Logf(cdbus.PrioInfo, "Loaded %d audit rules from %s (%d lines not loaded).", len(loaded), d.Config.RulesFile, len(refused))
			}
		}

		r, spool, err := openReader(d, ctl)
		if err != nil {
			d.Log.Logf(cdbus.PrioWarning, "Cannot read the kernel audit stream (%v): no audit events are attributed.", err)
			SetUp(ctx)
			<-ctx.Done() // the Recorder writes through w and ctl until shutdown
			return nil
		}
		defer r.Close()
		fcfg := journal.Config{WriteUntagged: d.Config.WriteUntagged, Queue: 1024}
		if spool != nil {
			// Closed after the forwarder, which reports to it to the end.
			defer spool.Close()
			fcfg.Done = spool.Done
			// A count batched for the loss interval outlives a kill.
			fcfg.Unreported = spool
		}
		// Watched while the reader runs; not after, when its end is
		// either shutdown or an error that stops contidd anyway.
		readBeat, writeBeat := d.progress.loop("audit reader"), d.progress.work("journal writer")
		defer d.progress.remove("audit reader")
		defer d.progress.remove("journal writer")
		fwd := journal.NewForwarder(watchedSender{w, writeBeat}, registryContainers{d.Registry}, fcfg)
		defer fwd.Close()

		d.Manager.SetAuditState(auditState(d, ctl, r))
		d.Manager.SetEventSource(func() cdbus.EventCounts {
			s := fwd.Stats()
			return cdbus.EventCounts{Written: s.Written, Lost: s.Lost, Ambiguous: r.Stats().Ambiguous}
		})
		// The reader has joined the stream: events from here on queue in
		// its socket until Run reads them.
		if _, serr := ctl.Status(); errors.Is(serr, syscall.EPERM) {
			d.Log.Logf(cdbus.PrioWarning, "The kernel refuses its audit status to contidd (outside the initial PID namespace): events it drops before they take a serial are not counted in EventsLost; missing serials still are.")
		}
		SetUp(ctx)
		// The saver stops with the reader, whichever ends first: a reader
		// that fails at once must not leave contidd waiting here, alive
		// but reading nothing, until the watchdog kills it.
		saveCtx, stopSaving := context.WithCancel(ctx)
		saved := make(chan struct{})
		go func() {
			defer close(saved)
			keepPosition(saveCtx, d, r)
		}()
		// A reload between the exemption and the reader's start left no
		// record the reader could see.
		askCheck(exemptCheck)
		err = r.Run(ctx, exemptionWatch{Handler: beatingForwarder{fwd, readBeat}, check: exemptCheck, self: uint32(os.Getpid())})
		stopSaving()
		<-saved
		savePosition(d, r)
		fwd.Flush()
		if errors.Is(err, context.Canceled) || ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("audit reader: %w", err)
	}
}

// enableAuditing switches kernel auditing on when EnableAuditing= allows
// it: journald of systemd 252 switches it off when it starts (its Audit=
// default), and without records there is nothing to attribute. With
// EnableAuditing=no the enabled flag is the administrator's; contidd only
// says, loudly, when it finds auditing off, because its audit trail then
// stays empty.
func enableAuditing(log *Logger, ctl *audit.Control, allow bool) {
	if allow {
		if was, err := ctl.Enable(); err != nil {
			log.Logf(cdbus.PrioWarning, "Kernel auditing is off and could not be switched on: %v", err)
		} else if !was {
			log.Logf(cdbus.PrioNotice, "Kernel auditing was off; switched it on.")
		}
		return
	}
	st, err := ctl.Status()
	switch {
	case err != nil:
		log.Logf(cdbus.PrioWarning, "Cannot read whether kernel auditing is on (%v); EnableAuditing=no leaves it as it is.", err)
	case st.Enabled == 0:
		log.Logf(cdbus.PrioWarning, "Kernel auditing is off and EnableAuditing=no leaves it off: no audit events arrive, so none are attributed or written, until it is switched on (auditctl -e 1).")
	default:
		log.Logf(cdbus.PrioInfo, "Kernel auditing is on (EnableAuditing=no: contidd would have left it off).")
	}
}

// raiseBacklogLimit raises the kernel's audit backlog limit to limit (0:
// leave it alone) and never lowers it.
func raiseBacklogLimit(log *Logger, ctl *audit.Control, limit uint32) {
	if limit == 0 {
		return
	}
	if was, err := ctl.RaiseBacklogLimit(limit); err != nil {
		log.Logf(cdbus.PrioWarning, "%v", err)
	} else if was < limit {
		log.Logf(cdbus.PrioNotice, "Raised the kernel audit backlog limit from %d to %d.", was, limit)
	}
}

// openReader opens the audit reader on the channel the configuration
// asks for. Unicast, when another audit daemon holds the channel, falls
// back to multicast rather than leave contidd blind. A unicast socket is
// handed to systemd's file descriptor store, so the kernel keeps queueing
// to it while contidd restarts; the next contidd reads on from it. The
// spool, kept there too in either mode, holds what this contidd read
// until it is written.
func openReader(d *Daemon, ctl *audit.Control) (*audit.Reader, *audit.Spool, error) {
	inherited := d.AuditSocket
	if inherited != nil {
		defer inherited.Close()
	}
	after := loadPosition(d)
	// Either reader keeps what it read in the spool until it is written:
	// a crash then loses none of it.
	spool := openSpool(d)
	var (
		r   *audit.Reader
		err error
	)
	if inherited != nil && d.Config.AuditSocket == config.AuditSocketMulticast {
		// The kept socket still holds what the kernel queued for the
		// previous contidd; dropping it would lose that unread. It is
		// read on, and the setting takes effect after a full stop.
		d.Log.Logf(cdbus.PrioNotice, "Socket=multicast takes effect after contidd is stopped: reading on from the kept unicast socket first.")
	}
	if d.Config.AuditSocket != config.AuditSocketMulticast || inherited != nil {
		r, err = audit.NewReader(audit.Config{Source: audit.Unicast, Inherited: inherited, After: after, Spool: spool}, d.Tracker)
		if err == nil {
			return r, spool, adoptUnicast(d, ctl, r)
		}
		switch {
		case errors.Is(err, audit.ErrDaemonRegistered):
			prio := cdbus.PrioInfo
			if d.Config.AuditSocket == config.AuditSocketUnicast {
				prio = cdbus.PrioWarning
			}
			d.Log.Logf(prio, "%v: reading the audit multicast group beside it. Events its socket cannot take are lost and counted in EventsLost; stop that daemon for a lossless trail.", err)
		default:
			d.Log.Logf(cdbus.PrioWarning, "Cannot become the kernel's audit daemon (%v); reading the audit multicast group instead.", err)
		}
	}
	if inherited != nil {
		if _, err := dropStoredFD(auditSocketName); err != nil {
			d.Log.Logf(cdbus.PrioWarning, "Releasing the stored audit socket: %v", err)
		}
	}
	r, err = audit.NewReader(audit.Config{Source: audit.Multicast, After: after, Spool: spool}, d.Tracker)
	if err != nil {
		if spool != nil {
			spool.Close() // systemd keeps it for the next contidd
		}
		return nil, nil, err
	}
	d.Log.Logf(cdbus.PrioInfo, "Reading the kernel audit stream through the multicast group.")
	return r, spool, nil
}

// openSpool reads on from the spool an earlier contidd left in systemd's
// store, or starts a new one there. Without the store a spool would die
// with contidd, so there is none.
func openSpool(d *Daemon) *audit.Spool {
	guard := func(*audit.Spool) {}
	// In enforcing mode a tagged task cannot open a file the kernel's
	// file_open guard lists for write. The spool is reachable through
	// systemd's store (/proc/1/fd/N); records planted in it would be
	// replayed by the next contidd as the kernel's.
	if d.Tracker != nil {
		guard = func(sp *audit.Spool) {
			if err := d.Tracker.ProtectFile(sp.File()); err != nil {
				d.Log.Logf(cdbus.PrioWarning, "Cannot guard the audit spool against tagged writers: %v", err)
			}
		}
	}
	return openStoredSpool(d, guard)
}

// openStoredSpool guards the spool before it is read or handed to
// systemd's store.
func openStoredSpool(d *Daemon, guard func(*audit.Spool)) *audit.Spool {
	if f := d.AuditSpool; f != nil {
		d.AuditSpool = nil
		defer f.Close()
		sp, err := audit.OpenSpool(f)
		if err == nil {
			guard(sp)
			if n := sp.Unwritten(); n > 0 {
				d.Log.Logf(cdbus.PrioNotice, "The previous contidd left %d audit records read and not yet written in its spool: they are written first.", n)
			}
			return sp
		}
		d.Log.Logf(cdbus.PrioNotice, "Not reading on from the stored audit spool (%v): starting a new one.", err)
		if _, err := dropStoredFD(auditSpoolName); err != nil {
			d.Log.Logf(cdbus.PrioWarning, "Releasing the stored audit spool: %v", err)
		}
	}
	sp, err := audit.NewSpool(0)
	if err != nil {
		d.Log.Logf(cdbus.PrioWarning, "No audit spool (%v): events read and not yet written are lost if contidd is killed.", err)
		return nil
	}
	guard(sp)
	stored, err := storeFD(auditSpoolName, sp.File())
	if err != nil {
		d.Log.Logf(cdbus.PrioWarning, "Cannot keep the audit spool in systemd's store (%v): events read and not yet written are lost if contidd is killed.", err)
	}
	if !stored || err != nil {
		sp.Close()
		return nil
	}
	return sp
}

// adoptUnicast finishes the set-up of a unicast reader: the backlog wait
// that turns a flood into back-pressure, and the file descriptor store.
func adoptUnicast(d *Daemon, ctl *audit.Control, r *audit.Reader) error {
	wait := d.Config.BacklogWaitTime
	if err := ctl.SetStatus(libaudit.AuditStatus{Mask: libaudit.AuditStatusBacklogWaitTime, BacklogWaitTime: wait}); err != nil {
		d.Log.Logf(cdbus.PrioWarning, "Setting the audit backlog wait time to %d: %v", wait, err)
	}
	if r.Stats().Resumed {
		r.KeepRegistered()
		d.Log.Logf(cdbus.PrioInfo, "Reading on from the audit socket the previous contidd left in systemd's store: nothing the kernel queued meanwhile is lost.")
		return nil
	}
	f, err := r.Socket()
	if err != nil {
		return err
	}
	defer f.Close()
	stored, err := storeFD(auditSocketName, f)
	switch {
	case stored && err == nil:
		r.KeepRegistered()
	case err != nil:
		d.Log.Logf(cdbus.PrioWarning, "Cannot keep the audit socket in systemd's store (%v): events the kernel emits while contidd restarts will be lost.", err)
	case !stored:
		d.Log.Logf(cdbus.PrioInfo, "Not run by systemd: events the kernel emits while contidd restarts will be lost.")
	}
	d.Log.Logf(cdbus.PrioInfo, "Reading the kernel audit stream as its audit daemon: a flood makes the producer wait instead of losing events.")
	return nil
}

// rulesStateTTL bounds how often a property read lists the kernel's
// rules: any client may read properties, as often as it likes.
const rulesStateTTL = time.Second

// auditState backs the AuditStream and AuditRules* properties.
func auditState(d *Daemon, ctl *audit.Control, r *audit.Reader) func() cdbus.AuditState {
	var (
		mu      sync.Mutex
		cached  cdbus.AuditState
		checked time.Time
	)
	stream := r.Stats().Source.String()
	return func() cdbus.AuditState {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(checked) < rulesStateTTL {
			return cached
		}
		checked = time.Now()
		cached = cdbus.AuditState{Stream: stream}
		loaded, missing, err := ctl.RulesState(d.Config.RulesFile)
		if err != nil {
			cached.RulesMissing = []string{err.Error()}
			return cached
		}
		cached.RulesLoaded = uint32(loaded)
		for _, rl := range missing {
			cached.RulesMissing = append(cached.RulesMissing, rl.Text)
		}
		return cached
	}
}

// positionFile is where contidd keeps its place in the audit stream, in
// StateDirectory, so the next contidd can say how many events went unread
// while none ran.
const positionFile = "audit-position"

// positionInterval is how often the place is saved while running, for a
// contidd that dies without saving it (a crash outside systemd; under
// systemd the socket it kept makes the gap empty anyway).
const positionInterval = time.Second

func loadPosition(d *Daemon) *audit.Position {
	b, err := os.ReadFile(filepath.Join(d.Config.StateDirectory, positionFile))
	if err != nil {
		return nil
	}
	var p audit.Position
	if err := json.Unmarshal(b, &p); err != nil {
		d.Log.Logf(cdbus.PrioWarning, "Ignoring %s: %v", positionFile, err)
		return nil
	}
	return &p
}

func keepPosition(ctx context.Context, d *Daemon, r *audit.Reader) {
	every(ctx, positionInterval, func() { savePosition(d, r) })
}

func savePosition(d *Daemon, r *audit.Reader) {
	p, ok := r.Position()
	if !ok {
		return
	}
	b, err := json.Marshal(p)
	if err != nil {
		return
	}
	if err := writePosition(d.Config.StateDirectory, b); err != nil && !d.positionWarned.Swap(true) {
		d.Log.Logf(cdbus.PrioWarning, "Cannot save the audit position (%v): a later start counts the events since the last save as unread.", err)
	}
}

// positionSlot is the size of the position file, padded: the file and
// its spare keep their blocks, so a save on a full disk writes into
// blocks it already has. A position that could not be saved would have
// the next start count every event since the last save (read and
// written) as unread while stopped, and count the kernel's lost counter
// since then again.
const positionSlot = 512

// writePosition writes b into the spare file, allocated on its first
// use, and exchanges it with the position file, so the old position
// becomes the spare: after the first two saves, no save needs a free
// block. A crash mid-write leaves the position file whole.
func writePosition(dir string, b []byte) error {
	if len(b) > positionSlot {
		return fmt.Errorf("audit position of %d bytes", len(b))
	}
	path := filepath.Join(dir, positionFile)
	spare := path + ".tmp"
	f, err := os.OpenFile(spare, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, positionSlot); err != nil {
		f.Close()
		return fmt.Errorf("allocate %s: %w", spare, err)
	}
	buf := make([]byte, positionSlot)
	copy(buf, b)
	for i := len(b); i < len(buf); i++ {
		buf[i] = ' ' // JSON allows trailing white space
	}
	_, err = f.WriteAt(buf, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	err = unix.Renameat2(unix.AT_FDCWD, spare, unix.AT_FDCWD, path, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) {
		// No position yet, or a file system without the exchange.
		err = os.Rename(spare, path)
	}
	return err
}

// registryContainers adapts the registry to journal.Containers.
type registryContainers struct{ r *registry.Registry }

func (rc registryContainers) Lookup(id contid.ID) (contid.Chain, journal.Labels, bool) {
	c, err := rc.r.Get(id)
	if err != nil {
		return nil, journal.Labels{}, false
	}
	return c.Chain, journal.Labels{Name: c.Name, Unit: c.Unit, Manager: c.Manager, Image: c.Image, ManagerID: c.ManagerID, UUID: c.UUID}, true
}

// exemptionFallback is how often contidd looks for its audit exemption
// when the audit stream gave no reason to: a reader that dropped the
// record of a reload still finds the exemption back within this.
// Looking is not free, which is why it is not done every few seconds:
// the kernel answers AUDIT_LIST_RULES from a thread it starts for the
// purpose, and until that thread runs the request holds the kernel's
// audit control lock, and contidd its lock of the audit socket. That took
// 35-55 ms on a 2-core machine, and every tag call whose audit record
// came meanwhile waited for it: when it ran every 2 s, those waits were
// half of TagCgroup's slowest percent under a thousand hostile clients.
const exemptionFallback = 30 * time.Second

// exemptKeeper is what keepExempt needs of the audit control socket.
type exemptKeeper interface {
	EnsureExempt() (restored bool, err error)
}

// keepExempt puts contidd's audit exemption back whenever the audit rules
// were reloaded without it (auditd's start, `auditctl -D`). It looks when
// check says the audit stream showed a sign of that (exemptionMayBeGone),
// and every exemptionFallback.
func keepExempt(ctx context.Context, log *Logger, ctl exemptKeeper, check <-chan struct{}) {
	t := time.NewTicker(exemptionFallback)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-check:
		}
		restored, err := ctl.EnsureExempt()
		switch {
		case err != nil && ctx.Err() == nil:
			log.Logf(cdbus.PrioWarning, "Checking contidd's audit exemption: %v", err)
		case restored:
			log.Logf(cdbus.PrioNotice, "The audit rules were reloaded without contidd's exemption of its own system calls; put it back.")
		}
		// However many events ask, at most one look a second: a stream
		// that keeps showing signs must not bring back the stalls.
		select {
		case <-ctx.Done():
			return
		case <-time.After(exemptionGap):
		}
	}
}

// exemptionGap is the least time between two looks for the exemption.
const exemptionGap = time.Second

// exemptionMayBeGone tells the events after which contidd's exemption may
// be gone: a rule was removed (a reload starts with `auditctl -D`, which
// the kernel logs as one CONFIG_CHANGE op=remove_rule per rule), or the
// kernel audited a system call of contidd itself (self), which the
// exemption exists to prevent.
func exemptionMayBeGone(ev *audit.Event, self uint32) bool {
	for i := range ev.Records {
		r := &ev.Records[i]
		switch r.Type {
		case auparse.AUDIT_CONFIG_CHANGE:
			if op, _ := r.Get("op"); op == "remove_rule" {
				return true
			}
		case auparse.AUDIT_SYSCALL:
			if ev.HasPID && ev.PID == self {
				return true
			}
		}
	}
	return false
}

// exemptionWatch is the reader's handler with a look at each event on the
// way: after one that may have taken the exemption away, keepExempt is
// asked to check.
type exemptionWatch struct {
	audit.Handler
	check chan<- struct{}
	self  uint32
}

func (w exemptionWatch) HandleEvent(ev *audit.Event) {
	if exemptionMayBeGone(ev, w.self) {
		askCheck(w.check)
	}
	w.Handler.HandleEvent(ev)
}

// askCheck asks for a check without waiting: one already asked for
// covers every event before it runs.
func askCheck(check chan<- struct{}) {
	select {
	case check <- struct{}{}:
	default:
	}
}

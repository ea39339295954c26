package dbus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/kernel"
	"github.com/contid/contid/registry"
)

// Registry is the part of *registry.Registry the API uses.
type Registry interface {
	TagCgroup(c registry.Caller, id contid.ID, t registry.CgroupTarget, o registry.Options) (*registry.Container, error)
	TagProcess(c registry.Caller, id contid.ID, t registry.ProcessTarget, o registry.Options) (*registry.Container, error)
	Adopt(tag contid.Tag, cg registry.Cgroup) (*registry.Container, bool, error)
	SetUnitIfUnset(id contid.ID, unit string) (bool, error)
	Name(c registry.Caller, id contid.ID, o registry.Options, unit string) (*registry.Container, error)
	CheckTaggable(cgroup string) error
	MarkExited(id contid.ID) (*registry.Container, error)
	NoteHeldProcesses(id contid.ID) error
	Get(id contid.ID) (*registry.Container, error)
	ByCgroupPath(p string) (*registry.Container, error)
	ByUnit(unit string) (*registry.Container, error)
	ByName(name string) (*registry.Container, error)
	List() []*registry.Container
	Rows() []registry.Row
	ActiveIDs() []contid.ID
	Active() int
}

// Cgroups resolves cgroup2 paths (relative to the cgroup2 root) and IDs.
type Cgroups interface {
	Root() string
	ID(rel string) (uint64, error)
	// PathByID fails with kernel.ErrNoSuchCgroup when the cgroup is gone.
	PathByID(id uint64) (string, error)
	OfPID(pid uint32) (string, error)
}

// Logf logs at a syslog priority (0 emerg ... 7 debug).
type Logf func(priority int, format string, args ...any)

// Syslog priorities used here.
const (
	PrioErr     = 3
	PrioWarning = 4
	PrioNotice  = 5
	PrioInfo    = 6
	PrioDebug   = 7
)

// Config wires a Manager to the rest of contidd.
type Config struct {
	Registry Registry
	Tracker  Tracker
	Cgroups  Cgroups
	Version  string
	Logf     Logf
	// ExitPollInterval is how often cgroups of active containers are
	// checked for emptiness; 0 means one second.
	ExitPollInterval time.Duration
	// AutotagParents are the cgroups whose new children the kernel tags
	// at mkdir; machines machined announces elsewhere are not tagged on
	// its word alone (see FollowMachines).
	AutotagParents []string
	// AutotagScopes name the containers the kernel autotags among the
	// other children of a shared parent; FollowDocker tags a running
	// container there on dockerd's word.
	AutotagScopes []contid.ScopePattern
}

// Tracker is what the service reads of, and releases in, the kernel's
// state; kernel.BPF implements it. Tagging goes through the Registry,
// whose own Kernel interface writes the tags.
type Tracker interface {
	// Enforcement reports the mode and a reason a person can read.
	Enforcement() (contid.Mode, string)
	// ProcessID reads a live process's ID through its pidfd;
	// kernel.ErrNotTagged when it has none.
	ProcessID(pidfd int) (contid.ID, error)
	// PIDID is ProcessID for a PID.
	PIDID(pid uint32) (contid.ID, error)
	// CgroupTag and CgroupTags read the kernel's cgroup tags.
	CgroupTag(cgroupID uint64) (contid.Tag, error)
	CgroupTags() (map[uint64]contid.Tag, error)
	// UntagCgroup and ReleaseID forget a removed container's cgroup and
	// ID claim (see release.go).
	UntagCgroup(cgroupID uint64) error
	ReleaseID(id contid.ID) error
	// DenialsSuppressed reads each container's count of refusals not
	// recorded one by one; ForgetDenials removes a released container's
	// and returns its final count (see denials.go).
	DenialsSuppressed() (map[contid.ID]uint64, error)
	ForgetDenials(id contid.ID) (uint64, error)
	// DenialsSaid and NoteDenialsSaid keep, with the kernel's pins, how
	// much of each count the journal has said, across restarts.
	DenialsSaid() (map[contid.ID]uint64, error)
	NoteDenialsSaid(id contid.ID, said uint64) error
}

// Manager implements org.contid1.Manager and the container objects.
type Manager struct {
	cfg Config
	log Logf

	mu       sync.Mutex
	emitters []emitter
	// signals is what emit queued and the announcer has not yet sent.
	signals signalQueue
	sysbus  *godbus.Conn // for systemd1, machine1 and polkit; nil without a bus

	// populated remembers containers whose cgroup has held processes, so
	// a freshly tagged, still empty cgroup is not taken for an exited one.
	populated map[contid.ID]bool

	// auditState reports the audit stream and rules (AuditStream,
	// AuditRulesLoaded, AuditRulesMissing); nil until the pipeline runs.
	auditState func() AuditState

	counters struct {
		source func() EventCounts
		sent   EventCounts
		// sentDropped is SignalsDropped as last announced.
		sentDropped uint64
	}
	// signalsDropped counts the signals not delivered to peer-to-peer
	// clients that fell behind (property SignalsDropped).
	signalsDropped atomic.Uint64
	lastContainers uint32

	// exitQueue holds the active IDs the exit check has yet to visit in
	// the current pass; see checkExits.
	exitQueue []contid.ID

	// releases are the kernel entries of removed containers waiting out
	// ReleaseGrace, oldest first; see release.go.
	relMu    sync.Mutex
	releases []pendingRelease
	// resync: kernel events were lost, read the kernel's tags again.
	resync atomic.Bool
	// denials is what the journal has said of each container's
	// unrecorded refusals (denials.go).
	denials denialLedger
	// unrecorded are the cgroups the kernel tagged whose paths the
	// registry refuses, kept until their removal (unrecorded.go).
	unrecorded unrecordedCgroups

	// groups says whose allowance a UID draws on (subUIDs), for both
	// transports; tagCalls counts the tag requests waiting on polkit.
	groups   *subUIDs
	tagCalls inflight

	// dockerLabels are the names dockerd gave its containers, by Docker
	// ID, for the kernel's autotag of their scopes; see docker.go.
	dockerLabels dockerLabels

	// buses follows the clients of each system-bus connection served
	// (one, or two briefly across a reconnection); see busPeers.
	buses map[*godbus.Conn]*busPeers
	// busCalls counts each connection's calls not yet answered, so a
	// stopping contidd answers them before it leaves (LeaveBus).
	busCalls map[*godbus.Conn]*busCalls

	polkitOnce   sync.Once
	machinedOnce sync.Once
	auditor      Auditor
	auditFailing bool // the last record failed; see audit
}

// emitter sends a signal on one transport.
type emitter interface {
	emit(path godbus.ObjectPath, iface, member string, body ...any)
}

// NewManager returns a Manager; serve it with ServeBus and ServeP2P.
func NewManager(cfg Config) *Manager {
	if cfg.Logf == nil {
		cfg.Logf = func(int, string, ...any) {}
	}
	if cfg.ExitPollInterval == 0 {
		cfg.ExitPollInterval = time.Second
	}
	m := &Manager{cfg: cfg, log: cfg.Logf, populated: map[contid.ID]bool{}, groups: newSubUIDs("/etc/subuid")}
	m.lastContainers = uint32(cfg.Registry.Active())
	m.seedDenials()
	return m
}

func (m *Manager) addEmitter(e emitter) {
	m.mu.Lock()
	m.emitters = append(m.emitters, e)
	m.mu.Unlock()
}

// emit queues a signal for every transport and returns at once. The
// method call that caused it is answered without waiting for the signal to
// reach every listener: on the peer-to-peer socket those may be a thousand
// connections, some of which have to be cut for not reading. One announcer
// at a time runs the queue in order, so listeners see signals in the order
// they were emitted, as before.
func (m *Manager) emit(path godbus.ObjectPath, iface, member string, body ...any) {
	m.announce(func(es []emitter) { emitTo(es, path, iface, member, body...) })
}

// announce queues work that ends in signals (see emit).
func (m *Manager) announce(a announcement) { m.signals.push(a, m.runAnnouncements) }

func (m *Manager) runAnnouncements(batch []announcement) {
	m.mu.Lock()
	es := append([]emitter(nil), m.emitters...)
	m.mu.Unlock()
	for _, a := range batch {
		a(es)
	}
}

func emitTo(es []emitter, path godbus.ObjectPath, iface, member string, body ...any) {
	for _, e := range es {
		e.emit(path, iface, member, body...)
	}
}

// flushSignals waits until everything announced so far has been handed to
// the transports.
func (m *Manager) flushSignals() { m.signals.flush() }

func (m *Manager) busPeers(conn *godbus.Conn) *busPeers {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.buses[conn]
}

func (m *Manager) systemBus() *godbus.Conn {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sysbus
}

// containerNew announces a new container and the changed count, once it
// has remembered whether the container held processes.
func (m *Manager) containerNew(c *registry.Container) {
	m.notePopulated(c)
	m.announce(func(es []emitter) {
		emitTo(es, client.ManagerPath, client.ManagerInterface, "ContainerNew", uint64(c.ID), client.ContainerPath(c.ID))
		m.announceCount(es)
	})
}

func (m *Manager) containerRemoved(c *registry.Container) {
	m.emit(client.ManagerPath, client.ManagerInterface, "ContainerRemoved", uint64(c.ID), client.ContainerPath(c.ID))
	m.emit(client.ContainerPath(c.ID), ifaceProperties, "PropertiesChanged", client.ContainerInterface,
		map[string]godbus.Variant{"State": godbus.MakeVariant(string(c.State))}, []string{})
	m.containersChanged()
}

func (m *Manager) containersChanged() {
	m.announce(m.announceCount)
}

// announceCount announces the number of active containers if it changed.
// The announcer counts, not the caller: a count taken before an
// announcement queued later could otherwise be the last one sent.
func (m *Manager) announceCount(es []emitter) {
	if n, ok := m.containerCount(); ok {
		emitContainerCount(es, n)
	}
}

// containerCount is the number of active containers, and whether it
// differs from the one last announced.
func (m *Manager) containerCount() (uint32, bool) {
	n := uint32(m.cfg.Registry.Active())
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := n != m.lastContainers
	m.lastContainers = n
	return n, changed
}

func emitContainerCount(es []emitter, n uint32) {
	emitTo(es, client.ManagerPath, ifaceProperties, "PropertiesChanged", client.ManagerInterface,
		map[string]godbus.Variant{"Containers": godbus.MakeVariant(n)}, []string{})
}

// EventCounts are the audit pipeline's counters, behind the Events*
// properties.
type EventCounts struct {
	// Written and Lost are EventsWritten and EventsLost.
	Written, Lost uint64
	// Ambiguous is EventsAmbiguous: events whose PID was reused too
	// close to them to tell which process made them, written with their
	// candidates and without a container ID.
	Ambiguous uint64
}

// SetEventSource tells the Manager where the audit pipeline's counters
// are read: the Events* getters read it, and Run publishes changes with
// PropertiesChanged at most once a second, so a busy host does not flood
// the bus.
func (m *Manager) SetEventSource(counts func() EventCounts) {
	m.mu.Lock()
	m.counters.source = counts
	m.mu.Unlock()
}

// AuditState is what the audit pipeline reports about itself.
type AuditState struct {
	// Stream is how contidd receives audit records: "unicast",
	// "multicast", or "none".
	Stream string
	// RulesLoaded is how many rules of the rules file the kernel holds;
	// RulesMissing are the file's lines it does not hold.
	RulesLoaded  uint32
	RulesMissing []string
}

// SetAuditState tells the Manager where the audit pipeline's state is
// read, for the AuditStream and AuditRules* properties.
func (m *Manager) SetAuditState(state func() AuditState) {
	m.mu.Lock()
	m.auditState = state
	m.mu.Unlock()
}

func (m *Manager) currentAuditState() AuditState {
	m.mu.Lock()
	state := m.auditState
	m.mu.Unlock()
	if state == nil {
		return AuditState{Stream: "none", RulesMissing: []string{}}
	}
	st := state()
	if st.RulesMissing == nil {
		st.RulesMissing = []string{}
	}
	return st
}

func (m *Manager) eventCounts() EventCounts {
	m.mu.Lock()
	counts := m.counters.source
	m.mu.Unlock()
	if counts == nil {
		return EventCounts{}
	}
	return counts()
}

func (m *Manager) flushCounters() {
	now := m.eventCounts()
	m.mu.Lock()
	c := &m.counters
	changed := map[string]godbus.Variant{}
	for _, p := range []struct {
		name      string
		now, sent uint64
	}{
		{"EventsWritten", now.Written, c.sent.Written},
		{"EventsLost", now.Lost, c.sent.Lost},
		{"EventsAmbiguous", now.Ambiguous, c.sent.Ambiguous},
	} {
		if p.now != p.sent {
			changed[p.name] = godbus.MakeVariant(p.now)
		}
	}
	c.sent = now
	if dropped := m.signalsDropped.Load(); dropped != c.sentDropped {
		changed["SignalsDropped"] = godbus.MakeVariant(dropped)
		c.sentDropped = dropped
	}
	m.mu.Unlock()
	if len(changed) > 0 {
		m.emit(client.ManagerPath, ifaceProperties, "PropertiesChanged", client.ManagerInterface, changed, []string{})
	}
}

// EmitTamperDenied announces a refused tampering attempt by container id.
func (m *Manager) EmitTamperDenied(id contid.ID, pid uint32, op string) {
	m.emit(client.ManagerPath, client.ManagerInterface, "TamperDenied", uint64(id), pid, op)
}

// Run does the Manager's periodic work until ctx ends: publishing event
// counters and noticing containers whose cgroups emptied.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.ExitPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.flushCounters()
			m.checkExits()
			m.releaseUnrecorded()
			m.releaseDue(now)
			m.sweepDenials()
			if m.resync.Swap(false) {
				m.resyncKernelTags()
			}
		}
	}
}

// exitBatch bounds how many containers one exit check visits. Reading
// every cgroup.events file each second cost a 10,000-container host about
// 85 ms of CPU in one burst per second (and 400 MB/min of garbage), which
// showed up as the tail latency of every API call; in slices of 1,000 a
// pass over 10,000 containers takes 10 s, and hosts with fewer than 1,000
// see no change. The record of an exited container is kept either way, so
// only its State property is late, never an attribution.
const exitBatch = 1000

// checkExits marks containers exited whose cgroups have all emptied
// (after having held processes) or disappeared, or, for process-tagged
// containers, whose processes are all gone. Each call continues the
// current pass over the active IDs.
func (m *Manager) checkExits() {
	if len(m.exitQueue) == 0 {
		m.exitQueue = m.cfg.Registry.ActiveIDs()
	}
	n := min(exitBatch, len(m.exitQueue))
	batch := m.exitQueue[:n]
	m.exitQueue = m.exitQueue[n:]
	if len(m.exitQueue) == 0 {
		m.exitQueue = nil // do not pin the pass's backing array
	}
	for _, id := range batch {
		c, err := m.cfg.Registry.Get(id)
		if err != nil || c.State != registry.StateActive {
			continue
		}
		if !m.stillActive(c) {
			ec, err := m.cfg.Registry.MarkExited(c.ID)
			if err != nil {
				m.log(PrioWarning, "Failed to mark container %d exited: %v", c.ID, err)
				continue
			}
			m.mu.Lock()
			delete(m.populated, c.ID)
			m.mu.Unlock()
			m.log(PrioInfo, "Container %d (%s) exited.", c.ID, c.Name)
			m.audit(func(a Auditor) error { return a.RecordDrop(ec.Chain, labelsOf(ec)) })
			m.containerRemoved(ec)
			m.scheduleRelease(ec)
		}
	}
}

// notePopulated remembers, before a tag call's reply, whether the
// container's cgroups held processes, so a container that empties before
// the next exit check is still seen to exit. Not in the announcer, which
// may run after the processes are gone: the container would then stay
// active for as long as its cgroup stays. When the kernel's walk found
// processes (HeldProcesses) no read of cgroup.events, milliseconds on a
// host under load, is needed, and processes that exited since the walk
// still count. Otherwise it is read: a walk that found nothing may have
// missed a process (one deeper below the cgroup than the walk looks, or
// one moved in while it ran), and containers of processes, adopted ones
// and those a restart finds had no walk in this contidd.
func (m *Manager) notePopulated(c *registry.Container) {
	if c.HeldProcesses {
		m.mu.Lock()
		m.populated[c.ID] = true
		m.mu.Unlock()
	} else {
		m.stillActive(c)
	}
	// An exit check may have marked the container exited (its cgroup
	// removed at once) between the tag and now, and forgotten it before
	// it was remembered here; nothing would forget it again. Read from
	// the cgroup's path too: a new cgroup with processes may have taken
	// it meanwhile.
	if cur, err := m.cfg.Registry.Get(c.ID); err != nil || cur.State != registry.StateActive {
		m.mu.Lock()
		delete(m.populated, c.ID)
		m.mu.Unlock()
	}
}

func (m *Manager) stillActive(c *registry.Container) bool {
	if len(c.Cgroups) == 0 {
		for _, pid := range c.PIDs {
			if id, err := m.cfg.Tracker.PIDID(pid); err == nil && id == c.ID {
				return true
			}
		}
		return len(c.PIDs) == 0
	}
	anyPopulated, anyExists := false, false
	for _, cg := range c.Cgroups {
		populated, err := cgroupPopulated(filepath.Join(m.cfg.Cgroups.Root(), cg.Path))
		if err != nil {
			continue
		}
		anyExists = true
		anyPopulated = anyPopulated || populated
	}
	if !anyExists {
		return false
	}
	if anyPopulated && !c.HeldProcesses {
		// Saved for a restart: the walk may not have counted these
		// processes, or they came after the tag. Written once; not
		// under m.mu, as it waits for the disk.
		if err := m.cfg.Registry.NoteHeldProcesses(c.ID); err != nil {
			m.log(PrioWarning, "Failed to record that container %d held processes: %v", c.ID, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if anyPopulated {
		m.populated[c.ID] = true
		return true
	}
	return !m.populated[c.ID]
}

// Reconcile adopts the cgroups the kernel tagged while contidd was not
// running (autotag at mkdir), so the registry knows every kernel ID.
func (m *Manager) Reconcile() error {
	tags, err := m.cfg.Tracker.CgroupTags()
	if err != nil {
		return fmt.Errorf("read kernel cgroup tags: %w", err)
	}
	if adopted := m.adoptKernelTags(tags); adopted > 0 {
		m.log(PrioInfo, "Adopted %d containers tagged by the kernel while contidd was down.", adopted)
	}
	m.markPopulated()
	return nil
}

// adoptKernelTags records the kernel's cgroup tags the registry lacks, and
// lets the entries of removed cgroups go (see release.go). It returns how
// many live containers it adopted.
func (m *Manager) adoptKernelTags(tags map[uint64]contid.Tag) int {
	adopted := 0
	for cgid, tag := range tags {
		p, err := m.cfg.Cgroups.PathByID(cgid)
		if err != nil {
			m.releaseRemoved(tag, cgid)
			continue
		}
		if _, isNew, err := m.cfg.Registry.Adopt(tag, registry.Cgroup{Path: p, ID: cgid}); err != nil {
			if refused, warn := m.refusedAdoption(tag, cgid, p); !refused || warn {
				m.log(PrioWarning, "Failed to adopt cgroup %s (ID %s): %v", p, tag.Chain, err)
			}
		} else if isNew {
			adopted++
		}
	}
	return adopted
}

// markPopulated seeds the populated memory after a restart from what the
// registry saved and the cgroups as they are now: processes that ended
// while contidd was down leave an empty cgroup, which a container that
// held processes must read as its exit.
func (m *Manager) markPopulated() {
	for _, c := range m.cfg.Registry.List() {
		if c.State == registry.StateActive {
			m.notePopulated(c)
		}
	}
}

// newCgroupPath resolves the path of a cgroup the kernel autotagged. The
// tracepoint fires before kernfs_activate() makes the directory visible,
// so its event can be read while the cgroup cannot be opened by its ID
// yet; taken for removed, the new container would be recorded exited at
// birth and never named. Only a cgroup that stays out of reach for a few
// milliseconds is gone.
func (m *Manager) newCgroupPath(id uint64) (string, error) {
	var err error
	for i := range 5 {
		var p string
		if p, err = m.cfg.Cgroups.PathByID(id); err == nil || !errors.Is(err, kernel.ErrNoSuchCgroup) {
			return p, err
		}
		time.Sleep(time.Duration(i+1) * time.Millisecond)
	}
	return "", err
}

// adoptAutotag records a cgroup the kernel tagged at mkdir, and, the first
// time, logs, audits and announces it.
func (m *Manager) adoptAutotag(tag contid.Tag, cg registry.Cgroup) (*registry.Container, error) {
	c, isNew, err := m.cfg.Registry.Adopt(tag, cg)
	if err != nil || !isNew {
		return c, err
	}
	if u := unitOfCgroup(cg.Path); c.Unit == "" && u != "" {
		// systemd names a unit's cgroup after the unit, so a plain
		// `systemd-run --scope --slice=machine.slice` is findable
		// by GetContainerByUnit before (or without) machined.
		if set, err := m.cfg.Registry.SetUnitIfUnset(c.ID, u); err == nil && set {
			c.Unit = u
		}
	}
	c = m.nameFromDocker(c, cg.Path)
	m.log(PrioInfo, "Cgroup %s was tagged %s at creation.", cg.Path, c.Chain)
	m.audit(func(a Auditor) error { return a.RecordCreate(0, c.Chain, labelsOf(c)) })
	m.containerNew(c)
	return c, nil
}

// HandleKernelEvent acts on one ring buffer event.
func (m *Manager) HandleKernelEvent(ev kernel.Event) {
	switch ev.Kind {
	case kernel.EventAutotag:
		p, err := m.newCgroupPath(ev.CgroupID)
		if err != nil {
			m.log(PrioDebug, "Autotagged cgroup %d vanished before adoption: %v", ev.CgroupID, err)
			m.releaseRemoved(ev.Tag, ev.CgroupID)
			return
		}
		if _, err := m.adoptAutotag(ev.Tag, registry.Cgroup{Path: p, ID: ev.CgroupID}); err != nil {
			if refused, warn := m.refusedAdoption(ev.Tag, ev.CgroupID, p); !refused || warn {
				m.log(PrioWarning, "Failed to adopt autotagged cgroup %s: %v", p, err)
			}
		}
	case kernel.EventDenied:
		var l contid.Labels
		if c, err := m.cfg.Registry.Get(ev.Tag.ID()); err == nil {
			l = labelsOf(c)
		}
		n, said := m.denials.carry(ev.Tag.ID(), ev.Suppressed)
		m.audit(func(a Auditor) error { return a.RecordDenial(ev.Tag.Chain, l, ev.PID, ev.Op, n) })
		if n > 0 {
			m.noteSaid(ev.Tag.ID(), said)
		}
		// Only recorded denials are signalled; the journal entry, with
		// its count of the unrecorded ones, is the record.
		m.EmitTamperDenied(ev.Tag.ID(), ev.PID, ev.Op)
	case kernel.EventGrantUsed:
		var l contid.Labels
		if c, err := m.cfg.Registry.Get(ev.Tag.ID()); err == nil {
			l = labelsOf(c)
		}
		m.audit(func(a Auditor) error { return a.RecordGrantUse(ev.Tag.Chain, l, ev.PID, ev.Op) })
	case kernel.EventLost:
		// The kernel still enforced and tagged; what is lost is the
		// news. Said, so that a gap in TamperDenied is never silent.
		m.log(PrioWarning, "The kernel's event buffer overflowed: %d autotag, denial or first-use-of-a-grant events were not delivered (their TamperDenied signals and journal records are missing; autotagged cgroups are adopted from the kernel's tags within a second, and a grant's first use is reported again at its next use).", ev.Count)
		m.resync.Store(true)
	}
}

func (m *Manager) listContainers() []client.ContainerRow {
	rows := m.cfg.Registry.Rows()
	out := make([]client.ContainerRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, client.ContainerRow{ID: uint64(r.ID), Name: r.Name, Unit: r.Unit, Cgroup: r.Cgroup, Parent: uint64(r.Parent), Path: client.ContainerPath(r.ID)})
	}
	return out
}

func firstCgroup(c *registry.Container) string {
	if len(c.Cgroups) == 0 {
		return ""
	}
	return c.Cgroups[0].Path
}

func firstCgroupID(c *registry.Container) uint64 {
	if len(c.Cgroups) == 0 {
		return 0
	}
	return c.Cgroups[0].ID
}

func (m *Manager) managerProperties() map[string]godbus.Variant {
	mode, reason := m.cfg.Tracker.Enforcement()
	events := m.eventCounts()
	audit := m.currentAuditState()
	return map[string]godbus.Variant{
		"AuditStream":       godbus.MakeVariant(audit.Stream),
		"AuditRulesLoaded":  godbus.MakeVariant(audit.RulesLoaded),
		"AuditRulesMissing": godbus.MakeVariant(audit.RulesMissing),
		"Version":           godbus.MakeVariant(m.cfg.Version),
		"Enforcement":       godbus.MakeVariant(string(mode)),
		"EnforcementReason": godbus.MakeVariant(reason),
		"Containers":        godbus.MakeVariant(uint32(m.cfg.Registry.Active())),
		"EventsWritten":     godbus.MakeVariant(events.Written),
		"EventsLost":        godbus.MakeVariant(events.Lost),
		"EventsAmbiguous":   godbus.MakeVariant(events.Ambiguous),
		"SignalsDropped":    godbus.MakeVariant(m.signalsDropped.Load()),
	}
}

// containerProperties gives c's properties; suppressed is its
// DenialsSuppressed, which the kernel, not the registry, counts.
func containerProperties(c *registry.Container, suppressed uint64) map[string]godbus.Variant {
	chain := make([]uint64, len(c.Chain))
	for i, id := range c.Chain {
		chain[i] = uint64(id)
	}
	var created uint64
	if !c.Created.IsZero() {
		created = uint64(c.Created.UnixMicro())
	}
	return map[string]godbus.Variant{
		"Id":                godbus.MakeVariant(uint64(c.ID)),
		"Name":              godbus.MakeVariant(c.Name),
		"Unit":              godbus.MakeVariant(c.Unit),
		"Manager":           godbus.MakeVariant(c.Manager),
		"Image":             godbus.MakeVariant(c.Image),
		"ManagerID":         godbus.MakeVariant(c.ManagerID),
		"UUID":              godbus.MakeVariant(c.UUID),
		"ControlGroup":      godbus.MakeVariant(firstCgroup(c)),
		"CgroupId":          godbus.MakeVariant(firstCgroupID(c)),
		"ParentId":          godbus.MakeVariant(uint64(c.Parent())),
		"Chain":             godbus.MakeVariant(chain),
		"Depth":             godbus.MakeVariant(uint32(c.Depth())),
		"State":             godbus.MakeVariant(string(c.State)),
		"CreatedUSec":       godbus.MakeVariant(created),
		"OwnerUID":          godbus.MakeVariant(c.OwnerUID),
		"OwnerPID":          godbus.MakeVariant(c.OwnerPID),
		"Flags":             godbus.MakeVariant(c.Flags.Strings()),
		"AllowBPF":          godbus.MakeVariant(c.Flags&contid.FlagAllowBPF != 0),
		"AllowModules":      godbus.MakeVariant(c.Flags&contid.FlagAllowModules != 0),
		"DenialsSuppressed": godbus.MakeVariant(suppressed),
	}
}

// listProcesses returns the live processes of a container: every process
// in its cgroups' subtrees, or, for a process-tagged container, its
// processes that still carry the ID.
func (m *Manager) listProcesses(c *registry.Container) []uint32 {
	seen := map[uint32]bool{}
	pids := []uint32{}
	add := func(pid uint32) {
		if !seen[pid] {
			seen[pid] = true
			pids = append(pids, pid)
		}
	}
	for _, cg := range c.Cgroups {
		root := filepath.Join(m.cfg.Cgroups.Root(), cg.Path)
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for _, f := range strings.Fields(string(b)) {
				if v, err := strconv.ParseUint(f, 10, 32); err == nil {
					add(uint32(v))
				}
			}
			return nil
		})
	}
	if len(c.Cgroups) == 0 {
		for _, pid := range c.PIDs {
			if id, err := m.cfg.Tracker.PIDID(pid); err == nil && id == c.ID {
				add(pid)
			}
		}
	}
	sort.Slice(pids, func(i, j int) bool { return pids[i] < pids[j] })
	return pids
}

// containerByPID resolves the container a live process belongs to, from
// the kernel's per-task tag.
func (m *Manager) containerByPID(pid uint32) (*registry.Container, error) {
	if pid == 0 {
		return nil, fmt.Errorf("%w: PID 0 is not a process", contid.ErrInvalidArgs)
	}
	id, err := m.cfg.Tracker.PIDID(pid)
	switch {
	case errors.Is(err, kernel.ErrNotTagged):
		return nil, fmt.Errorf("%w: process %d is not in a container", contid.ErrNoSuchContainer, pid)
	case errors.Is(err, kernel.ErrNoProcess):
		return nil, fmt.Errorf("%w: no process %d", contid.ErrNoSuchContainer, pid)
	case err != nil:
		return nil, fmt.Errorf("look up process %d: %w", pid, err)
	case id == contid.Unset:
		return nil, fmt.Errorf("%w: process %d is not in a container", contid.ErrNoSuchContainer, pid)
	}
	c, err := m.cfg.Registry.Get(id)
	if errors.Is(err, contid.ErrNoSuchContainer) && m.adoptKernelID(id) {
		c, err = m.cfg.Registry.Get(id)
	}
	if err != nil {
		return nil, fmt.Errorf("process %d has ID %d: %w", pid, id, err)
	}
	return c, nil
}

// adoptKernelID records the cgroups the kernel tagged id, for an ID a
// process carries before its autotag event was handled (the event loop
// runs behind, or could not resolve the path then). It reports whether
// anything was adopted.
func (m *Manager) adoptKernelID(id contid.ID) bool {
	tags, err := m.cfg.Tracker.CgroupTags()
	if err != nil {
		return false
	}
	adopted := false
	for cgid, tag := range tags {
		if tag.ID() != id {
			continue
		}
		p, err := m.cfg.Cgroups.PathByID(cgid)
		if err != nil {
			continue
		}
		c, isNew, err := m.cfg.Registry.Adopt(tag, registry.Cgroup{Path: p, ID: cgid})
		if err != nil {
			m.refusedAdoption(tag, cgid, p)
			continue
		}
		adopted = true
		if isNew {
			m.log(PrioInfo, "Cgroup %s was tagged %s at creation (adopted on lookup).", p, c.Chain)
			m.containerNew(c)
		}
	}
	return adopted
}

// unitOfCgroup is the systemd unit a cgroup path belongs to by systemd's
// naming (its last component, when that is a scope or service), or "".
func unitOfCgroup(p string) string {
	base := path.Base(p)
	if strings.HasSuffix(base, ".scope") || strings.HasSuffix(base, ".service") {
		return base
	}
	return ""
}

package dbus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
	"github.com/contid/contid/kernel"
	"github.com/contid/contid/registry"
)

// peer is the other end of one request: a system-bus client (by unique
// name) or a peer-to-peer connection (by its socket credentials).
type peer struct {
	bus    *godbus.Conn // system bus: the connection the call came on
	sender string       // system bus: the caller's unique name
	cred   *unix.Ucred  // peer-to-peer: SO_PEERCRED at connect
	pidfd  int          // peer-to-peer: SO_PEERPIDFD, or -1
}

// callerInfo is a registry.Caller plus the pidfd that pins it while the
// request runs.
type callerInfo struct {
	registry.Caller
	pidfd int
}

func (ci *callerInfo) close() {
	if ci.pidfd >= 0 {
		unix.Close(ci.pidfd)
		ci.pidfd = -1
	}
}

// identify pins the caller by pidfd, then reads its credentials from
// /proc, then confirms the pidfd still names a live process: if the PID
// had been reused in between, the pidfd would refer to the exited
// original and the check fails, so the facts read belong to the caller.
func (m *Manager) identify(ctx context.Context, p *peer) (*callerInfo, error) {
	ci := &callerInfo{pidfd: -1}
	var pid uint32
	// known is the start time of the process a system-bus sender was
	// verified to be by an earlier call; 0 when it is not cached.
	var known uint64
	switch {
	case p.cred != nil:
		pid = uint32(p.cred.Pid)
		if p.pidfd >= 0 {
			fd, err := unix.FcntlInt(uintptr(p.pidfd), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				return nil, fmt.Errorf("duplicate peer pidfd: %w", err)
			}
			ci.pidfd = fd
		}
	case p.bus != nil:
		if c, ok := m.callers.get(p.bus, p.sender); ok {
			pid, known = c.pid, c.start
			break
		}
		var creds map[string]godbus.Variant
		err := p.bus.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionCredentials", 0, p.sender).Store(&creds)
		if err != nil {
			return nil, fmt.Errorf("%w: cannot identify caller %s: %v", registry.ErrAccessDenied, p.sender, err)
		}
		v, ok := creds["ProcessID"].Value().(uint32)
		if !ok {
			return nil, fmt.Errorf("%w: the bus did not tell the caller's PID", registry.ErrAccessDenied)
		}
		pid = v
	default:
		return nil, fmt.Errorf("%w: unknown caller", registry.ErrAccessDenied)
	}
	if ci.pidfd < 0 {
		fd, err := unix.PidfdOpen(int(pid), 0)
		if err != nil {
			return nil, fmt.Errorf("%w: caller process %d is gone: %v", registry.ErrAccessDenied, pid, err)
		}
		ci.pidfd = fd
	}
	fail := func(err error) (*callerInfo, error) {
		ci.close()
		return nil, fmt.Errorf("%w: cannot read caller process %d: %v", registry.ErrAccessDenied, pid, err)
	}
	start, err := startTime(pid)
	if err != nil {
		return fail(err)
	}
	if known != 0 && start != known {
		// The verified process is gone and its PID belongs to another;
		// whoever still holds the connection is not that process.
		m.callers.forget(p.bus, p.sender)
		return fail(fmt.Errorf("caller %s went away during the request", p.sender))
	}
	st, err := readStatus(pid)
	if err != nil {
		return fail(err)
	}
	inInitNS, err := sameUserNS(pid)
	if err != nil {
		return fail(err)
	}
	cg, err := m.cfg.Cgroups.OfPID(pid)
	if err != nil {
		return fail(err)
	}
	id, err := m.cfg.Tracker.PIDID(pid)
	if err != nil && !errors.Is(err, kernel.ErrNotTagged) {
		return fail(err)
	}
	if !pidfdAlive(ci.pidfd) {
		return fail(errGone)
	}
	if p.bus != nil && known == 0 {
		// dbus-daemon 1.14 hands out no pidfd, so the PID could have been
		// reused between asking the bus and pidfd_open. The sender's
		// connection still being owned by that PID now, with the pidfd
		// alive, closes the window: a connection dies with its process.
		var again uint32
		err := p.bus.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixProcessID", 0, p.sender).Store(&again)
		if err != nil || again != pid {
			return fail(fmt.Errorf("caller %s went away during the request", p.sender))
		}
		m.callers.put(p.bus, p.sender, busCaller{pid: pid, start: start})
	}
	ci.Caller = registry.Caller{
		PID:        pid,
		UID:        st.EffectiveUID,
		Start:      start,
		Privileged: st.CapEff&(1<<capAuditControl) != 0 && inInitNS,
		Container:  id,
		Cgroup:     cg,
	}
	return ci, nil
}

// callerCache remembers which process a system-bus unique name was
// verified to belong to, so a client's later calls skip the two bus round
// trips of that verification (GetConnectionCredentials and
// GetConnectionUnixProcessID: four messages through dbus-daemon, about
// half of a TagCgroup's own latency). This is sound because a unique name
// is never reused during a bus connection's life and its PID is fixed at
// connect time; the process is re-identified by PID and start time on
// every call, so a reused PID is refused, not trusted. Everything else
// (capabilities, user namespace, cgroup, container) is read afresh each
// call, as those can change.
type callerCache struct {
	mu sync.Mutex
	m  map[callerKey]busCaller
}

type callerKey struct {
	bus    *godbus.Conn // a reconnected bus (new daemon) reuses unique names
	sender string
}

type busCaller struct {
	pid   uint32
	start uint64
}

// maxCachedCallers bounds the cache; when it is full it starts over, which
// costs each client one verification again. Names of clients that left are
// not tracked: they are never reused, so a stale entry is only memory.
const maxCachedCallers = 1024

func (c *callerCache) get(bus *godbus.Conn, sender string) (busCaller, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[callerKey{bus, sender}]
	return v, ok
}

func (c *callerCache) put(bus *godbus.Conn, sender string, v busCaller) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedCallers {
		c.m = make(map[callerKey]busCaller)
	}
	c.m[callerKey{bus, sender}] = v
}

func (c *callerCache) forget(bus *godbus.Conn, sender string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, callerKey{bus, sender})
}

// authorizeTag upgrades an unprivileged caller if polkit grants
// org.contid1.tag. Absent polkit means "not authorized", quietly: most
// hosts running contid in containers-only setups have none.
func (m *Manager) authorizeTag(ctx context.Context, p *peer, msg *godbus.Message, ci *callerInfo) {
	if ci.Privileged {
		return
	}
	conn := p.bus
	if conn == nil {
		conn = m.systemBus()
	}
	if conn == nil {
		return
	}
	var subject struct {
		Kind    string
		Details map[string]godbus.Variant
	}
	if p.bus != nil {
		subject.Kind = "system-bus-name"
		subject.Details = map[string]godbus.Variant{"name": godbus.MakeVariant(p.sender)}
	} else {
		subject.Kind = "unix-process"
		subject.Details = map[string]godbus.Variant{
			"pid":        godbus.MakeVariant(ci.PID),
			"start-time": godbus.MakeVariant(ci.Start),
			"uid":        godbus.MakeVariant(int32(ci.UID)),
		}
	}
	var flags uint32
	if msg.Flags&godbus.FlagAllowInteractiveAuthorization != 0 {
		flags = 1 // AllowUserInteraction
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var result struct {
		Authorized, Challenge bool
		Details               map[string]string
	}
	obj := conn.Object("org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority")
	err := obj.CallWithContext(ctx, "org.freedesktop.PolicyKit1.Authority.CheckAuthorization", 0,
		subject, PolkitActionTag, map[string]string{}, flags, "").Store(&result)
	if err != nil {
		m.polkitOnce.Do(func() {
			m.log(PrioNotice, "polkit is not available (%v); only callers with CAP_AUDIT_CONTROL may tag.", err)
		})
		return
	}
	if result.Authorized {
		ci.Privileged = true
	}
}

// freshProcess checks the target of TagProcess/TagPID, pinned by pidfd:
// one thread, no children (the kernel series' rule: the ID must be set
// before the process can spread), and still alive after the checks.
func freshProcess(pidfd int, callerPID uint32, cg Cgroups) (registry.ProcessTarget, error) {
	var t registry.ProcessTarget
	pid, err := pidOfPidfd(pidfd)
	if err != nil {
		return t, err
	}
	st, err := readStatus(pid)
	if err != nil {
		return t, fmt.Errorf("%w: process %d: %v", registry.ErrInvalidArgs, pid, err)
	}
	if st.Threads != 1 {
		return t, fmt.Errorf("%w: process %d has %d threads; tag it before it starts threads", registry.ErrNotFresh, pid, st.Threads)
	}
	kids, err := hasChildren(pid)
	if err != nil {
		return t, fmt.Errorf("%w: process %d: %v", registry.ErrInvalidArgs, pid, err)
	}
	if kids {
		return t, fmt.Errorf("%w: process %d has children; tag it before it forks", registry.ErrNotFresh, pid)
	}
	start, err := startTime(pid)
	if err != nil {
		return t, fmt.Errorf("%w: process %d: %v", registry.ErrInvalidArgs, pid, err)
	}
	cgp, err := cg.OfPID(pid)
	if err != nil {
		return t, fmt.Errorf("%w: process %d: %v", registry.ErrInvalidArgs, pid, err)
	}
	if !pidfdAlive(pidfd) {
		return t, fmt.Errorf("%w: process %d exited", registry.ErrInvalidArgs, pid)
	}
	return registry.ProcessTarget{PID: pid, Start: start, Cgroup: cgp, PIDFD: pidfd, ChildOfCaller: st.PPID == callerPID}, nil
}

// internalCaller is contidd acting for itself (machined follow-up): fully
// privileged, in no container, in its own cgroup.
func (m *Manager) internalCaller() registry.Caller {
	pid := uint32(os.Getpid())
	start, _ := startTime(pid)
	cg, _ := m.cfg.Cgroups.OfPID(pid)
	return registry.Caller{PID: pid, UID: uint32(os.Geteuid()), Start: start, Privileged: true, Container: contid.Unset, Cgroup: cg}
}

package dbus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/internal/procstat"
	"github.com/contid/contid/kernel"
	"github.com/contid/contid/registry"
)

// peer is the other end of one request: a system-bus client (by unique
// name) or a peer-to-peer connection (by what was pinned at accept).
type peer struct {
	bus    *godbus.Conn // system bus: the connection the call came on
	sender string       // system bus: the caller's unique name
	origin *origin      // peer-to-peer: who connected, pinned at accept
}

// callerInfo is a registry.Caller plus what the request holds for it
// until it ends (a place among the calls in flight).
type callerInfo struct {
	registry.Caller
	release func()
}

func (ci *callerInfo) close() {
	if ci.release != nil {
		ci.release()
		ci.release = nil
	}
}

// identify establishes who is behind a request from what was fixed when
// its connection was opened (docs/THREAT-MODEL.md, "Who may tag"):
//
//   - the UID, which alone decides privilege: 0 is privileged, anyone
//     else needs polkit (authorizeTag);
//   - the connecting process, pinned by a pidfd. The caller's cgroup and
//     container are read from that process now, and only while it is
//     alive: a request whose connecting process has exited is refused (a
//     child holding the inherited socket is not it, nor is a process that
//     got its PID). One that is not UID 0 is refused too once the
//     connecting process has executed another program, since polkit knows
//     a process only by PID and start time, which an exec keeps. For UID
//     0 an exec changes nothing that is decided on: privilege comes from
//     the UID, and the container and cgroup survive an exec.
//
// On an error after the connection was identified, the result still names
// the PID and UID recorded at connect, for the log and the audit trail.
func (m *Manager) identify(ctx context.Context, p *peer) (*callerInfo, error) {
	var o origin
	pidfd := -1
	// notAfter bounds the start time of the connecting process when
	// nothing pins it: it cannot have started after its connection
	// appeared. 0: pinned, no bound needed.
	var notAfter uint64
	var remember func(o *origin)
	switch {
	case p.origin != nil:
		o = *p.origin
		if o.pinned() {
			fd, err := unix.FcntlInt(uintptr(o.pidfd), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				return nil, fmt.Errorf("duplicate the caller's pidfd: %w", err)
			}
			pidfd = fd
		}
	case p.bus != nil:
		bp := m.busPeers(p.bus)
		if bp == nil {
			return nil, fmt.Errorf("%w: caller %s is on a bus connection contidd no longer serves", contid.ErrAccessDenied, p.sender)
		}
		var known bool
		var seen uint64
		o, pidfd, seen, known = bp.lookup(p.sender)
		if !known {
			var err error
			o, pidfd, err = busCredentials(ctx, p.bus, p.sender)
			if err != nil {
				return nil, err
			}
			remember = func(pinned *origin) { bp.remember(p.sender, pinned) }
		}
		if pidfd < 0 {
			notAfter = seen
		}
	default:
		return nil, fmt.Errorf("%w: unknown caller", contid.ErrAccessDenied)
	}
	ci, err := m.callerFrom(o, pidfd, notAfter, remember)
	if err != nil {
		if remember != nil {
			o.release() // a ProcessFD nobody keeps
		}
		// Who connected is still known, for the log and the audit trail.
		who := &callerInfo{Caller: registry.Caller{PID: o.pid, UID: o.uid}}
		return who, fmt.Errorf("%w: caller process %d (uid %d): %w", contid.ErrAccessDenied, o.pid, o.uid, err)
	}
	return ci, nil
}

// callerFrom reads the caller's cgroup and container from the process
// that connected. pidfd pins it (ownership passes here; it is closed
// before callerFrom returns, so a request that then waits, on polkit,
// holds no descriptor for its caller), or is -1: then the PID is opened
// now, and a process that started after notAfter is not the one that
// connected. An origin seen for the first time (no start time yet) is
// completed and handed to remember.
func (m *Manager) callerFrom(o origin, pidfd int, notAfter uint64, remember func(*origin)) (*callerInfo, error) {
	fail := func(err error) (*callerInfo, error) { return nil, err }
	if o.changed {
		return fail(fmt.Errorf("%w (its effective UID is no longer %d)", errExeced, o.uid))
	}
	if pidfd < 0 {
		if notAfter == 0 {
			return fail(errExited)
		}
		fd, err := unix.PidfdOpen(int(o.pid), 0)
		if err != nil {
			return fail(errExited)
		}
		pidfd = fd
	}
	defer unix.Close(pidfd)
	if !pidfdAlive(pidfd) {
		return fail(errExited)
	}
	st, err := procstat.ReadIdentity(o.pid)
	if err != nil {
		return fail(err)
	}
	switch {
	case notAfter != 0 && st.Start > notAfter:
		return fail(fmt.Errorf("%w: PID %d now belongs to a process that started after the connection was opened", errExited, o.pid))
	case o.start != 0 && st.Start != o.start:
		return fail(errExited)
	case o.start != 0 && o.uid != 0 && st.Image != o.image:
		return fail(errExeced)
	}
	cg, err := m.cfg.Cgroups.OfPID(o.pid)
	if err != nil {
		return fail(err)
	}
	id, err := m.cfg.Tracker.ProcessID(pidfd)
	switch {
	case errors.Is(err, kernel.ErrNotTagged):
		id = contid.Unset
	case errors.Is(err, kernel.ErrNoProcess):
		return fail(errExited)
	case err != nil:
		return fail(err)
	}
	if !pidfdAlive(pidfd) {
		return fail(errExited)
	}
	if o.start == 0 {
		o.start, o.image = st.Start, st.Image
		if remember != nil {
			// With the bus's ProcessFD, if any: the tracker keeps it.
			keep := o
			remember(&keep)
		}
	}
	return &callerInfo{Caller: registry.Caller{
		PID:        o.pid,
		UID:        o.uid,
		Start:      o.start,
		Privileged: o.uid == 0,
		Container:  id,
		Cgroup:     cg,
	}}, nil
}

// busDriverTimeout bounds a call to dbus-daemon itself.
const busDriverTimeout = 5 * time.Second

// busCredentials asks dbus-daemon what it recorded when the client
// connected: its UID and PID, and, from a bus that offers it, its pidfd
// (ProcessFD). The origin holds that pidfd if any; pidfd is a duplicate
// for this request, or -1.
func busCredentials(ctx context.Context, conn *godbus.Conn, sender string) (origin, int, error) {
	// dbus-daemon answers for itself at once, unless its queue to
	// contidd is full, when it drops the answer: without a bound of its
	// own, the call would wait out callTimeout, holding what it brought
	// (a descriptor), and a flood of calls would hold thousands.
	ctx, cancel := context.WithTimeout(ctx, busDriverTimeout)
	defer cancel()
	var creds map[string]godbus.Variant
	err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionCredentials", 0, sender).Store(&creds)
	if err != nil {
		return origin{}, -1, fmt.Errorf("%w: cannot identify caller %s: %v", contid.ErrAccessDenied, sender, err)
	}
	return originFromCredentials(creds)
}

// originFromCredentials reads GetConnectionCredentials' answer. It takes
// ownership of a ProcessFD in it; the returned pidfd is a duplicate of it
// for the request.
func originFromCredentials(creds map[string]godbus.Variant) (origin, int, error) {
	o := origin{pidfd: -1}
	fd, hasFD := creds["ProcessFD"].Value().(godbus.UnixFD)
	uid, okUID := creds["UnixUserID"].Value().(uint32)
	pid, okPID := creds["ProcessID"].Value().(uint32)
	if !okUID || !okPID {
		if hasFD {
			unix.Close(int(fd))
		}
		return o, -1, fmt.Errorf("%w: the bus did not tell the caller's UID and PID", contid.ErrAccessDenied)
	}
	o.uid, o.pid = uid, pid
	if !hasFD {
		return o, -1, nil
	}
	// The pidfd must name the process the PID does (a PID in another
	// namespace, or an exited process, reads differently).
	if got, err := pidOfPidfd(int(fd)); err != nil || got != pid {
		unix.Close(int(fd))
		return o, -1, nil
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		unix.Close(int(fd))
		return o, -1, fmt.Errorf("duplicate the bus's pidfd of the caller: %w", err)
	}
	o.pidfd = int(fd)
	return o, dup, nil
}

// What authorizeTag asks of polkit. A check polkit answers from its
// rules alone comes back at once; one that lets polkit ask the user waits
// for a person at a password prompt, so it may take longer (systemd
// bounds both by its 25 s method-call timeout, which cuts off a slow
// typist; contidd gives a person two minutes). Either way the wait holds
// no lock and no descriptor: identify has already let go of the caller's
// pidfd, the target is resolved only afterwards, and the call holds one
// of the few places of inflight.go, which is what bounds how many such
// waits there are. Each call runs on its own goroutine on both
// transports, so a waiting one stalls no other.
const (
	polkitAllowUserInteraction = 1 // CheckAuthorization's flags
	polkitTimeout              = 25 * time.Second
	polkitInteractiveTimeout   = 2 * time.Minute
)

// polkitCheck is how one call is put to polkit: interactively only if the
// caller set ALLOW_INTERACTIVE_AUTHORIZATION on the call (the D-Bus
// specification's flag, which `systemctl` sets when it may ask for a
// password and `contidctl` sets likewise), so a script is never held at a
// prompt nobody sees.
func polkitCheck(msg *godbus.Message) (flags uint32, timeout time.Duration) {
	if msg.Flags&godbus.FlagAllowInteractiveAuthorization != 0 {
		return polkitAllowUserInteraction, polkitInteractiveTimeout
	}
	return 0, polkitTimeout
}

// polkitUnavailable tells an absent or unreachable polkit, which is
// logged once, from an answer about this one check (a timeout, a
// dismissed or cancelled authentication), which is not a fault of the
// host.
func polkitUnavailable(err error) bool {
	var de godbus.Error
	var pde *godbus.Error
	var name string
	switch {
	case errors.As(err, &de):
		name = de.Name
	case errors.As(err, &pde):
		name = pde.Name
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return false
	default:
		return true // the connection, not polkit, failed
	}
	switch name {
	case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner",
		"org.freedesktop.DBus.Error.UnknownObject", "org.freedesktop.DBus.Error.UnknownMethod",
		"org.freedesktop.DBus.Error.Spawn.ServiceNotFound":
		return true
	}
	return false
}

// authorizeTag upgrades a caller that is not UID 0 if polkit grants
// org.contid1.tag. Absent polkit means "not authorized", quietly: most
// hosts running contid in containers-only setups have none. challenge is
// true when polkit would grant it after the user authenticated, and the
// call did not allow it to ask.
func (m *Manager) authorizeTag(ctx context.Context, p *peer, msg *godbus.Message, ci *callerInfo) (challenge bool) {
	if ci.Privileged {
		return false
	}
	// polkit takes the subject's UID as a signed 32-bit number and reads
	// -1 as "look it up" (from the process, now): a UID it cannot be told
	// is not asked about.
	if ci.UID > math.MaxInt32 {
		return false
	}
	conn := p.bus
	if conn == nil {
		conn = m.systemBus()
	}
	if conn == nil {
		return false
	}
	var subject struct {
		Kind    string
		Details map[string]godbus.Variant
	}
	if p.bus != nil {
		// polkit asks dbus-daemon itself who is behind the name.
		subject.Kind = "system-bus-name"
		subject.Details = map[string]godbus.Variant{"name": godbus.MakeVariant(p.sender)}
	} else {
		// The process pinned at connect (identify made sure it is the
		// same one, still running the same program), with the UID the
		// kernel recorded then: polkit decides for that UID. An agent
		// that registered for this process (contidctl's pkttyagent
		// --process) is the one polkit asks.
		subject.Kind = "unix-process"
		subject.Details = map[string]godbus.Variant{
			"pid":        godbus.MakeVariant(ci.PID),
			"start-time": godbus.MakeVariant(ci.Start),
			"uid":        godbus.MakeVariant(int32(ci.UID)),
		}
	}
	flags, timeout := polkitCheck(msg)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var result struct {
		Authorized, Challenge bool
		Details               map[string]string
	}
	obj := conn.Object("org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority")
	err := obj.CallWithContext(ctx, "org.freedesktop.PolicyKit1.Authority.CheckAuthorization", 0,
		subject, client.PolkitActionTag, map[string]string{}, flags, "").Store(&result)
	switch {
	case err != nil && polkitUnavailable(err):
		m.polkitOnce.Do(func() {
			m.log(PrioNotice, "polkit is not available (%v); only UID 0 may tag.", err)
		})
		return false
	case err != nil:
		m.log(PrioInfo, "polkit did not authorize process %d (uid %d) for %s: %v", ci.PID, ci.UID, client.PolkitActionTag, err)
		return false
	case result.Authorized:
		ci.Privileged = true
		return false
	}
	return result.Challenge && flags&polkitAllowUserInteraction == 0
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
		return t, fmt.Errorf("%w: process %d: %v", contid.ErrInvalidArgs, pid, err)
	}
	if st.Threads != 1 {
		return t, fmt.Errorf("%w: process %d has %d threads; tag it before it starts threads", contid.ErrNotFresh, pid, st.Threads)
	}
	kids, err := hasChildren(pid)
	if err != nil {
		return t, fmt.Errorf("%w: process %d: %v", contid.ErrInvalidArgs, pid, err)
	}
	if kids {
		return t, fmt.Errorf("%w: process %d has children; tag it before it forks", contid.ErrNotFresh, pid)
	}
	start, err := startTime(pid)
	if err != nil {
		return t, fmt.Errorf("%w: process %d: %v", contid.ErrInvalidArgs, pid, err)
	}
	cgp, err := cg.OfPID(pid)
	if err != nil {
		return t, fmt.Errorf("%w: process %d: %v", contid.ErrInvalidArgs, pid, err)
	}
	if !pidfdAlive(pidfd) {
		return t, fmt.Errorf("%w: process %d exited", contid.ErrInvalidArgs, pid)
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

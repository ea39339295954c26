package dbus

import (
	"strings"
	"sync"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"
)

// busPeers follows the clients of one system-bus connection by unique
// name: when each name appeared, and, once it called, the credentials
// dbus-daemon recorded when it connected.
//
// dbus-daemon 1.14 hands out no pidfd of a client, only the PID it had at
// connect. A client may exit while a child keeps its connection, and the
// PID may then be given to another process. What rules that out is time:
// a process that started after the connection appeared on the bus cannot
// be the one that opened it. The appearance is seen in NameOwnerChanged,
// which dbus-daemon sends before the new client can send anything, on the
// same socket as that client's calls; observe records it before godbus
// dispatches any later message. A bus that offers ProcessFD (its
// pidfd of the client, taken at connect) pins the process exactly instead.
type busPeers struct {
	mu sync.Mutex
	// since is when contidd started watching: names that were there
	// before have appeared no later than that.
	since uint64
	names map[string]*busPeer
}

// busPeer is one client. seen is in clock ticks since boot, the unit of a
// process's start time in /proc/PID/stat.
type busPeer struct {
	seen uint64
	// uid, once asked (hasUID), is the UID dbus-daemon recorded.
	uid    uint32
	hasUID bool
	// o is filled at the client's first call; o.pidfd is the bus's
	// ProcessFD, or -1 (the PID is opened per call).
	o *origin
}

func newBusPeers() *busPeers {
	return &busPeers{names: map[string]*busPeer{}}
}

// observe sees every message of the connection in godbus's reader, before
// it is dispatched (godbus.WithIncomingInterceptor), so the appearance of
// a name is recorded before any call from it is handled.
func (b *busPeers) observe(msg *godbus.Message) {
	if msg.Type != godbus.TypeSignal {
		return
	}
	sender, _ := msg.Headers[godbus.FieldSender].Value().(string)
	iface, _ := msg.Headers[godbus.FieldInterface].Value().(string)
	member, _ := msg.Headers[godbus.FieldMember].Value().(string)
	if sender != ifaceBus || iface != ifaceBus || member != "NameOwnerChanged" || len(msg.Body) != 3 {
		return
	}
	name, _ := msg.Body[0].(string)
	owner, _ := msg.Body[2].(string)
	if !strings.HasPrefix(name, ":") {
		return
	}
	if owner != "" {
		b.appeared(name)
	} else {
		b.gone(name)
	}
}

// close releases the pidfds held for clients (the connection is gone).
func (b *busPeers) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for name, p := range b.names {
		if p.o != nil {
			p.o.release()
		}
		delete(b.names, name)
	}
}

// watch subscribes conn to NameOwnerChanged and marks the moment from
// which appearances are seen.
func (b *busPeers) watch(conn *godbus.Conn) error {
	if err := conn.AddMatchSignal(godbus.WithMatchSender(ifaceBus), godbus.WithMatchInterface(ifaceBus), godbus.WithMatchMember("NameOwnerChanged")); err != nil {
		return err
	}
	b.mu.Lock()
	b.since = bootTicks()
	b.mu.Unlock()
	return nil
}

func (b *busPeers) appeared(name string) {
	now := bootTicks()
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.names[name]; !ok {
		b.names[name] = &busPeer{seen: now}
	}
}

func (b *busPeers) gone(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.names[name]; p != nil {
		if p.o != nil {
			p.o.release()
		}
		delete(b.names, name)
	}
}

// lookup returns the client's origin if its credentials were fetched
// before, with a duplicate of its pinning pidfd (-1 if none), and the
// latest time its connection can have been opened.
func (b *busPeers) lookup(name string) (o origin, pidfd int, seen uint64, known bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.names[name]
	if p == nil {
		return origin{}, -1, b.since, false
	}
	if p.o == nil {
		return origin{}, -1, p.seen, false
	}
	pidfd = -1
	if p.o.pidfd >= 0 {
		if fd, err := unix.FcntlInt(uintptr(p.o.pidfd), unix.F_DUPFD_CLOEXEC, 0); err == nil {
			pidfd = fd
		}
	}
	return *p.o, pidfd, p.seen, true
}

// remember keeps a client's origin for its later calls; the origin's pidfd
// (if any) now belongs to the tracker, which releases it when the name goes
// (or at once, when a concurrent call remembered the name first).
func (b *busPeers) remember(name string, o *origin) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.entry(name)
	if p.o != nil {
		o.release()
		return
	}
	p.o = o
}

// uid is the client's UID if it was asked before.
func (b *busPeers) uid(name string) (uint32, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.names[name]; p != nil {
		if p.o != nil {
			return p.o.uid, true
		}
		return p.uid, p.hasUID
	}
	return 0, false
}

// setUID remembers the UID dbus-daemon recorded for a client.
func (b *busPeers) setUID(name string, uid uint32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.entry(name)
	p.uid, p.hasUID = uid, true
}

// entry is name's record, made if there is none: a name from before
// contidd watched, or one whose appearance is still on its way. It stays
// until NameOwnerChanged says the name went. b.mu is held.
func (b *busPeers) entry(name string) *busPeer {
	p := b.names[name]
	if p == nil {
		p = &busPeer{seen: b.since}
		b.names[name] = p
	}
	return p
}

// ticksPerSecond is USER_HZ, the unit of start times in /proc/PID/stat;
// it is 100 on every Linux architecture contid supports.
const ticksPerSecond = 100

// bootTicks is the time since boot (CLOCK_BOOTTIME, the clock of process
// start times since Linux 5.5) in clock ticks, rounded down like theirs.
func bootTicks() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return uint64(ts.Sec)*ticksPerSecond + uint64(ts.Nsec)/(1e9/ticksPerSecond)
}

package dbus

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/contid/contid/internal/procstat"
)

// origin is the process that opened a connection, as the kernel (peer to
// peer, p2p.Origin) or dbus-daemon (system bus) recorded it when it
// connected. The UID is the one fact no later exec, setuid program or
// reused PID can change: privilege is decided on it alone. The pidfd pins the connecting
// process itself, so whatever is read about the caller later (its cgroup,
// its container) is read from that process, or not at all.
type origin struct {
	uid uint32
	pid uint32
	// pidfd pins the connecting process: SO_PEERPIDFD, a bus's ProcessFD,
	// or pidfd_open at accept; -1 when it had exited already. The
	// peer-to-peer server owns the pidfd of its connections' origins
	// (p2p.Origin); only a bus client's is released here.
	pidfd int
	// start and image identify what the process was and ran when pinned.
	start uint64
	image procstat.Image
	// changed: when pinned, the process's effective UID was no longer
	// the one it connected with (a setuid exec before the accept).
	changed bool
}

// errExited: the connecting process is gone, so nothing read from its PID
// now would be about it.
var errExited = errors.New("the process that opened this connection has exited since it connected")

// errExeced: the connecting process runs another program than when it
// connected.
var errExeced = errors.New("the process that opened this connection has executed another program since it connected")

// pinned reports whether the connecting process could be pinned.
func (o *origin) pinned() bool { return o.pidfd >= 0 }

func (o *origin) release() {
	if o.pidfd >= 0 {
		unix.Close(o.pidfd)
		o.pidfd = -1
	}
}

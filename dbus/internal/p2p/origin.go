package p2p

import (
	"golang.org/x/sys/unix"

	"github.com/contid/contid/internal/procstat"
)

// Origin is the process that opened a connection, as the kernel recorded
// it at connect and the server pinned it at accept. It is what the server
// tells the dispatcher about the caller; nothing the peer says goes into
// it. The UID is the one fact no later exec, setuid program or reused PID
// can change. The pidfd pins the connecting process itself, so whatever is
// read about the caller later (its cgroup, its container) is read from
// that process, or not at all.
type Origin struct {
	UID uint32 // SO_PEERCRED at connect
	PID uint32
	// Pidfd pins the connecting process: SO_PEERPIDFD, or pidfd_open at
	// accept; -1 when it had exited already, or was found not to be the
	// connector. The connection owns it: a dispatcher that needs it past
	// the call duplicates it.
	Pidfd int
	// Identity is what the process was and ran when pinned (zero when
	// not pinned).
	Identity procstat.Identity
	// Changed: when pinned, the process's effective UID was no longer
	// the one it connected with (a setuid exec before the accept).
	Changed bool
}

// Pin pins the process that connected: pidfd is the kernel's pin if the
// transport gave one (ownership passes to the origin), else -1 and the
// PID is opened here. The facts read from /proc are confirmed to belong to
// the pinned process by its pidfd still being alive afterwards. A process
// that is gone already gives an origin that is not pinned, whose every
// request the dispatcher refuses.
func Pin(uid, pid uint32, pidfd int) *Origin {
	o := &Origin{UID: uid, PID: pid, Pidfd: pidfd}
	if o.Pidfd < 0 {
		fd, err := unix.PidfdOpen(int(pid), 0)
		if err != nil {
			return o
		}
		o.Pidfd = fd
	}
	id, err := procstat.ReadIdentity(pid)
	euid, uerr := procstat.EffectiveUID(pid)
	// The effective UID the kernel recorded at connect is uid; a process
	// that has another now changed its credentials since, by a setuid
	// exec before contidd accepted: held to its new program, it would
	// reach polkit as that program's process. Its requests are refused.
	if err != nil || uerr != nil || euid != uid || !procstat.PidfdAlive(o.Pidfd) {
		o.Changed = err == nil && uerr == nil && euid != uid
		o.Release()
		return o
	}
	o.Identity = id
	return o
}

// Pinned reports whether the connecting process could be pinned.
func (o *Origin) Pinned() bool { return o.Pidfd >= 0 }

// Release closes the pidfd; the server does so when the connection's last
// call has ended.
func (o *Origin) Release() {
	if o.Pidfd >= 0 {
		unix.Close(o.Pidfd)
		o.Pidfd = -1
	}
}

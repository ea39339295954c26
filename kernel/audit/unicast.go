package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	libaudit "github.com/elastic/go-libaudit/v2"
	"github.com/elastic/go-libaudit/v2/auparse"
	"golang.org/x/sys/unix"

	"github.com/contid/contid/internal/procfd"
)

// registerTimeout bounds the wait for the kernel's answer to AUDIT_SET.
// Registering first tells the current daemon it is being replaced
// (AUDIT_REPLACE), and that send blocks while the daemon's socket is
// full, so a daemon that stopped reading without closing its socket
// would hold us forever.
const registerTimeout = 5 * time.Second

// openUnicast sets r.mc to the unicast socket: a duplicate of inherited
// when that is still the kernel's audit channel, else a new socket that
// NewReader then registers.
func (r *Reader) openUnicast(inherited *os.File) error {
	st, err := r.ctl.Status()
	if err != nil {
		return err
	}
	holder := int(st.PID)
	if inherited != nil {
		c, err := adoptSocket(inherited)
		if err != nil {
			return fmt.Errorf("inherited audit socket: %w", err)
		}
		r.mc = c
		// The kernel still names the PID that registered the socket:
		// an earlier contidd, now gone, whose socket systemd kept; that
		// PID may even belong to another process by now. No other
		// daemon can have taken the channel over meanwhile: the kernel
		// refuses to replace a daemon whose socket is alive, and this
		// one was alive all along. The kernel delivers to the socket,
		// not the PID, so there is nothing to redo. With no daemon
		// registered (the kernel dropped the channel), the socket is
		// registered anew.
		r.resumed = holder != 0
		return nil
	}
	if holder != 0 && holder != os.Getpid() && holdsAuditSocket(holder) {
		return fmt.Errorf("%w (PID %d)", ErrDaemonRegistered, holder)
	}
	r.mc, err = dial(0)
	if err != nil {
		return fmt.Errorf("audit unicast socket: %w", err)
	}
	return nil
}

// adoptSocket duplicates f after checking it is an audit netlink socket.
func adoptSocket(f *os.File) (*conn, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup: %w", err)
	}
	domain, derr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	proto, perr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if derr != nil || perr != nil || domain != unix.AF_NETLINK || proto != unix.NETLINK_AUDIT {
		unix.Close(fd)
		return nil, fmt.Errorf("descriptor %q is not an audit netlink socket", f.Name())
	}
	sa, err := unix.Getsockname(fd)
	nl, ok := sa.(*unix.SockaddrNetlink)
	if err != nil || !ok {
		unix.Close(fd)
		return nil, fmt.Errorf("audit socket address: %v", err)
	}
	return &conn{fd: fd, port: nl.Pid}, nil
}

// register makes r.mc the kernel's audit channel. go-libaudit's SetPID
// sends the request; its own wait for the answer would throw away any
// record that arrives first, so the answer is read here and records
// before it are kept for Run.
func (r *Reader) register() error {
	unicast := &libaudit.AuditClient{Netlink: r.mc}
	if err := unicast.SetPID(libaudit.NoWait); err != nil {
		return fmt.Errorf("register as the audit daemon: %w", err)
	}
	seq := r.mc.seq.Load()
	buf := make([]byte, unix.NLMSG_HDRLEN+libaudit.AuditMessageMaxLength)
	deadline := time.Now().Add(registerTimeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("register as the audit daemon: no answer from the kernel in %v", registerTimeout)
		}
		n, err := r.mc.recv(buf, left)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, ErrNotFromKernel):
			continue
		case err != nil:
			return fmt.Errorf("register as the audit daemon: %w", err)
		case n < unix.NLMSG_HDRLEN:
			continue
		}
		typ := binary.NativeEndian.Uint16(buf[4:6])
		if typ != unix.NLMSG_ERROR || binary.NativeEndian.Uint32(buf[8:12]) != seq {
			r.early = append(r.early, append([]byte(nil), buf[:n]...))
			continue
		}
		if err := libaudit.ParseNetlinkError(buf[unix.NLMSG_HDRLEN:n]); err != nil {
			if errors.Is(err, syscall.EEXIST) {
				return fmt.Errorf("%w: %v", ErrDaemonRegistered, err)
			}
			return fmt.Errorf("register as the audit daemon: %w", err)
		}
		return nil
	}
}

// unregister gives the channel back (AUDIT_SET of PID 0), so the kernel
// stops queueing for a socket about to close. Only the registered
// process may do this; after a resume the kernel names the earlier PID
// and refuses, and closing the socket ends the channel instead.
func (r *Reader) unregister() error {
	st, err := r.ctl.Status()
	if err != nil || int(st.PID) != os.Getpid() {
		return nil
	}
	if err := r.ctl.SetStatus(libaudit.AuditStatus{Mask: libaudit.AuditStatusPID}); err != nil {
		return fmt.Errorf("unregister as the audit daemon: %w", err)
	}
	return nil
}

// drainLimit bounds how long a stopping reader keeps reading what the
// kernel queued.
const drainLimit = 2 * time.Second

// readQueued is a stopping unicast reader's last read.
//
// With no successor, it gives the channel back, then reads what the
// kernel had already queued on the socket, which would otherwise go with
// it.
//
// With its socket in systemd's store for a successor, it keeps the
// channel and reads until the socket is empty and no event it began is
// incomplete, so a successor starts at an event's first record. A stop,
// unlike a restart, closes the kept socket with whatever is in it, and
// contidd cannot tell the two apart; read now, those records are written
// either way. Under a flood the socket never empties: after drainLimit it
// only finishes the events already begun.
func (r *Reader) readQueued(buf []byte) {
	if r.cfg.Source != Unicast {
		return
	}
	keep := r.handedOver.Load()
	if !keep {
		if err := r.unregister(); err != nil {
			return
		}
	}
	finishing := false
	deadline := time.Now().Add(drainLimit)
	for {
		if time.Now().After(deadline) {
			if finishing || !keep {
				return
			}
			finishing, deadline = true, time.Now().Add(drainLimit)
		}
		if finishing && len(r.open) == 0 {
			return
		}
		wait := time.Duration(0)
		if keep && len(r.open) > 0 {
			// The rest of an event may still be on its way.
			wait = 10 * time.Millisecond
		}
		b, pos, err := r.receive(buf, wait)
		switch {
		case err == nil:
			r.take(b, pos)
		case errors.Is(err, os.ErrDeadlineExceeded):
			if !keep || len(r.open) == 0 {
				return
			}
		case errors.Is(err, ErrNotFromKernel):
		default:
			return
		}
	}
}

// trackOpen keeps Reader.open.
func (r *Reader) trackOpen(typ auparse.AuditMessageType, serial uint32) {
	if r.cfg.Source != Unicast {
		return
	}
	switch typ {
	case auparse.AUDIT_SYSCALL:
		if r.open == nil {
			r.open = make(map[uint32]time.Time)
		}
		r.open[serial] = time.Now()
	case auparse.AUDIT_EOE:
		delete(r.open, serial)
	}
}

// pruneOpen forgets events whose end never came, as the reassembler
// does.
func (r *Reader) pruneOpen(now time.Time) {
	for serial, began := range r.open {
		if now.Sub(began) > r.cfg.ReassemblyTimeout {
			delete(r.open, serial)
		}
	}
}

// Socket returns a duplicate of the unicast socket, for systemd's file
// descriptor store.
func (r *Reader) Socket() (*os.File, error) {
	if r.cfg.Source != Unicast {
		return nil, errors.New("audit reader: only the unicast socket is kept")
	}
	fd, err := unix.FcntlInt(uintptr(r.mc.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup the audit socket: %w", err)
	}
	return os.NewFile(uintptr(fd), "audit-unicast"), nil
}

// KeepRegistered makes Close leave the kernel's audit channel in place,
// once a copy of the socket is safe in systemd's store: the kernel keeps
// queueing to it while no contidd runs, and the next one reads on
// (Config.Inherited).
func (r *Reader) KeepRegistered() { r.handedOver.Store(true) }

// isControlMessage: netlink acknowledgements and AUDIT_REPLACE (a new
// daemon asking whether we are alive) come on the unicast socket along
// with the records; they are not records.
func isControlMessage(typ auparse.AuditMessageType) bool {
	return typ < unix.NLMSG_MIN_TYPE || typ == auparse.AUDIT_REPLACE
}

// holdsAuditSocket says whether pid may still be the audit daemon the
// kernel names: a live process with an audit netlink socket open. The
// kernel keeps naming a daemon that died until it next fails to deliver
// to it, and PIDs are reused within seconds where pid_max is small (2,048
// on some hosts), so "the PID is alive" would turn a stale name into a
// daemon that does not exist. Where the sockets cannot be read, a live
// process counts as the daemon: the kernel, not this guess, has the last
// word when contidd registers.
func holdsAuditSocket(pid int) bool {
	if err := unix.Kill(pid, 0); err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	audit, err := auditSocketInodes()
	if err != nil {
		return true
	}
	held, err := procfd.HoldsSocket(pid, func(inode uint64) bool { return audit[inode] })
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	return held || err != nil
}

// auditSocketInodes lists the inodes of the audit netlink sockets open in
// this network namespace, from /proc/net/netlink (its Eth column is the
// netlink protocol, its last column the inode).
func auditSocketInodes() (map[uint64]bool, error) {
	b, err := os.ReadFile("/proc/net/netlink")
	if err != nil {
		return nil, err
	}
	inodes := map[uint64]bool{}
	lines := strings.Split(string(b), "\n")
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) >= 10 && f[1] == strconv.Itoa(unix.NETLINK_AUDIT) {
			if inode, err := strconv.ParseUint(f[len(f)-1], 10, 64); err == nil {
				inodes[inode] = true
			}
		}
	}
	return inodes, nil
}

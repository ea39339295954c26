package p2p

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/contid/contid/internal/procfd"
	"github.com/contid/contid/internal/procstat"
)

// Without SO_PEERPIDFD (before Linux 6.5) the connecting process is known
// only by the PID the kernel recorded at connect, and contidd opens it at
// accept. A connection can wait in the listen backlog (contidd restarting
// behind its socket unit), and in that time its connector can exit and
// its PID be taken. holdsPeer closes that window: the process contidd
// pinned must hold the client end of this very connection. Another
// process that merely has the PID does not.
//
// The client end is found with the kernel's unix sock_diag interface;
// no library in the module graph speaks it (golang.org/x/sys has only
// the netlink family number and the generic netlink parser), so the few
// structures are written here.

const (
	// From linux/unix_diag.h.
	udiagShowPeer = 0x4
	unixDiagPeer  = 2
	diagReqLen    = 24 // struct unix_diag_req
	diagMsgLen    = 16 // struct unix_diag_msg
)

var errNotPeer = errors.New("the process with the connecting PID does not hold this connection: it is not the one that connected")

// peerInode returns the inode of the socket at the other end of the
// connected unix socket fd.
func peerInode(fd int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("stat socket: %w", err)
	}
	nl, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, fmt.Errorf("sock_diag: %w", err)
	}
	defer unix.Close(nl)
	req := make([]byte, unix.NLMSG_HDRLEN+diagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], 1)
	r := req[unix.NLMSG_HDRLEN:]
	r[0] = unix.AF_UNIX
	ne.PutUint32(r[4:], ^uint32(0)) // every state
	ne.PutUint32(r[8:], uint32(st.Ino))
	ne.PutUint32(r[12:], udiagShowPeer)
	ne.PutUint32(r[16:], ^uint32(0)) // no cookie
	ne.PutUint32(r[20:], ^uint32(0))
	if err := unix.Sendto(nl, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("sock_diag request: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(nl, buf, 0)
	if err != nil {
		return 0, fmt.Errorf("sock_diag reply: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return 0, fmt.Errorf("sock_diag reply: %w", err)
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			if len(m.Data) >= 4 {
				if errno := int32(ne.Uint32(m.Data)); errno != 0 {
					return 0, fmt.Errorf("sock_diag: %w", unix.Errno(-errno))
				}
			}
		case unix.SOCK_DIAG_BY_FAMILY:
			if len(m.Data) < diagMsgLen {
				continue
			}
			attrs := m.Data[diagMsgLen:]
			for len(attrs) >= unix.SizeofRtAttr {
				alen, atype := int(ne.Uint16(attrs[0:])), ne.Uint16(attrs[2:])
				if alen < unix.SizeofRtAttr || alen > len(attrs) {
					break
				}
				if atype == unixDiagPeer && alen >= unix.SizeofRtAttr+4 {
					return uint64(ne.Uint32(attrs[unix.SizeofRtAttr:])), nil
				}
				attrs = attrs[min((alen+3)&^3, len(attrs)):]
			}
		}
	}
	return 0, errors.New("sock_diag: no peer for this socket")
}

// holdsPeer tells whether process pid has socket inode peer among its
// descriptors. The caller has pid pinned with a pidfd, so the PID cannot
// change hands while its descriptors are read.
func holdsPeer(pid uint32, peer uint64) (bool, error) {
	held, err := procfd.HoldsSocket(int(pid), func(inode uint64) bool { return inode == peer })
	if err != nil {
		return false, fmt.Errorf("%w: %v", procstat.ErrGone, err)
	}
	return held, nil
}

package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	libaudit "github.com/elastic/go-libaudit/v2"
	"golang.org/x/sys/unix"
)

// ErrNotFromKernel: a datagram on an audit socket came from a user-space
// port. Only the kernel may speak to us there; anything else is an
// injection attempt (root with CAP_NET_ADMIN can send to the multicast
// group) and is dropped.
var ErrNotFromKernel = errors.New("audit netlink message not sent by the kernel")

// conn is an audit netlink socket owned by contid rather than go-libaudit,
// because we need its file descriptor: to raise the receive buffer, and to
// wait for data with a timeout so a reader can notice it is being closed.
// (Go's poller does not deliver readiness for netlink audit sockets here,
// so reads poll(2) themselves.) It satisfies libaudit.NetlinkSendReceiver,
// so go-libaudit's AuditClient can drive control requests over it.
//
// A conn is not safe for concurrent use; Close must not race a read.
type conn struct {
	fd   int
	port uint32
	seq  atomic.Uint32
	// buf serves Receive (the libaudit interface) only.
	buf []byte
}

var _ libaudit.NetlinkSendReceiver = (*conn)(nil)

// dial opens a NETLINK_AUDIT socket bound to the given multicast groups
// (0 for a unicast control socket).
func dial(groups uint32) (*conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		return nil, fmt.Errorf("audit netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind audit netlink (groups %#x): %w", groups, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("audit netlink getsockname: %w", err)
	}
	nl, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		unix.Close(fd)
		return nil, fmt.Errorf("audit netlink: unexpected local address %T", sa)
	}
	return &conn{fd: fd, port: nl.Pid}, nil
}

// setReceiveBuffer asks for size bytes, first with SO_RCVBUFFORCE (which
// ignores net.core.rmem_max but needs CAP_NET_ADMIN), then SO_RCVBUF. It
// returns what getsockopt reports (the kernel doubles the request for its
// bookkeeping).
func (c *conn) setReceiveBuffer(size int) (int, error) {
	setErr := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	if setErr != nil {
		setErr = unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size)
	}
	got, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return 0, fmt.Errorf("read audit netlink receive buffer: %w", err)
	}
	if setErr != nil {
		return got, fmt.Errorf("raise audit netlink receive buffer to %d: %w", size, setErr)
	}
	return got, nil
}

// recv waits up to timeout for one datagram and reads it into buf without
// allocating. It returns os.ErrDeadlineExceeded when nothing came, and
// ENOBUFS when the kernel dropped multicast messages because the buffer
// was full. A datagram already queued is read at once: under a flood the
// poll(2) would only double the system calls.
func (c *conn) recv(buf []byte, timeout time.Duration) (int, error) {
	n, err := c.recvNow(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) || timeout <= 0 {
		return n, err
	}
	fds := [1]unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds[:], int(timeout/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("poll audit netlink: %w", err)
		}
		if n == 0 {
			return 0, os.ErrDeadlineExceeded
		}
		break
	}
	return c.recvNow(buf)
}

// recvNow reads one queued datagram, or returns os.ErrDeadlineExceeded.
func (c *conn) recvNow(buf []byte) (int, error) {
	var from unix.RawSockaddrNetlink
	fromLen := uint32(unix.SizeofSockaddrNetlink)
	for {
		r, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(c.fd),
			uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), unix.MSG_DONTWAIT,
			uintptr(unsafe.Pointer(&from)), uintptr(unsafe.Pointer(&fromLen)))
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, os.ErrDeadlineExceeded
		default:
			return 0, errno
		}
		if from.Pid != 0 {
			return int(r), ErrNotFromKernel
		}
		return int(r), nil
	}
}

// Send implements libaudit.NetlinkSender.
func (c *conn) Send(msg syscall.NetlinkMessage) (uint32, error) {
	if msg.Header.Pid == 0 {
		msg.Header.Pid = c.port
	}
	msg.Header.Seq = c.seq.Add(1)
	msg.Header.Len = uint32(unix.NLMSG_HDRLEN + len(msg.Data))
	b := make([]byte, msg.Header.Len)
	binary.NativeEndian.PutUint32(b[0:4], msg.Header.Len)
	binary.NativeEndian.PutUint16(b[4:6], msg.Header.Type)
	binary.NativeEndian.PutUint16(b[6:8], msg.Header.Flags)
	binary.NativeEndian.PutUint32(b[8:12], msg.Header.Seq)
	binary.NativeEndian.PutUint32(b[12:16], msg.Header.Pid)
	copy(b[unix.NLMSG_HDRLEN:], msg.Data)
	for {
		err := unix.Sendto(c.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err == unix.EINTR {
			continue
		}
		return msg.Header.Seq, err
	}
}

// Receive implements libaudit.NetlinkReceiver for go-libaudit's control
// requests (AUDIT_GET, rule changes). Its blocking mode waits at most a
// second so a missing reply cannot hang a caller.
func (c *conn) Receive(nonBlocking bool, p libaudit.NetlinkParser) ([]syscall.NetlinkMessage, error) {
	if c.buf == nil {
		c.buf = make([]byte, unix.NLMSG_HDRLEN+libaudit.AuditMessageMaxLength)
	}
	timeout := time.Second
	if nonBlocking {
		timeout = 0
	}
	n, err := c.recv(c.buf, timeout)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, syscall.EAGAIN
	}
	if err != nil {
		return nil, err
	}
	if n < unix.NLMSG_HDRLEN {
		return nil, fmt.Errorf("short audit netlink message (%d bytes)", n)
	}
	return p(c.buf[:n])
}

// Close implements libaudit.NetlinkSendReceiver.
func (c *conn) Close() error { return unix.Close(c.fd) }

package journal

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// DefaultSocket is journald's native protocol socket.
const DefaultSocket = "/run/systemd/journal/socket"

// ErrNoJournal: nothing listens on the socket (journald is not running).
var ErrNoJournal = errors.New("journald is not reachable")

// Sender is what builds entries and what writes them agree on; the writer
// implements it, unit tests fake it.
type Sender interface {
	Send(e *Entry) error
}

// Writer sends entries to journald. It is safe for concurrent use.
type Writer struct {
	path string

	mu sync.Mutex
	fd int
	// memfds counts entries that went through the memfd path, for tests
	// and for the curious.
	memfds uint64
}

var _ Sender = (*Writer)(nil)

// NewWriter opens a datagram socket toward path ("" means DefaultSocket).
// It does not require journald to be up yet: the socket connects on first
// use and reconnects after journald restarts.
func NewWriter(path string) (*Writer, error) {
	if path == "" {
		path = DefaultSocket
	}
	if len(path) >= len(unix.RawSockaddrUnix{}.Path) {
		return nil, fmt.Errorf("journal socket path %q is too long", path)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("journal socket: %w", err)
	}
	// A large send buffer lets big entries go as one datagram; what does
	// not fit goes through a memfd.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<20)
	return &Writer{path: path, fd: fd}, nil
}

// Path is the socket the writer sends to.
func (w *Writer) Path() string { return w.path }

// MemfdCount is how many entries went through the memfd path.
func (w *Writer) MemfdCount() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.memfds
}

// Close releases the socket.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd < 0 {
		return nil
	}
	err := unix.Close(w.fd)
	w.fd = -1
	return err
}

// Send writes one entry. The socket is connected once, so the hot path is
// a plain write; a datagram too large for the socket goes through a
// sealed memfd passed with SCM_RIGHTS, which journald accepts up to its
// entry size limit.
func (w *Writer) Send(e *Entry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd < 0 {
		return fmt.Errorf("journal writer closed: %w", unix.EBADF)
	}
	err := w.write(e.buf)
	if errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.EDESTADDRREQ) {
		// journald restarted (its socket is new) or we never
		// connected: connect and try once more.
		if cerr := w.connect(); cerr != nil {
			return cerr
		}
		err = w.write(e.buf)
	}
	if errors.Is(err, unix.EMSGSIZE) || errors.Is(err, unix.ENOBUFS) {
		if err = w.sendMemfd(e.buf); err == nil {
			w.memfds++
		}
	}
	if err != nil {
		return fmt.Errorf("journal send to %s: %w", w.path, err)
	}
	return nil
}

func (w *Writer) connect() error {
	err := unix.Connect(w.fd, &unix.SockaddrUnix{Name: w.path})
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("%w: %s: %w", ErrNoJournal, w.path, err)
	}
	if err != nil {
		return fmt.Errorf("journal connect %s: %w", w.path, err)
	}
	return nil
}

func (w *Writer) write(b []byte) error {
	for {
		_, err := unix.Write(w.fd, b)
		if err == unix.EINTR {
			continue
		}
		return err
	}
}

// sendMemfd puts the entry in a sealed memfd and passes the descriptor.
// journald refuses unsealed memfds: a sender could otherwise change the
// entry while it is being read.
func (w *Writer) sendMemfd(b []byte) error {
	fd, err := unix.MemfdCreate("contid-journal-entry", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	defer unix.Close(fd)
	for off := 0; off < len(b); {
		n, err := unix.Write(fd, b[off:])
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return fmt.Errorf("memfd write: %w", err)
		}
		off += n
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS,
		unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		return fmt.Errorf("memfd seal: %w", err)
	}
	if err := unix.Sendmsg(w.fd, nil, unix.UnixRights(fd), nil, 0); err != nil {
		return fmt.Errorf("send memfd: %w", err)
	}
	return nil
}

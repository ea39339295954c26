package dbus

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"
)

// Limits that keep one misbehaving peer from exhausting contidd.
const (
	maxP2PConns       = 1024 // for all non-root peers together
	maxP2PConnsPerUID = 32   // so one user cannot lock the others out
	maxCallsPerConn   = 32
	maxMessageSize    = 16 << 20
	maxAuthLine       = 1024
	maxAuthLines      = 32
	authTimeout       = 30 * time.Second
	serverUniqueName  = ":1.0"
)

// ListenP2P creates the peer-to-peer socket at path (used when contidd is
// not socket-activated). Anyone may connect, since reads are public;
// contidd authorizes each tag request itself.
func ListenP2P(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	// A socket left behind by a crashed contidd would make bind fail.
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return ln, nil
}

// p2pServer broadcasts signals to every connected peer.
type p2pServer struct {
	m    *Manager
	guid string

	mu     sync.Mutex
	conns  map[*p2pConn]struct{}
	nextID uint64
}

// ServeP2P answers D-Bus peer-to-peer connections on ln until ctx ends.
func (m *Manager) ServeP2P(ctx context.Context, ln *net.UnixListener) error {
	var g [16]byte
	if _, err := rand.Read(g[:]); err != nil {
		return err
	}
	s := &p2pServer{m: m, guid: hex.EncodeToString(g[:]), conns: map[*p2pConn]struct{}{}}
	m.addEmitter(s)
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		uc, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				s.drain(shutdownGrace)
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		c := &p2pConn{srv: s, conn: uc, pidfd: -1, serial: 1}
		if err := c.peerCredentials(); err != nil {
			m.log(PrioWarning, "Dropped a peer-to-peer connection: %v", err)
			c.close()
			continue
		}
		if !s.admit(c) {
			c.close()
			continue
		}
		go c.serve()
	}
}

// shutdownGrace is how long a stopping contidd lets accepted connections
// finish. A client accepted just before SIGTERM (systemctl restart) is
// answered rather than cut off mid-call; clients that arrive later wait
// in the socket, which systemd holds, for the next contidd.
const shutdownGrace = 3 * time.Second

// drain waits up to grace for the open connections to end, then closes
// the rest (long-lived clients such as signal watchers).
func (s *p2pServer) drain(grace time.Duration) {
	deadline := time.Now().Add(grace)
	for {
		s.mu.Lock()
		open := len(s.conns)
		if open == 0 || time.Now().After(deadline) {
			for c := range s.conns {
				c.conn.Close()
			}
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
}

// admit registers c unless its user already holds too many connections;
// root (the orchestrators that tag) is never locked out by others.
func (s *p2pServer) admit(c *p2pConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.cred.Uid != 0 {
		total, mine := 0, 0
		for o := range s.conns {
			if o.cred.Uid != 0 {
				total++
			}
			if o.cred.Uid == c.cred.Uid {
				mine++
			}
		}
		if total >= maxP2PConns || mine >= maxP2PConnsPerUID {
			s.m.log(PrioWarning, "Refused a peer-to-peer connection of UID %d: too many open (%d of this user, %d in all).", c.cred.Uid, mine, total)
			return false
		}
	}
	s.nextID++
	c.unique = ":1." + strconv.FormatUint(s.nextID, 10)
	s.conns[c] = struct{}{}
	return true
}

func (s *p2pServer) emit(path godbus.ObjectPath, iface, member string, body ...any) {
	msg := &godbus.Message{Type: godbus.TypeSignal, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:      godbus.MakeVariant(path),
		godbus.FieldInterface: godbus.MakeVariant(iface),
		godbus.FieldMember:    godbus.MakeVariant(member),
		godbus.FieldSender:    godbus.MakeVariant(BusName),
	}, Body: body}
	if len(body) > 0 {
		msg.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(body...))
	}
	s.mu.Lock()
	conns := make([]*p2pConn, 0, len(s.conns))
	for c := range s.conns {
		if c.ready() {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.send(msg)
	}
}

// p2pConn is one peer. Its credentials come from the socket, fixed at
// connect time, never from anything the peer says.
type p2pConn struct {
	srv    *p2pServer
	conn   *net.UnixConn
	cred   *unix.Ucred
	pidfd  int
	unique string

	wmu     sync.Mutex
	serial  uint32
	unixFDs bool
	// answered: a reply went out. Only then may signals follow: sd-bus
	// (busctl, systemd tools) fails the connection with EIO if anything but
	// the reply to its Hello arrives first.
	answered bool

	// read state
	buf []byte
	fds []int
}

func (c *p2pConn) ready() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.answered
}

func (c *p2pConn) serve() {
	m := c.srv.m
	defer func() {
		c.srv.mu.Lock()
		delete(c.srv.conns, c)
		c.srv.mu.Unlock()
		c.close()
	}()
	_ = c.conn.SetDeadline(time.Now().Add(authTimeout))
	fds, err := c.authenticate()
	if err != nil {
		m.log(PrioDebug, "Peer-to-peer authentication of process %d failed: %v", c.cred.Pid, err)
		return
	}
	_ = c.conn.SetDeadline(time.Time{})
	c.wmu.Lock()
	c.unixFDs = fds
	c.wmu.Unlock()

	sem := make(chan struct{}, maxCallsPerConn)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		msg, fds, err := c.readMessage()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				m.log(PrioDebug, "Peer-to-peer connection of process %d: %v", c.cred.Pid, err)
			}
			return
		}
		if msg.Type != godbus.TypeMethodCall {
			closeAll(fds)
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done(); closeAll(fds) }()
			c.handle(msg)
		}()
	}
}

// close releases the socket and every descriptor the connection holds.
func (c *p2pConn) close() {
	c.conn.Close()
	if c.pidfd >= 0 {
		unix.Close(c.pidfd)
		c.pidfd = -1
	}
	closeAll(c.fds)
	c.fds = nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func (c *p2pConn) peerCredentials() error {
	raw, err := c.conn.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	err = raw.Control(func(fd uintptr) {
		c.cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if cerr != nil {
			return
		}
		// SO_PEERPIDFD (Linux 6.5) pins the peer race-free; older kernels
		// fall back to pidfd_open on the PID per request.
		if pfd, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
			c.pidfd = pfd
		}
	})
	if err != nil {
		return err
	}
	return cerr
}

// authenticate is the server half of the D-Bus SASL exchange, offering
// only EXTERNAL: the identity is the socket's SO_PEERCRED, and a peer
// claiming another UID is rejected. It reads byte by byte so that nothing
// of the first message (which may arrive in the same packet as BEGIN) is
// consumed here. It reports whether unix fd passing was agreed.
func (c *p2pConn) authenticate() (bool, error) {
	var nul [1]byte
	if _, err := io.ReadFull(c.conn, nul[:]); err != nil {
		return false, err
	}
	if nul[0] != 0 {
		return false, errors.New("protocol: missing leading NUL byte")
	}
	authed, fds := false, false
	write := func(s string) error { _, err := c.conn.Write([]byte(s + "\r\n")); return err }
	for i := 0; i < maxAuthLines; i++ {
		line, err := c.readAuthLine()
		if err != nil {
			return false, err
		}
		cmd, arg, _ := strings.Cut(line, " ")
		switch {
		case cmd == "AUTH" && !authed:
			mech, data, _ := strings.Cut(arg, " ")
			if mech != "EXTERNAL" {
				err = write("REJECTED EXTERNAL")
				break
			}
			authed, err = c.authExternal(data, write)
		case cmd == "NEGOTIATE_UNIX_FD" && authed:
			fds = true
			err = write("AGREE_UNIX_FD")
		case cmd == "BEGIN" && authed:
			return fds, nil
		case cmd == "BEGIN":
			return false, errors.New("protocol: BEGIN before authentication")
		case cmd == "CANCEL" || cmd == "ERROR":
			authed = false
			err = write("REJECTED EXTERNAL")
		default:
			err = write("ERROR \"unknown command\"")
		}
		if err != nil {
			return false, err
		}
	}
	return false, errors.New("protocol: too many authentication lines")
}

// authExternal finishes an AUTH EXTERNAL, asking for the identity with an
// empty DATA challenge when the client sent none (sd-bus does that).
func (c *p2pConn) authExternal(data string, write func(string) error) (bool, error) {
	if data == "" {
		if err := write("DATA"); err != nil {
			return false, err
		}
		l, err := c.readAuthLine()
		if err != nil {
			return false, err
		}
		d, ok := strings.CutPrefix(l, "DATA")
		if !ok {
			return false, write("REJECTED EXTERNAL")
		}
		data = strings.TrimSpace(d)
	}
	if !c.externalOK(data) {
		return false, write("REJECTED EXTERNAL")
	}
	return true, write("OK " + c.srv.guid)
}

// externalOK checks EXTERNAL's optional identity: the hex-encoded decimal
// UID, which must match the socket credentials.
func (c *p2pConn) externalOK(data string) bool {
	if data == "" {
		return true
	}
	b, err := hex.DecodeString(data)
	if err != nil {
		return false
	}
	uid, err := strconv.ParseUint(string(b), 10, 32)
	return err == nil && uint32(uid) == c.cred.Uid
}

func (c *p2pConn) readAuthLine() (string, error) {
	var line []byte
	var b [1]byte
	for len(line) < maxAuthLine {
		if _, err := io.ReadFull(c.conn, b[:]); err != nil {
			return "", err
		}
		line = append(line, b[0])
		if bytes.HasSuffix(line, []byte("\r\n")) {
			return string(line[:len(line)-2]), nil
		}
	}
	return "", errors.New("protocol: authentication line too long")
}

// fill reads until n bytes are buffered, collecting passed descriptors.
func (c *p2pConn) fill(n int) error {
	tmp := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(253*4))
	for len(c.buf) < n {
		want := n - len(c.buf)
		if want > len(tmp) {
			want = len(tmp)
		}
		k, oobn, flags, _, err := c.conn.ReadMsgUnix(tmp[:want], oob)
		if oobn > 0 {
			scms, perr := unix.ParseSocketControlMessage(oob[:oobn])
			if perr == nil {
				for i := range scms {
					if fds, err := unix.ParseUnixRights(&scms[i]); err == nil {
						c.fds = append(c.fds, fds...)
					}
				}
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return errors.New("protocol: too many file descriptors")
		}
		if k > 0 {
			c.buf = append(c.buf, tmp[:k]...)
		}
		if err != nil {
			return err
		}
		if k == 0 {
			return io.EOF
		}
	}
	return nil
}

// readMessage frames one message by its fixed header, then lets godbus
// decode it with the descriptors that came with it.
func (c *p2pConn) readMessage() (*godbus.Message, []int, error) {
	if err := c.fill(16); err != nil {
		return nil, nil, err
	}
	var order binary.ByteOrder
	switch c.buf[0] {
	case 'l':
		order = binary.LittleEndian
	case 'B':
		order = binary.BigEndian
	default:
		return nil, nil, errors.New("protocol: bad byte order mark")
	}
	bodyLen := uint64(order.Uint32(c.buf[4:8]))
	fieldsLen := uint64(order.Uint32(c.buf[12:16]))
	total := 16 + (fieldsLen+7)&^7 + bodyLen
	if total > maxMessageSize {
		return nil, nil, fmt.Errorf("protocol: message of %d bytes exceeds %d", total, maxMessageSize)
	}
	if err := c.fill(int(total)); err != nil {
		return nil, nil, err
	}
	raw := c.buf[:total]
	fds := c.fds
	msg, err := godbus.DecodeMessageWithFDs(bytes.NewReader(raw), fds)
	c.buf = append([]byte(nil), c.buf[total:]...)
	if err != nil {
		c.fds = nil
		closeAll(fds)
		return nil, nil, fmt.Errorf("protocol: %w", err)
	}
	n, _ := msg.Headers[godbus.FieldUnixFDs].Value().(uint32)
	if int(n) > len(fds) {
		c.fds = nil
		closeAll(fds)
		return nil, nil, errors.New("protocol: message announces more descriptors than it carries")
	}
	c.fds = append([]int(nil), fds[n:]...)
	return msg, fds[:n], nil
}

// send writes one message with the next serial. godbus cannot set a
// serial on a message it did not send itself, so it is patched into the
// encoded header (byte 8, in the message's byte order).
func (c *p2pConn) send(msg *godbus.Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var buf bytes.Buffer
	fds, err := msg.EncodeToWithFDs(&buf, binary.LittleEndian)
	if err != nil {
		return err
	}
	if len(fds) > 0 {
		return errors.New("contidd never sends descriptors")
	}
	c.serial++
	if c.serial == 0 {
		c.serial = 1
	}
	b := buf.Bytes()
	binary.LittleEndian.PutUint32(b[8:12], c.serial)
	if _, err = c.conn.Write(b); err != nil {
		return err
	}
	if msg.Type == godbus.TypeMethodReply || msg.Type == godbus.TypeError {
		c.answered = true
	}
	return nil
}

func (c *p2pConn) handle(msg *godbus.Message) {
	dest, _ := msg.Headers[godbus.FieldDestination].Value().(string)
	iface, _ := msg.Headers[godbus.FieldInterface].Value().(string)
	path, _ := msg.Headers[godbus.FieldPath].Value().(godbus.ObjectPath)
	member, _ := msg.Headers[godbus.FieldMember].Value().(string)

	var body []any
	var derr *godbus.Error
	sender := BusName
	switch {
	case dest == ifaceBus || (dest == "" && path == "/org/freedesktop/DBus" && iface == ifaceBus):
		sender = ifaceBus
		body, derr = c.busMethod(member, msg)
	case iface == ifacePeer && member == "Ping":
	case iface == ifacePeer && member == "GetMachineId":
		body = []any{machineID()}
	default:
		body, derr = c.srv.m.dispatch(&peer{cred: c.cred, pidfd: c.pidfd}, msg)
	}
	if msg.Flags&godbus.FlagNoReplyExpected != 0 {
		return
	}
	reply := &godbus.Message{Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldReplySerial: godbus.MakeVariant(msg.Serial()),
		godbus.FieldDestination: godbus.MakeVariant(c.unique),
		godbus.FieldSender:      godbus.MakeVariant(sender),
	}}
	if derr != nil {
		reply.Type = godbus.TypeError
		reply.Headers[godbus.FieldErrorName] = godbus.MakeVariant(derr.Name)
		body = derr.Body
	} else {
		reply.Type = godbus.TypeMethodReply
	}
	reply.Body = body
	if len(body) > 0 {
		reply.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(body...))
	}
	if err := c.send(reply); err != nil {
		c.srv.m.log(PrioDebug, "Reply to process %d failed: %v", c.cred.Pid, err)
	}
}

// busMethod answers the org.freedesktop.DBus calls clients make to a bus,
// so tools that expect one (busctl, godbus) work on the socket too.
func (c *p2pConn) busMethod(member string, msg *godbus.Message) ([]any, *godbus.Error) {
	sig, _ := msg.Headers[godbus.FieldSignature].Value().(godbus.Signature)
	arg := func() (string, bool) {
		if sig.String() != "s" {
			return "", false
		}
		return msg.Body[0].(string), true
	}
	known := func(name string) bool {
		return name == BusName || name == ifaceBus || name == serverUniqueName || name == c.unique
	}
	switch member {
	case "Hello":
		return []any{c.unique}, nil
	case "GetId":
		return []any{c.srv.guid}, nil
	case "AddMatch", "RemoveMatch":
		// Every peer gets every signal; there are few.
		return nil, nil
	case "ListNames", "ListActivatableNames":
		return []any{[]string{ifaceBus, BusName, c.unique}}, nil
	case "NameHasOwner":
		name, ok := arg()
		if !ok {
			return nil, newError(NameInvalidArgs, "NameHasOwner takes (s)")
		}
		return []any{known(name)}, nil
	case "GetNameOwner":
		name, ok := arg()
		if !ok {
			return nil, newError(NameInvalidArgs, "GetNameOwner takes (s)")
		}
		switch {
		case name == BusName || name == serverUniqueName:
			return []any{serverUniqueName}, nil
		case name == ifaceBus:
			return []any{ifaceBus}, nil
		case name == c.unique:
			return []any{c.unique}, nil
		}
		return nil, newError("org.freedesktop.DBus.Error.NameHasNoOwner", fmt.Sprintf("name %s has no owner here", truncate(name)))
	case "GetConnectionUnixUser":
		return []any{c.cred.Uid}, nil
	case "GetConnectionUnixProcessID":
		return []any{uint32(c.cred.Pid)}, nil
	case "GetConnectionCredentials":
		return []any{map[string]godbus.Variant{
			"UnixUserID": godbus.MakeVariant(c.cred.Uid),
			"ProcessID":  godbus.MakeVariant(uint32(c.cred.Pid)),
		}}, nil
	case "RequestName", "ReleaseName", "StartServiceByName":
		return nil, newError(NameAccessDenied, "this is a peer-to-peer connection to contidd, not a bus")
	}
	return nil, newError(NameUnknownMethod, fmt.Sprintf("%s.%s is not available on contidd's peer-to-peer socket", ifaceBus, member))
}

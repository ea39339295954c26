package p2p

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/dbus/internal/wire"
	"github.com/contid/contid/registry"
)

// peerConn is one peer. Who it is comes from the socket, fixed at connect
// time (origin), never from anything the peer says.
type peerConn struct {
	srv    *Server
	conn   *net.UnixConn
	uid    uint32 // SO_PEERCRED at connect
	pid    uint32
	group  Group
	origin *Origin
	unique string
	out    *outQueue

	closeOnce sync.Once
	behind    atomic.Bool

	// oob receives the descriptors of one read; it has room for
	// maxFDsPerMessage, so the kernel never installs more per read.
	oob []byte
}

// shutdown closes the socket, which ends the reader, and the queue, which
// ends the writer; serve releases the rest once both are done. It may be
// called from any goroutine, any number of times. The signals still
// queued count as dropped when the peer was cut for falling behind, not
// when it went away by itself.
func (c *peerConn) shutdown() {
	c.closeOnce.Do(func() {
		c.conn.Close()
		if n := c.out.close(); n > 0 && c.behind.Load() {
			c.srv.countDropped(n)
		}
	})
}

func (c *peerConn) serve() {
	logf := c.srv.logf
	var calls sync.WaitGroup
	writerDone := make(chan struct{})
	defer func() {
		c.shutdown()
		calls.Wait()
		<-writerDone
		c.origin.Release()
		c.srv.remove(c)
	}()
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()

	_ = c.conn.SetDeadline(time.Now().Add(authTimeout))
	fds, err := c.authenticate()
	if err != nil {
		logf(prioDebug, "Peer-to-peer authentication of process %d failed: %v", c.pid, err)
		return
	}
	_ = c.conn.SetDeadline(time.Time{})
	c.oob = make([]byte, unix.CmsgSpace(maxFDsPerMessage*4))
	if !fds {
		// Descriptors were not agreed on: any that come are closed at
		// once, and a message that announces some is refused.
		c.oob = c.oob[:unix.CmsgSpace(4)]
	}

	sem := make(chan struct{}, maxCallsPerConn)
	fdCalls := make(chan struct{}, maxFDCalls)
	for {
		// A user's messages are read at its group's rate: beyond it,
		// the peer waits, as it would for a slow server.
		if wait := c.srv.messages.take(c.group, time.Now()); wait > 0 {
			time.Sleep(wait)
		}
		msg, mfds, err := c.readMessage(fds)
		var big *wire.TooLarge
		if errors.As(err, &big) {
			if big.WantsReply() {
				c.tooLargeError(big)
			}
			continue
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				logf(prioDebug, "Peer-to-peer connection of process %d: %v", c.pid, err)
			}
			return
		}
		if msg.Type != godbus.TypeMethodCall {
			wire.CloseAll(mfds)
			continue
		}
		sem <- struct{}{}
		if len(mfds) > 0 {
			fdCalls <- struct{}{}
		}
		calls.Add(1)
		go func() {
			defer func() {
				wire.CloseAll(mfds)
				if len(mfds) > 0 {
					<-fdCalls
				}
				<-sem
				calls.Done()
			}()
			c.handle(msg)
		}()
	}
}

// sendNow writes b to the socket without waiting and returns how much of
// it the socket took; the queue calls it only while its writer is idle, so
// the two never write at once. Control, not Write: the writer's last
// deadline, long past on a connection that was idle, would fail a Write
// before it tried.
func (c *peerConn) sendNow(b []byte) int {
	raw, err := c.conn.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = raw.Control(func(fd uintptr) {
		if sent, err := unix.SendmsgN(int(fd), b, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL); err == nil {
			n = sent
		}
	})
	return n
}

// writeLoop writes what the queue holds, each write bounded by a
// deadline. A peer that takes longer than that to read a message has
// fallen behind and is disconnected.
func (c *peerConn) writeLoop() {
	for {
		bufs, ok := c.out.next()
		if !ok {
			return
		}
		// A batch is what piled up while the previous write waited, at
		// most maxQueuedBytes (or one larger reply): a peer that reads
		// takes far less than writeTimeout for it.
		_ = c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := bufs.WriteTo(c.conn); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.srv.fellBehind(c, 0)
			} else {
				c.shutdown()
			}
			return
		}
	}
}

// authenticate is the server half of the D-Bus SASL exchange, offering
// only EXTERNAL: the identity is the socket's SO_PEERCRED, and a peer
// claiming another UID is rejected. It reads byte by byte so that nothing
// of the first message (which may arrive in the same packet as BEGIN) is
// consumed here. It reports whether unix fd passing was agreed.
func (c *peerConn) authenticate() (bool, error) {
	return saslServer(c.conn, c.uid, c.srv.guid)
}

// saslServer runs the exchange on rw for a peer whose socket says uid.
func saslServer(rw io.ReadWriter, uid uint32, guid string) (bool, error) {
	var nul [1]byte
	if _, err := io.ReadFull(rw, nul[:]); err != nil {
		return false, err
	}
	if nul[0] != 0 {
		return false, errors.New("protocol: missing leading NUL byte")
	}
	authed, fds := false, false
	write := func(s string) error { _, err := rw.Write([]byte(s + "\r\n")); return err }
	for i := 0; i < maxAuthLines; i++ {
		line, err := readAuthLine(rw)
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
			authed, err = authExternal(rw, data, uid, guid, write)
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
func authExternal(r io.Reader, data string, uid uint32, guid string, write func(string) error) (bool, error) {
	if data == "" {
		if err := write("DATA"); err != nil {
			return false, err
		}
		l, err := readAuthLine(r)
		if err != nil {
			return false, err
		}
		d, ok := strings.CutPrefix(l, "DATA")
		if !ok {
			return false, write("REJECTED EXTERNAL")
		}
		data = strings.TrimSpace(d)
	}
	if !externalOK(data, uid) {
		return false, write("REJECTED EXTERNAL")
	}
	return true, write("OK " + guid)
}

// externalOK checks EXTERNAL's optional identity: the hex-encoded decimal
// UID, which must match the socket credentials, written as clients write
// it (no sign, no leading zeros), so one identity has one spelling.
func externalOK(data string, uid uint32) bool {
	if data == "" {
		return true
	}
	b, err := hex.DecodeString(data)
	return err == nil && string(b) == strconv.FormatUint(uint64(uid), 10)
}

func readAuthLine(r io.Reader) (string, error) {
	var line []byte
	var b [1]byte
	for len(line) < maxAuthLine {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", err
		}
		line = append(line, b[0])
		if bytes.HasSuffix(line, []byte("\r\n")) {
			return string(line[:len(line)-2]), nil
		}
	}
	return "", errors.New("protocol: authentication line too long")
}

// recv reads once into p, adding the descriptors that came with the
// bytes to fds. The receive buffer has room for maxFDsPerMessage, so the
// kernel installs no more than that per read; it says so with MSG_CTRUNC
// when a peer sent more, which is a protocol error.
func (c *peerConn) recv(p []byte, fds *[]int) (int, error) {
	n, oobn, flags, _, err := c.conn.ReadMsgUnix(p, c.oob)
	// On some errors the count is the system call's -1.
	n, oobn = max(n, 0), max(oobn, 0)
	if oobn > 0 {
		if scms, perr := unix.ParseSocketControlMessage(c.oob[:oobn]); perr == nil {
			for i := range scms {
				got, err := unix.ParseUnixRights(&scms[i])
				if err != nil {
					continue
				}
				*fds = append(*fds, got...)
			}
		}
	}
	if flags&unix.MSG_CTRUNC != 0 {
		return n, fmt.Errorf("protocol: more than %d file descriptors with one message", maxFDsPerMessage)
	}
	if len(*fds) > maxFDsPerMessage {
		return n, fmt.Errorf("protocol: more than %d file descriptors with one message", maxFDsPerMessage)
	}
	if n == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

func (c *peerConn) readFull(p []byte, fds *[]int) error {
	for len(p) > 0 {
		n, err := c.recv(p, fds)
		p = p[n:]
		if err != nil {
			return err
		}
	}
	return nil
}

// readMessage reads one message and the descriptors that came with it.
// Waiting for a message's first byte takes as long as the peer likes;
// the rest must follow within messageTimeout. A message larger than
// wire.MaxMessageSize is refused from its header. Of the descriptors, exactly those the header announces are kept, for this
// message alone; the others are closed before it is handled.
func (c *peerConn) readMessage(fdsAgreed bool) (*godbus.Message, []int, error) {
	var fds []int
	fail := func(err error) (*godbus.Message, []int, error) {
		wire.CloseAll(fds)
		return nil, nil, err
	}
	var hdr [16]byte
	// One read for the whole fixed header when it is there, as it is
	// from any client that sends whole messages.
	n, err := c.recv(hdr[:], &fds)
	if err != nil {
		return fail(err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(messageTimeout))
	if err := c.readFull(hdr[n:], &fds); err != nil {
		return fail(err)
	}
	total, err := wire.MessageLength(hdr[:])
	var big *wire.TooLarge
	if errors.As(err, &big) {
		// Skipped unread: the stream stays in step, the sender gets an
		// error, and contidd holds no more than its scratch buffer.
		if err := c.discard(big.Length-16, &fds); err != nil {
			return fail(err)
		}
		_ = c.conn.SetReadDeadline(time.Time{})
		wire.CloseAll(fds)
		return nil, nil, big
	}
	if err != nil {
		return fail(err)
	}
	buf := make([]byte, total)
	copy(buf, hdr[:])
	if err := c.readFull(buf[16:], &fds); err != nil {
		return fail(err)
	}
	_ = c.conn.SetReadDeadline(time.Time{})
	if !fdsAgreed && len(fds) > 0 {
		return fail(errors.New("protocol: descriptors sent without NEGOTIATE_UNIX_FD"))
	}
	msg, mfds, err := decodeMessage(buf, fds)
	fds = nil // decodeMessage owns them now
	if err != nil {
		return nil, nil, err
	}
	return msg, mfds, nil
}

// discard reads and drops n bytes of the current message, within the
// message's deadline; descriptors that come with them are collected in
// fds for the caller to close.
func (c *peerConn) discard(n uint64, fds *[]int) error {
	var scratch [16 << 10]byte
	for n > 0 {
		p := scratch[:min(n, uint64(len(scratch)))]
		got, err := c.recv(p, fds)
		n -= uint64(got)
		if len(*fds) > 0 {
			wire.CloseAll(*fds)
			*fds = (*fds)[:0]
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// tooLargeError answers a call that was too large to read.
func (c *peerConn) tooLargeError(big *wire.TooLarge) {
	e := &godbus.Message{Type: godbus.TypeError, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldReplySerial: godbus.MakeVariant(big.Serial),
		godbus.FieldSender:      godbus.MakeVariant(client.BusName),
		godbus.FieldErrorName:   godbus.MakeVariant(client.NameLimitsExceeded),
		godbus.FieldSignature:   godbus.MakeVariant(godbus.SignatureOf("")),
	}, Body: []any{fmt.Sprintf("message of %d bytes: contidd reads at most %d bytes per message", big.Length, wire.MaxMessageSize)}}
	if c.unique != "" {
		e.Headers[godbus.FieldDestination] = godbus.MakeVariant(c.unique)
	}
	c.reply(e)
}

// decodeMessage decodes one framed message and hands it exactly the
// descriptors its header announces; it takes ownership of fds and closes
// those it does not return. The header is read first without any
// descriptor, so that a body cannot refer to one beyond the announced
// count: such an index stays an index, which no method accepts.
func decodeMessage(raw []byte, fds []int) (*godbus.Message, []int, error) {
	wire.IgnoreUnknownFlags(raw)
	msg, err := godbus.DecodeMessage(bytes.NewReader(raw))
	if err != nil {
		wire.CloseAll(fds)
		return nil, nil, fmt.Errorf("protocol: %w", err)
	}
	// The specification forbids serial 0: a reply to it could not name
	// its call. dbus-daemon drops such a client too.
	if msg.Serial() == 0 {
		wire.CloseAll(fds)
		return nil, nil, errors.New("protocol: message with serial 0")
	}
	n, _ := msg.Headers[godbus.FieldUnixFDs].Value().(uint32)
	if int64(n) > int64(len(fds)) {
		wire.CloseAll(fds)
		return nil, nil, fmt.Errorf("protocol: message announces %d descriptors and carries %d", n, len(fds))
	}
	wire.CloseAll(fds[n:])
	fds = fds[:n]
	if n == 0 {
		return msg, nil, nil
	}
	msg, err = godbus.DecodeMessageWithFDs(bytes.NewReader(raw), fds)
	if err != nil {
		wire.CloseAll(fds)
		return nil, nil, fmt.Errorf("protocol: %w", err)
	}
	return msg, fds, nil
}

// reply queues the answer to a call. A peer whose queue has no room for
// it has fallen behind and is disconnected. A reply the byte budgets have
// no room for is replaced by an error, which fits the peer's reserve.
func (c *peerConn) reply(msg *godbus.Message) {
	b, err := encodeMessage(msg)
	if err != nil {
		c.srv.logf(prioErr, "BUG: cannot encode a reply to process %d: %v", c.pid, err)
		return
	}
	err = c.out.push(b, false)
	if errors.Is(err, errNoBudget) {
		err = c.out.push(c.budgetError(msg), false)
	}
	if errors.Is(err, errBehind) || errors.Is(err, errNoBudget) {
		c.srv.fellBehind(c, 0)
	}
}

// budgetError is the error reply that stands in for reply msg when the
// byte budgets cannot hold it.
func (c *peerConn) budgetError(msg *godbus.Message) []byte {
	e := &godbus.Message{Type: godbus.TypeError, Headers: map[godbus.HeaderField]godbus.Variant{}}
	for _, f := range []godbus.HeaderField{godbus.FieldReplySerial, godbus.FieldDestination, godbus.FieldSender} {
		if v, ok := msg.Headers[f]; ok {
			e.Headers[f] = v
		}
	}
	e.Headers[godbus.FieldErrorName] = godbus.MakeVariant(client.NameLimitExceeded)
	e.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(""))
	e.Body = []any{"contidd holds too many unread replies for other clients; try again"}
	b, err := encodeMessage(e)
	if err != nil {
		c.srv.logf(prioErr, "BUG: cannot encode a budget error: %v", err)
	}
	return b
}
func (c *peerConn) handle(msg *godbus.Message) {
	body, derr, sender := c.answer(msg)
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
	c.reply(reply)
}

// answer routes a call: the bus methods clients expect of a bus, the Peer
// interface, and everything else to the dispatcher. It returns the
// reply body or error, and the sender the reply comes from.
func (c *peerConn) answer(msg *godbus.Message) ([]any, *godbus.Error, string) {
	dest, _ := msg.Headers[godbus.FieldDestination].Value().(string)
	iface, _ := msg.Headers[godbus.FieldInterface].Value().(string)
	path, _ := msg.Headers[godbus.FieldPath].Value().(godbus.ObjectPath)
	member, _ := msg.Headers[godbus.FieldMember].Value().(string)

	var body []any
	var derr *godbus.Error
	sender := client.BusName
	switch {
	case dest == ifaceBus || (dest == "" && path == "/org/freedesktop/DBus" && iface == ifaceBus):
		sender = ifaceBus
		body, derr = c.busMethod(member, msg)
	case iface == ifacePeer && member == "Ping":
	case iface == ifacePeer && member == "GetMachineId":
		body = []any{MachineID()}
	default:
		body, derr = c.srv.d.Dispatch(*c.origin, msg)
	}
	return body, derr, sender
}

// busMethod answers the org.freedesktop.DBus calls clients make to a bus,
// so tools that expect one (busctl, godbus) work on the socket too.
func (c *peerConn) busMethod(member string, msg *godbus.Message) ([]any, *godbus.Error) {
	sig, _ := msg.Headers[godbus.FieldSignature].Value().(godbus.Signature)
	arg := func() (string, bool) {
		if sig.String() != "s" {
			return "", false
		}
		return msg.Body[0].(string), true
	}
	known := func(name string) bool {
		return name == client.BusName || name == ifaceBus || name == serverUniqueName || name == c.unique
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
		return []any{[]string{ifaceBus, client.BusName, c.unique}}, nil
	case "NameHasOwner":
		name, ok := arg()
		if !ok {
			return nil, newError(client.NameInvalidArgs, "NameHasOwner takes (s)")
		}
		return []any{known(name)}, nil
	case "GetNameOwner":
		name, ok := arg()
		if !ok {
			return nil, newError(client.NameInvalidArgs, "GetNameOwner takes (s)")
		}
		switch {
		case name == client.BusName || name == serverUniqueName:
			return []any{serverUniqueName}, nil
		case name == ifaceBus:
			return []any{ifaceBus}, nil
		case name == c.unique:
			return []any{c.unique}, nil
		}
		return nil, newError("org.freedesktop.DBus.Error.NameHasNoOwner", fmt.Sprintf("name %s has no owner here", registry.Truncate(name)))
	case "GetConnectionUnixUser":
		return []any{c.uid}, nil
	case "GetConnectionUnixProcessID":
		return []any{c.pid}, nil
	case "GetConnectionCredentials":
		return []any{map[string]godbus.Variant{
			"UnixUserID": godbus.MakeVariant(c.uid),
			"ProcessID":  godbus.MakeVariant(c.pid),
		}}, nil
	case "RequestName", "ReleaseName", "StartServiceByName":
		return nil, newError(client.NameAccessDenied, "this is a peer-to-peer connection to contidd, not a bus")
	}
	return nil, newError(client.NameUnknownMethod, fmt.Sprintf("%s.%s is not available on contidd's peer-to-peer socket", ifaceBus, member))
}

func newError(name, msg string) *godbus.Error {
	return godbus.NewError(name, []any{msg})
}

// MachineID is the host's machine ID, for Peer.GetMachineId.
func MachineID() string {
	for _, p := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(p); err == nil {
			if s := strings.TrimSpace(string(b)); len(s) == 32 {
				return s
			}
		}
	}
	return "00000000000000000000000000000000"
}

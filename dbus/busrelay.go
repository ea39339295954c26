package dbus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/contid/contid/dbus/client"
)

// The system bus connection is read through a relay in contidd's own
// process. godbus reads every incoming message whole and decodes its body
// before any handler sees it, and decoding multiplies a body's size: one
// 32 MiB array of variants, which dbus-daemon forwards from any local
// user, became close to a gigabyte of Go values and held the connection's
// only reader for 26 s. godbus has no hook before decoding, so the relay
// frames the stream itself. It passes the SASL exchange through untouched,
// then reads each message's fixed header and skips a call or signal
// larger than maxMessageSize unread, as the peer-to-peer server does;
// such a call is answered with LimitsExceeded. Replies and errors are
// answers to contidd's own calls (dbus-daemon drops unrequested ones on
// the system bus), so they pass whole up to the protocol's bound.
//
// godbus talks to one end of a socket pair; the relay holds the other end
// and the real connection, and carries descriptors across with the bytes
// they came with.
type busRelay struct {
	bus   *net.UnixConn // to dbus-daemon
	local *net.UnixConn // the relay's end of the pair godbus uses

	// begun is set when godbus has sent BEGIN: dbus-daemon sends nothing
	// more in SASL after it, and everything after is messages.
	begun atomic.Bool

	// refusals carries the calls to answer with LimitsExceeded to the
	// goroutine that answers them through godbus, so the reader never
	// waits on godbus's writer.
	refusals chan *tooLarge
	skipped  atomic.Uint64

	closeOnce sync.Once
}

const (
	// relayChunk is how much of a message that passes is carried per
	// write; godbus reads it at its own pace.
	relayChunk = 64 << 10
	// relayMaxFDs: dbus-daemon's own default cap on descriptors per
	// message on the system bus is 16; the receive buffer has room for
	// far more, and a truncated set is a broken connection.
	relayMaxFDs = 1024
	// refusalQueue: answers beyond this many pending are dropped; the
	// messages are skipped all the same.
	refusalQueue = 64
)

// dialBusRelay connects to the bus at address ("" = the system bus, or
// DBUS_SYSTEM_BUS_ADDRESS when it is set) and returns the relay and the
// end of the socket pair for godbus.DialUnix.
func dialBusRelay(address string) (*busRelay, *net.UnixConn, error) {
	bus, err := dialBusAddress(address)
	if err != nil {
		return nil, nil, err
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		bus.Close()
		return nil, nil, fmt.Errorf("socket pair for the bus relay: %w", err)
	}
	local, err1 := fileUnixConn(pair[0], "bus-relay")
	inner, err2 := fileUnixConn(pair[1], "bus-relay-godbus")
	if err := errors.Join(err1, err2); err != nil {
		bus.Close()
		if local != nil {
			local.Close()
		}
		if inner != nil {
			inner.Close()
		}
		return nil, nil, err
	}
	r := &busRelay{bus: bus, local: local, refusals: make(chan *tooLarge, refusalQueue)}
	return r, inner, nil
}

// fileUnixConn wraps a socket descriptor; the descriptor is consumed.
func fileUnixConn(fd int, name string) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("socket pair for the bus relay: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("socket pair for the bus relay: not a unix socket")
	}
	return uc, nil
}

// dialBusAddress connects to the first reachable unix address in a D-Bus
// address list. godbus parses addresses only inside its own dialer, which
// would give the relay no socket to read, hence this small parser of the
// unix transport's path and abstract keys.
func dialBusAddress(address string) (*net.UnixConn, error) {
	if address == "" {
		address = os.Getenv("DBUS_SYSTEM_BUS_ADDRESS")
	}
	if address == "" {
		address = "unix:path=/run/dbus/system_bus_socket;unix:path=/var/run/dbus/system_bus_socket"
	}
	var errs []error
	for _, entry := range strings.Split(address, ";") {
		if entry == "" {
			continue
		}
		name, err := unixSocketName(entry)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: name, Net: "unix"})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return c, nil
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("bus address %q names no server", address)
	}
	return nil, errors.Join(errs...)
}

// unixSocketName is the socket name of one "unix:" address entry: its
// path, or its abstract name with the leading "@" Go uses for one.
func unixSocketName(entry string) (string, error) {
	transport, keys, ok := strings.Cut(entry, ":")
	if !ok || transport != "unix" {
		return "", fmt.Errorf("bus address %q: contidd reads the system bus over the unix transport only", entry)
	}
	var path, abstract string
	for _, kv := range strings.Split(keys, ",") {
		k, v, _ := strings.Cut(kv, "=")
		v, err := url.PathUnescape(v)
		if err != nil {
			return "", fmt.Errorf("bus address %q: %w", entry, err)
		}
		switch k {
		case "path":
			path = v
		case "abstract":
			abstract = v
		}
	}
	switch {
	case path != "" && abstract == "":
		return path, nil
	case abstract != "" && path == "":
		return "@" + abstract, nil
	}
	return "", fmt.Errorf("bus address %q: want exactly one of path= and abstract=", entry)
}

// run relays until either side closes, then closes both sockets. It
// must run before godbus authenticates, which it relays too.
func (r *busRelay) run(log func(format string, args ...any)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.toBus(); err != nil && !closedError(err) {
			log("Bus relay, contidd to the bus: %v", err)
		}
		r.close()
	}()
	// It ends only on an error: a closed socket, or a stream that
	// cannot be framed.
	if err := r.fromBus(log); !closedError(err) {
		log("Bus relay, the bus to contidd: %v", err)
	}
	r.close()
	<-done
	close(r.refusals)
}

// answer sends the LimitsExceeded errors for skipped calls through conn,
// the connection godbus made over the relay, until the relay ends.
func (r *busRelay) answer(conn *godbus.Conn) {
	for big := range r.refusals {
		_ = conn.Send(refusalFor(big), nil)
	}
}

func (r *busRelay) close() {
	r.closeOnce.Do(func() {
		r.bus.Close()
		r.local.Close()
	})
}

func closedError(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE)
}

// toBus carries what godbus writes to the bus as it comes: contidd's own
// messages need no framing. It notes BEGIN on the way.
func (r *busRelay) toBus() error {
	buf := make([]byte, relayChunk)
	oob := make([]byte, unix.CmsgSpace(relayMaxFDs*4))
	var line []byte
	for {
		n, oobn, flags, _, err := r.local.ReadMsgUnix(buf, oob)
		if n <= 0 && err == nil {
			err = io.EOF
		}
		if err != nil {
			return err
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return errors.New("contidd sent more descriptors than the relay carries")
		}
		if !r.begun.Load() {
			// SASL commands are whole lines; BEGIN is the last one.
			line = append(line, buf[:n]...)
			for {
				i := strings.Index(string(line), "\r\n")
				if i < 0 {
					break
				}
				if string(line[:i]) == "BEGIN" {
					r.begun.Store(true)
					break
				}
				line = line[i+2:]
			}
			if len(line) > 4096 {
				return errors.New("SASL line from godbus too long")
			}
		}
		if err := writeAllWithFDs(r.bus, buf[:n], oob[:max(oobn, 0)]); err != nil {
			return err
		}
	}
}

// fromBus reads dbus-daemon's side: the SASL replies byte by byte until
// godbus has sent BEGIN (so no message byte is read as SASL), then one
// message at a time, each read exactly to its end so that descriptors
// stay with the message they came with.
func (r *busRelay) fromBus(log func(format string, args ...any)) error {
	in := &relayReader{conn: r.bus, oob: make([]byte, unix.CmsgSpace(relayMaxFDs*4))}
	var one [1]byte
	for !r.begun.Load() {
		if err := in.readFull(one[:]); err != nil {
			return err
		}
		if r.begun.Load() {
			// The first byte of the first message: BEGIN went out
			// before dbus-daemon could send it.
			return r.messages(in, one[:], log)
		}
		if err := in.forward(r.local, one[:]); err != nil {
			return err
		}
	}
	return r.messages(in, nil, log)
}

func (r *busRelay) messages(in *relayReader, first []byte, log func(format string, args ...any)) error {
	var hdr [16]byte
	buf := make([]byte, relayChunk)
	for {
		n := copy(hdr[:], first)
		first = nil
		if err := in.readFull(hdr[n:]); err != nil {
			return err
		}
		total, err := messageLength(hdr[:])
		var big *tooLarge
		if errors.As(err, &big) && (big.typ == godbus.TypeMethodCall || big.typ == godbus.TypeSignal) {
			if err := r.skip(in, hdr[:], big); err != nil {
				return err
			}
			if n := r.skipped.Add(1); n&(n-1) == 0 {
				log("Skipped %d calls or signals from the system bus larger than %d bytes (the latest %d bytes)", n, maxMessageSize, big.length)
			}
			continue
		}
		if big != nil {
			total = int(big.length)
		} else if err != nil {
			return err
		}
		if err := in.forward(r.local, hdr[:]); err != nil {
			return err
		}
		for rest := total - len(hdr); rest > 0; {
			p := buf[:min(rest, len(buf))]
			if err := in.readFull(p); err != nil {
				return err
			}
			if err := in.forward(r.local, p); err != nil {
				return err
			}
			rest -= len(p)
		}
	}
}

// skip reads an oversized message to its end without keeping it: its
// header fields, when they are small, to learn whom to answer, and its
// body into a scratch buffer. Descriptors with it are closed.
func (r *busRelay) skip(in *relayReader, hdr []byte, big *tooLarge) error {
	defer in.dropFDs()
	order := byteOrder(hdr[0])
	fieldsLen := uint64(order.Uint32(hdr[12:16]))
	rest := big.length - 16
	if big.wantsReply() && fieldsLen <= maxMessageSize {
		fields := make([]byte, (fieldsLen+7)&^7)
		if err := in.readFull(fields); err != nil {
			return err
		}
		rest -= uint64(len(fields))
		if sender, ok := headerString(fields[:fieldsLen], order, byte(godbus.FieldSender)); ok {
			big.sender = sender
			select {
			case r.refusals <- big:
			default:
			}
		}
	}
	var scratch [16 << 10]byte
	for rest > 0 {
		p := scratch[:min(rest, uint64(len(scratch)))]
		if err := in.readFull(p); err != nil {
			return err
		}
		in.dropFDs()
		rest -= uint64(len(p))
	}
	return nil
}

// refusalFor is the LimitsExceeded error for a skipped call.
func refusalFor(big *tooLarge) *godbus.Message {
	return &godbus.Message{Type: godbus.TypeError, Flags: godbus.FlagNoReplyExpected, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldReplySerial: godbus.MakeVariant(big.serial),
		godbus.FieldDestination: godbus.MakeVariant(big.sender),
		godbus.FieldErrorName:   godbus.MakeVariant(client.NameLimitsExceeded),
		godbus.FieldSignature:   godbus.MakeVariant(godbus.SignatureOf("")),
	}, Body: []any{fmt.Sprintf("message of %d bytes: contidd reads at most %d bytes per message", big.length, maxMessageSize)}}
}

func byteOrder(mark byte) binary.ByteOrder {
	if mark == 'B' {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// headerString finds a string-valued field in a message's header field
// array, a(yv). godbus decodes header fields only as part of a whole
// message, and the point here is not to read the whole message. Fields
// carry o, s, g or u values; anything else, or fields that end short,
// leave the field unfound. Of repeated fields the last counts, and
// terminating NULs are not checked, as in godbus: the value only says
// whom to answer.
func headerString(fields []byte, order binary.ByteOrder, code byte) (string, bool) {
	align := func(off, n int) int { return (off + n - 1) &^ (n - 1) }
	var value string
	var found bool
	for off := 0; off < len(fields); {
		off = align(off, 8)
		if off+4 > len(fields) || fields[off+1] != 1 {
			return "", false
		}
		field, sig := fields[off], fields[off+2]
		off += 4
		switch sig {
		case 's', 'o':
			off = align(off, 4)
			if off+4 > len(fields) {
				return "", false
			}
			n := uint64(order.Uint32(fields[off:]))
			end := uint64(off) + 4 + n
			if end >= uint64(len(fields)) {
				return "", false
			}
			if field == code && sig == 's' {
				value, found = string(fields[off+4:end]), true
			}
			off = int(end) + 1
		case 'g':
			if off >= len(fields) {
				return "", false
			}
			off += 1 + int(fields[off]) + 1
		case 'u':
			off = align(off, 4) + 4
			if off > len(fields) {
				return "", false
			}
		default:
			return "", false
		}
	}
	return value, found
}

// relayReader reads from dbus-daemon and keeps the descriptors received
// until they are forwarded with the bytes of their message.
type relayReader struct {
	conn *net.UnixConn
	oob  []byte
	fds  []int
}

func (r *relayReader) readFull(p []byte) error {
	for len(p) > 0 {
		n, oobn, flags, _, err := r.conn.ReadMsgUnix(p, r.oob)
		if oobn > 0 {
			if scms, perr := unix.ParseSocketControlMessage(r.oob[:oobn]); perr == nil {
				for i := range scms {
					if got, err := unix.ParseUnixRights(&scms[i]); err == nil {
						r.fds = append(r.fds, got...)
					}
				}
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return errors.New("more descriptors with one message than the relay carries")
		}
		if n <= 0 && err == nil {
			err = io.EOF
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// forward writes p to godbus with the descriptors received so far; the
// socket pair holds its own references, so the relay's are closed.
func (r *relayReader) forward(to *net.UnixConn, p []byte) error {
	var oob []byte
	if len(r.fds) > 0 {
		oob = unix.UnixRights(r.fds...)
	}
	err := writeAllWithFDs(to, p, oob)
	r.dropFDs()
	return err
}

func (r *relayReader) dropFDs() {
	closeAll(r.fds)
	r.fds = r.fds[:0]
}

// writeAllWithFDs writes p, the descriptors in oob going with its first
// byte.
func writeAllWithFDs(to *net.UnixConn, p, oob []byte) error {
	for len(p) > 0 {
		n, _, err := to.WriteMsgUnix(p, oob, nil)
		if err != nil {
			return err
		}
		oob = nil
		p = p[n:]
	}
	return nil
}

package dbus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/dbus/internal/wire"
)

// The system bus connection is read through a relay in contidd's own
// process. godbus reads every incoming message whole and decodes its body
// before any handler sees it, and decoding multiplies a body's size: one
// 32 MiB array of variants, which dbus-daemon forwards from any local
// user, became close to a gigabyte of Go values and held the connection's
// only reader for 26 s. godbus has no hook before decoding, so the relay
// frames the stream itself. It passes the SASL exchange through untouched,
// then reads each message's fixed header and skips a call or signal
// larger than wire.MaxMessageSize unread, as the peer-to-peer server does;
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
	refusals chan refusal
	// skipped counts oversized calls and signals, screened those turned
	// away for their form, unanswered the refusals dropped from a full
	// queue.
	skipped, screened, unanswered atomic.Uint64

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
	r := &busRelay{bus: bus, local: local, refusals: make(chan refusal, refusalQueue)}
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
	for f := range r.refusals {
		_ = conn.Send(errorFor(f), nil)
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
		total, err := wire.MessageLength(hdr[:])
		var big *wire.TooLarge
		if errors.As(err, &big) {
			total = int(big.Length)
		} else if err != nil {
			return err
		}
		switch godbus.Type(hdr[1]) {
		case godbus.TypeMethodCall, godbus.TypeSignal:
			if big != nil {
				err = r.skip(in, hdr[:], big, log)
			} else {
				err = r.screen(in, hdr[:], buf[:total], log)
			}
			if err != nil {
				return err
			}
			continue
		}
		// A reply or an error: an answer to contidd's own call.
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

// screen reads a call or signal within wire.MaxMessageSize whole and passes it
// to godbus only if godbus may decode it:
//   - A signal sent to contidd by name (unicast) is dropped unless the bus
//     itself sent it. contidd's match rules already choose whose broadcast
//     signals arrive; a unicast signal reaches it whatever it asked for,
//     and godbus hands every signal to every subscriber.
//   - Descriptors come only with a call, as arguments of type h at the top
//     level of its body. godbus v5.2.4 panics on an array of descriptors,
//     and keeps, unclosed, the descriptors of a message no handler takes.
//
// A call that is refused is answered.
func (r *busRelay) screen(in *relayReader, hdr, msg []byte, log func(format string, args ...any)) error {
	copy(msg, hdr)
	if err := in.readFull(msg[len(hdr):]); err != nil {
		return err
	}
	order := byteOrder(hdr[0])
	fieldsLen := int(order.Uint32(hdr[12:16]))
	h, ok := parseHeaderFields(&sliceFields{b: msg[16:min(16+fieldsLen, len(msg))]}, order)
	typ, flags := godbus.Type(hdr[1]), godbus.Flags(hdr[2])
	refuse := func(name, text string) error {
		in.dropFDs()
		n := r.screened.Add(1)
		if n&(n-1) == 0 {
			log("Screened out %d calls or signals from the system bus (the latest from %s: %s); %d answers dropped from a full queue", n, h.sender, text, r.unanswered.Load())
		}
		if typ == godbus.TypeMethodCall && flags&godbus.FlagNoReplyExpected == 0 && ok {
			r.refuse(refusal{serial: order.Uint32(hdr[8:12]), sender: h.sender, name: name, text: text})
		}
		return nil
	}
	switch {
	case !ok:
		return refuse(client.NameInvalidArgs, "header fields contidd cannot read")
	case typ == godbus.TypeSignal && h.destination != "" && h.sender != ifaceBus:
		return refuse("", "a signal sent to contidd by name")
	case len(in.fds) > 0 || h.unixFDs > 0:
		if typ != godbus.TypeMethodCall {
			return refuse("", "a signal with descriptors")
		}
		top, nested := descriptorArgs(h.signature)
		if nested || top != int(h.unixFDs) || top != len(in.fds) {
			return refuse(client.NameInvalidArgs, errFDNotArgument.Error())
		}
		if err := takesItsFDs(msg, len(in.fds)); err != nil {
			return refuse(client.NameInvalidArgs, err.Error())
		}
	}
	return in.forward(r.local, msg)
}

var errFDNotArgument = errors.New("descriptors are accepted only as arguments of type h, one per argument")

// takesItsFDs checks that a call with n descriptors is one that takes
// them, TagProcess, that its h argument names each descriptor once, and
// that no variant holds one. godbus v5.2.4 closes no descriptor of a call
// it answers itself (Peer, an unknown object) or drops (an index out of
// range), and a descriptor no argument names is never closed: a caller
// could make contidd hold descriptors without end. It also panics on an
// array of descriptors in a variant when it decodes with the descriptors
// at hand; decoded here without them, every h stays an index
// (UnixFDIndex), which is safe to look for, and the one decode serves
// every check.
func takesItsFDs(msg []byte, n int) error {
	plain, err := godbus.DecodeMessage(bytes.NewReader(msg))
	if err != nil {
		return fmt.Errorf("a call contidd cannot decode: %w", err)
	}
	for _, v := range plain.Body {
		if holdsFDIndex(reflect.ValueOf(v), false) {
			return errFDNotArgument
		}
	}
	path, _ := plain.Headers[godbus.FieldPath].Value().(godbus.ObjectPath)
	iface, _ := plain.Headers[godbus.FieldInterface].Value().(string)
	member, _ := plain.Headers[godbus.FieldMember].Value().(string)
	sig, _ := plain.Headers[godbus.FieldSignature].Value().(godbus.Signature)
	if path != client.ManagerPath || iface != client.ManagerInterface && iface != "" || member != "TagProcess" || sig.String() != "hta{sv}" {
		return fmt.Errorf("only %s.TagProcess (hta{sv}) on %s takes a descriptor", client.ManagerInterface, client.ManagerPath)
	}
	named := make([]bool, n)
	for _, v := range plain.Body {
		idx, ok := v.(godbus.UnixFDIndex)
		if !ok {
			continue
		}
		if int(idx) >= n || named[idx] {
			return fmt.Errorf("descriptor index %d of %d descriptors is out of range or named twice", idx, n)
		}
		named[idx] = true
	}
	return nil
}

// descriptorArgs counts the h arguments at the top level of a signature,
// and says whether an h is nested in an array, struct or dict entry (or
// the signature is malformed). A variant's h cannot be told from the
// signature; the count of top-level h against the descriptors sent
// leaves it none to refer to.
func descriptorArgs(sig string) (top int, nested bool) {
	for i := 0; i < len(sig); {
		if sig[i] == 'h' {
			top++
			i++
			continue
		}
		end := completeTypeEnd(sig, i)
		if end < 0 {
			return top, true
		}
		if strings.IndexByte(sig[i:end], 'h') >= 0 {
			nested = true
		}
		i = end
	}
	return top, nested
}

var fdIndexType = reflect.TypeOf(godbus.UnixFDIndex(0))

func holdsFDIndex(v reflect.Value, inVariant bool) bool {
	if !v.IsValid() {
		return false
	}
	if v.Type() == fdIndexType || v.Kind() == reflect.Slice && v.Type().Elem() == fdIndexType {
		return inVariant
	}
	if vv, ok := v.Interface().(godbus.Variant); ok {
		return holdsFDIndex(reflect.ValueOf(vv.Value()), true)
	}
	switch v.Kind() {
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if holdsFDIndex(v.Index(i), inVariant) {
				return true
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if holdsFDIndex(it.Key(), inVariant) || holdsFDIndex(it.Value(), inVariant) {
				return true
			}
		}
	case reflect.Interface, reflect.Pointer:
		return holdsFDIndex(v.Elem(), inVariant)
	}
	return false
}

// completeTypeEnd is the index just after the single complete type that
// starts at sig[i], or -1 if there is none.
func completeTypeEnd(sig string, i int) int {
	switch sig[i] {
	case 'a':
		if i+1 >= len(sig) {
			return -1
		}
		return completeTypeEnd(sig, i+1)
	case '(', '{':
		depth := 0
		for j := i; j < len(sig); j++ {
			switch sig[j] {
			case '(', '{':
				depth++
			case ')', '}':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	return i + 1
}

// skip reads an oversized call or signal to its end without keeping it.
// Its header fields are walked as they stream past, for the sender a
// call is answered at; the body goes through a scratch buffer.
// Descriptors with it are closed.
func (r *busRelay) skip(in *relayReader, hdr []byte, big *wire.TooLarge, log func(format string, args ...any)) error {
	defer in.dropFDs()
	order := byteOrder(hdr[0])
	fieldsLen := uint64(order.Uint32(hdr[12:16]))
	src := &streamFields{in: in, left: int64(fieldsLen)}
	h, ok := parseHeaderFields(src, order)
	if src.err != nil {
		return src.err
	}
	// What the walk left of the fields, their padding, and the body.
	rest := uint64(src.left) + ((fieldsLen+7)&^7 - fieldsLen) + (big.Length - 16 - (fieldsLen+7)&^7)
	var scratch [16 << 10]byte
	for rest > 0 {
		p := scratch[:min(rest, uint64(len(scratch)))]
		if err := in.readFull(p); err != nil {
			return err
		}
		in.dropFDs()
		rest -= uint64(len(p))
	}
	if n := r.skipped.Add(1); n&(n-1) == 0 {
		log("Skipped %d calls or signals from the system bus larger than %d bytes (the latest %d bytes); %d answers dropped from a full queue", n, wire.MaxMessageSize, big.Length, r.unanswered.Load())
	}
	if big.WantsReply() && ok && h.sender != "" {
		r.refuse(refusal{serial: big.Serial, sender: h.sender, name: client.NameLimitsExceeded,
			text: fmt.Sprintf("message of %d bytes: contidd reads at most %d bytes per message", big.Length, wire.MaxMessageSize)})
	}
	return nil
}

// refusal is an error answer the relay owes a caller.
type refusal struct {
	serial             uint32
	sender, name, text string
}

// refuse queues an answer. The queue is drained by a goroutine writing
// through godbus; when it is full, as under a flood of refused calls, the
// answer is dropped and counted rather than the reader made to wait.
func (r *busRelay) refuse(f refusal) {
	if f.name == "" || f.sender == "" {
		return
	}
	select {
	case r.refusals <- f:
	default:
		r.unanswered.Add(1)
	}
}

// errorFor is the error message of a refusal.
func errorFor(f refusal) *godbus.Message {
	return &godbus.Message{Type: godbus.TypeError, Flags: godbus.FlagNoReplyExpected, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldReplySerial: godbus.MakeVariant(f.serial),
		godbus.FieldDestination: godbus.MakeVariant(f.sender),
		godbus.FieldErrorName:   godbus.MakeVariant(f.name),
		godbus.FieldSignature:   godbus.MakeVariant(godbus.SignatureOf("")),
	}, Body: []any{f.text}}
}

func byteOrder(mark byte) binary.ByteOrder {
	if mark == 'B' {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// busHeader is what the relay reads from a message's header fields.
type busHeader struct {
	sender, destination, signature string
	unixFDs                        uint32
}

// fieldSource gives the bytes of a header field array in order; offset is
// from the array's start (which is 8-aligned in the message). What take
// returns is valid until the next call.
type fieldSource interface {
	take(n int) ([]byte, bool)
	skip(n int) bool
	offset() int
	more() bool
}

// parseHeaderFields walks a message's header field array, a(yv). godbus
// decodes header fields only as part of a whole message, and the point
// here is to judge a message before it is decoded, or without reading it
// whole. Fields carry o, s, g or u values; anything else, or fields that
// end short, fail the walk. Of repeated fields the last counts, and
// terminating NULs are not checked, as in godbus. Strings longer than a
// bus name may be (255 bytes) are skipped unread.
func parseHeaderFields(src fieldSource, order binary.ByteOrder) (busHeader, bool) {
	var h busHeader
	align := func(n int) bool {
		return src.skip((n - src.offset()%n) % n)
	}
	for src.more() {
		if !align(8) {
			return h, false
		}
		b, ok := src.take(4)
		if !ok {
			return h, false
		}
		if b[1] != 1 {
			return h, false
		}
		field, sig := godbus.HeaderField(b[0]), b[2]
		switch sig {
		case 's', 'o':
			if !align(4) {
				return h, false
			}
			lb, ok := src.take(4)
			if !ok {
				return h, false
			}
			n := int64(order.Uint32(lb))
			if n > 255 {
				if !src.skip(int(n) + 1) {
					return h, false
				}
				continue
			}
			v, ok := src.take(int(n) + 1)
			if !ok {
				return h, false
			}
			if sig == 's' {
				switch field {
				case godbus.FieldSender:
					h.sender = string(v[:n])
				case godbus.FieldDestination:
					h.destination = string(v[:n])
				}
			}
		case 'g':
			lb, ok := src.take(1)
			if !ok {
				return h, false
			}
			n := int(lb[0]) // before the next take reuses lb
			v, ok := src.take(n + 1)
			if !ok {
				return h, false
			}
			if field == godbus.FieldSignature {
				h.signature = string(v[:n])
			}
		case 'u':
			if !align(4) {
				return h, false
			}
			v, ok := src.take(4)
			if !ok {
				return h, false
			}
			if field == godbus.FieldUnixFDs {
				h.unixFDs = order.Uint32(v)
			}
		default:
			return h, false
		}
	}
	return h, true
}

// sliceFields is a fieldSource over header fields in memory.
type sliceFields struct {
	b   []byte
	off int
}

func (s *sliceFields) take(n int) ([]byte, bool) {
	if n < 0 || s.off+n > len(s.b) {
		return nil, false
	}
	p := s.b[s.off : s.off+n]
	s.off += n
	return p, true
}

func (s *sliceFields) skip(n int) bool {
	_, ok := s.take(n)
	return ok
}

func (s *sliceFields) offset() int { return s.off }

func (s *sliceFields) more() bool { return s.off < len(s.b) }

// streamFields is a fieldSource that reads header fields from the bus as
// the walk needs them, never more than left.
type streamFields struct {
	in   *relayReader
	left int64
	off  int
	buf  [260]byte
	err  error
}

func (s *streamFields) take(n int) ([]byte, bool) {
	if n < 0 || n > len(s.buf) || int64(n) > s.left || s.err != nil {
		return nil, false
	}
	if s.err = s.in.readFull(s.buf[:n]); s.err != nil {
		return nil, false
	}
	s.left -= int64(n)
	s.off += n
	return s.buf[:n], true
}

func (s *streamFields) skip(n int) bool {
	if n < 0 || int64(n) > s.left || s.err != nil {
		return false
	}
	var scratch [4 << 10]byte
	for rest := n; rest > 0; {
		p := scratch[:min(rest, len(scratch))]
		if s.err = s.in.readFull(p); s.err != nil {
			return false
		}
		s.in.dropFDs()
		rest -= len(p)
	}
	s.left -= int64(n)
	s.off += n
	return true
}

func (s *streamFields) offset() int { return s.off }

func (s *streamFields) more() bool { return s.left > 0 && s.err == nil }

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
	wire.CloseAll(r.fds)
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

package p2p

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/dbus/internal/wire"
)

// FuzzSASL drives the server half of the authentication exchange with
// whatever a peer may send. It must end within its line bounds, answer
// only with the replies the protocol knows, and never accept an identity
// other than the one the socket reports. Seeds: testdata/fuzz/FuzzSASL.
func FuzzSASL(f *testing.F) {
	for _, s := range []string{
		"\x00AUTH EXTERNAL 31303030\r\nBEGIN\r\n",
		"\x00AUTH EXTERNAL\r\nDATA\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n",
		"\x00AUTH EXTERNAL 30\r\nBEGIN\r\n",
		"\x00AUTH ANONYMOUS\r\nAUTH EXTERNAL\r\nDATA 31303030\r\nBEGIN\r\n",
		"\x00BEGIN\r\n",
	} {
		f.Add([]byte(s))
	}
	const uid, guid = 1000, "0123456789abcdef0123456789abcdef"
	replies := []string{"OK " + guid, "REJECTED EXTERNAL", "DATA", "AGREE_UNIX_FD", `ERROR "unknown command"`}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		var out bytes.Buffer
		fds, err := saslServer(struct {
			io.Reader
			io.Writer
		}{r, &out}, uid, guid)
		// Each AUTH may read one DATA line besides its own.
		if read := len(in) - r.Len(); read > 1+2*maxAuthLines*maxAuthLine {
			t.Fatalf("read %d bytes of a peer's authentication", read)
		}
		sent := strings.Split(strings.TrimSuffix(out.String(), "\r\n"), "\r\n")
		for _, line := range sent {
			if line == "" && out.Len() == 0 {
				continue
			}
			if !slicesContains(replies, line) {
				t.Fatalf("sent %q", line)
			}
		}
		if err != nil {
			return
		}
		if !slicesContains(sent, "OK "+guid) || fds && !slicesContains(sent, "AGREE_UNIX_FD") {
			t.Fatalf("authenticated (fds %v) after sending %q", fds, sent)
		}
		// Success needs an EXTERNAL with no identity or with this one.
		mine := hex.EncodeToString([]byte(strconv.Itoa(uid)))
		ok := false
		// After the leading NUL byte, which success implies.
		for _, line := range strings.Split(string(in[1:]), "\r\n") {
			switch strings.TrimSpace(line) {
			case "AUTH EXTERNAL", "AUTH EXTERNAL " + mine, "DATA", "DATA " + mine:
				ok = true
			}
		}
		if !ok {
			t.Fatalf("authenticated uid %d on %q", uid, in)
		}
	})
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// FuzzMessage drives what a peer's bytes go through after authentication:
// framing by the fixed header, decoding (with the descriptor count the
// header announces), routing to the bus methods or the dispatcher, and
// encoding the reply. Calls for the bus driver and the Peer interface are
// answered here and never reach the dispatcher; every other call reaches
// it with the connection's origin. A reply the server cannot encode is
// logged as a BUG, which fails the target. The dispatcher's own argument
// checks are fuzzed with the same corpus in package dbus (FuzzDispatch).
// Seeds: testdata/fuzz/FuzzMessage.
func FuzzMessage(f *testing.F) {
	for _, m := range seedMessages() {
		f.Add(m)
	}
	var bug struct {
		sync.Mutex
		msg string
	}
	d := &recorder{}
	s := &Server{d: d, guid: "fuzz", logf: func(prio int, format string, args ...any) {
		if strings.HasPrefix(format, "BUG") {
			bug.Lock()
			bug.msg = fmt.Sprintf(format, args...)
			bug.Unlock()
		}
	}}
	o := &Origin{UID: 1000, PID: 4242, Pidfd: -1}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) < 16 {
			return
		}
		total, err := wire.MessageLength(raw[:16])
		if err != nil || total > len(raw) {
			return
		}
		msg, fds, err := decodeMessage(raw[:total], nil)
		if err != nil {
			return
		}
		if len(fds) != 0 {
			t.Fatalf("decoded %d descriptors out of none", len(fds))
		}
		if msg.Type != godbus.TypeMethodCall {
			return
		}
		g := Group{UID: o.UID}
		c := &peerConn{srv: s, unique: ":1.1", uid: o.UID, pid: o.PID, group: g, origin: o, out: newOutQueue(&s.budget, g)}
		before := d.calls()
		c.handle(msg)
		c.out.close()
		dest, _ := msg.Headers[godbus.FieldDestination].Value().(string)
		iface, _ := msg.Headers[godbus.FieldInterface].Value().(string)
		path, _ := msg.Headers[godbus.FieldPath].Value().(godbus.ObjectPath)
		member, _ := msg.Headers[godbus.FieldMember].Value().(string)
		own := dest == ifaceBus || dest == "" && path == "/org/freedesktop/DBus" && iface == ifaceBus ||
			iface == ifacePeer && (member == "Ping" || member == "GetMachineId")
		switch got, last := d.calls(), d.last(); {
		case own && got != before:
			t.Fatalf("%v reached the dispatcher", msg)
		case !own && got != before+1:
			t.Fatalf("%v did not reach the dispatcher", msg)
		case !own && last != *o:
			t.Fatalf("the dispatcher got origin %+v, want %+v", last, *o)
		}
		bug.Lock()
		defer bug.Unlock()
		if bug.msg != "" {
			t.Fatalf("%s, answering %v", bug.msg, msg)
		}
	})
}

// recorder is a dispatcher that counts the calls it is handed and
// answers each with an empty reply.
type recorder struct {
	mu     sync.Mutex
	n      int
	origin Origin
}

func (r *recorder) Dispatch(o Origin, msg *godbus.Message) ([]any, *godbus.Error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	r.origin = o
	return nil, nil
}

func (r *recorder) Allowance(uid, pid uint32) Group { return Group{UID: uid} }

func (r *recorder) SignalsDropped(uint64) {}

func (r *recorder) calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *recorder) last() Origin {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.origin
}

// seedMessages are well-formed calls of every kind the API serves, plus
// variants a peer may get wrong: big-endian, a descriptor announced but
// not sent, a truncated body.
func seedMessages() [][]byte {
	call := func(order binary.ByteOrder, dest string, path godbus.ObjectPath, iface, member string, body ...any) []byte {
		msg := &godbus.Message{Type: godbus.TypeMethodCall, Headers: map[godbus.HeaderField]godbus.Variant{
			godbus.FieldPath:   godbus.MakeVariant(path),
			godbus.FieldMember: godbus.MakeVariant(member),
		}, Body: body}
		if dest != "" {
			msg.Headers[godbus.FieldDestination] = godbus.MakeVariant(dest)
		}
		if iface != "" {
			msg.Headers[godbus.FieldInterface] = godbus.MakeVariant(iface)
		}
		if len(body) > 0 {
			msg.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(body...))
		}
		var buf bytes.Buffer
		if err := msg.EncodeTo(&buf, order); err != nil {
			panic(err)
		}
		b := buf.Bytes()
		order.PutUint32(b[8:12], 1)
		return b
	}
	le := binary.LittleEndian
	opts := map[string]godbus.Variant{"Name": godbus.MakeVariant("web"), "AllowNesting": godbus.MakeVariant(true)}
	seeds := [][]byte{
		call(le, ifaceBus, "/org/freedesktop/DBus", ifaceBus, "Hello"),
		call(le, ifaceBus, "/org/freedesktop/DBus", ifaceBus, "GetConnectionCredentials", ":1.1"),
		call(le, client.BusName, client.ManagerPath, client.ManagerInterface, "ListContainers"),
		call(le, client.BusName, client.ManagerPath, client.ManagerInterface, "TagCgroup", "/target", uint64(0), opts),
		call(le, client.BusName, client.ManagerPath, client.ManagerInterface, "TagPID", uint32(1), uint64(7), map[string]godbus.Variant{}),
		call(le, client.BusName, client.ManagerPath, client.ManagerInterface, "GetContainer", uint64(1)),
		call(le, client.BusName, client.ManagerPath, "org.freedesktop.DBus.Properties", "GetAll", client.ManagerInterface),
		call(le, client.BusName, client.ContainerPath(1), client.ContainerInterface, "ListProcesses"),
		call(le, client.BusName, client.ManagerPath, "org.freedesktop.DBus.Introspectable", "Introspect"),
		call(binary.BigEndian, client.BusName, client.ManagerPath, client.ManagerInterface, "GetContainerByPID", uint32(1)),
		call(le, "", client.ManagerPath, "", "Get", client.ManagerInterface, "Version"),
	}
	withFD := call(le, client.BusName, client.ManagerPath, client.ManagerInterface, "TagProcess", godbus.UnixFDIndex(0), uint64(0), map[string]godbus.Variant{})
	seeds = append(seeds, withFD)
	truncated := bytes.Clone(seeds[3])
	seeds = append(seeds, truncated[:len(truncated)-3])
	return seeds
}

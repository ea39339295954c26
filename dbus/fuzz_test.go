package dbus

import (
	"bytes"
	"encoding/binary"
	"strings"
	"sync"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
)

// FuzzDispatch hands the dispatcher whatever method call a peer can
// frame: its argument checks must turn every malformed call into an
// error reply. A panic in the dispatcher is recovered there and logged as
// a BUG, which fails the target. The corpus is the wire server's
// (FuzzMessage in dbus/internal/p2p), whose framing and routing come
// before this: testdata/fuzz/FuzzDispatch.
func FuzzDispatch(f *testing.F) {
	encoded := func(order binary.ByteOrder, path godbus.ObjectPath, iface, member string, body ...any) []byte {
		var buf bytes.Buffer
		if err := call(path, iface, member, body...).EncodeTo(&buf, order); err != nil {
			f.Fatal(err)
		}
		b := buf.Bytes()
		order.PutUint32(b[8:12], 1)
		return b
	}
	f.Add(encoded(binary.LittleEndian, client.ManagerPath, client.ManagerInterface, "TagPID", uint32(1), uint64(7), map[string]godbus.Variant{}))
	f.Add(encoded(binary.BigEndian, client.ManagerPath, "", "Get", client.ManagerInterface, "Version"))
	var bug struct {
		sync.Mutex
		msg string
	}
	m, _, _, _ := newTestManager(f)
	m.log = func(prio int, format string, args ...any) {
		if strings.HasPrefix(format, "BUG") {
			bug.Lock()
			bug.msg = format
			bug.Unlock()
		}
	}
	p := selfPeer(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		msg, err := godbus.DecodeMessage(bytes.NewReader(raw))
		if err != nil || msg.Type != godbus.TypeMethodCall {
			return
		}
		m.dispatch(p, msg)
		bug.Lock()
		defer bug.Unlock()
		if bug.msg != "" {
			t.Fatalf("the dispatcher panicked on %v", msg)
		}
	})
}

package p2p

import (
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
)

// echoer answers every call with its first argument, and puts every
// caller in one non-root group so the byte budgets are charged.
type echoer struct{}

func (echoer) Dispatch(o Origin, msg *godbus.Message) ([]any, *godbus.Error) {
	if n, ok := msg.Body[0].(uint32); ok && len(msg.Body) == 1 {
		return []any{strings.Repeat("z", int(n))}, nil
	}
	if len(msg.Body) > 0 {
		return []any{msg.Body[0]}, nil
	}
	return nil, nil
}
func (echoer) Allowance(uid, pid uint32) Group { return Group{UID: 1000} }
func (echoer) SignalsDropped(uint64)           {}

// A reply larger than the socket's send buffer, to a peer that is not
// reading yet: the socket takes part of it at once, the writer writes the
// rest, and the signals emitted meanwhile wait behind it. When the peer
// reads, every message is whole, in order, with consecutive serials, and
// the byte budget is back at 0 once the peer leaves.
func TestPartialSendThenWriter(t *testing.T) {
	s, raw, rd := authenticatedPeer(t, echoer{})
	if _, err := raw.Write(helloMessage(t)); err != nil {
		t.Fatal(err)
	}
	if m, err := godbus.DecodeMessage(rd); err != nil || m.Type != godbus.TypeMethodReply {
		t.Fatalf("Hello reply: %v %v", m, err)
	}
	var whole, part, none int
	s.mu.Lock()
	for c := range s.conns {
		// A send buffer smaller than the reply: the socket takes it in
		// part, whatever the host's default buffer size.
		if err := c.conn.SetWriteBuffer(64 << 10); err != nil {
			t.Fatal(err)
		}
		c.out.mu.Lock()
		inner := c.out.send
		c.out.send = func(b []byte) int {
			n := inner(b)
			switch {
			case n == len(b):
				whole++
			case n > 0:
				part++
			default:
				none++
			}
			return n
		}
		c.out.mu.Unlock()
	}
	s.mu.Unlock()
	counts := func() (int, int, int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for c := range s.conns {
			c.out.mu.Lock()
			defer c.out.mu.Unlock()
		}
		return whole, part, none
	}
	sig := func(i int) {
		s.Emit(client.ManagerPath, client.ManagerInterface, "ContainerNew", uint64(i), client.ContainerPath(1), strings.Repeat("x", 20000+i*37))
	}
	call := &godbus.Message{Type: godbus.TypeMethodCall, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:      godbus.MakeVariant(godbus.ObjectPath("/org/contid1")),
		godbus.FieldMember:    godbus.MakeVariant("Big"),
		godbus.FieldSignature: godbus.MakeVariant(godbus.SignatureOf(uint32(0))),
	}, Body: []any{uint32(300000)}}
	if _, err := raw.Write(clientMessage(t, call, 2)); err != nil {
		t.Fatal(err)
	}
	// The signals must come after the reply: wait until it was sent.
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if w, p, n := counts(); w+p+n > 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the reply was never sent at once")
		}
	}
	for i := 0; i < 3; i++ {
		sig(i)
	}
	w, p, n := counts()
	t.Logf("sent at once: %d whole, %d in part, %d not at all", w, p, n)
	time.Sleep(300 * time.Millisecond)
	last := uint32(1)
	for i := 0; i < 4; i++ {
		msg, err := godbus.DecodeMessage(rd)
		if err != nil {
			t.Fatalf("message %d: %v (slow peers %d)", i, err, s.slowPeers.Load())
		}
		if msg.Serial() != last+1 {
			t.Fatalf("message %d: serial %d after %d", i, msg.Serial(), last)
		}
		last = msg.Serial()
		if i == 0 {
			if msg.Type != godbus.TypeMethodReply || len(msg.Body[0].(string)) != 300000 {
				t.Fatalf("message 0 is %v, want the 300000-byte reply", msg.Type)
			}
			continue
		}
		k := i - 1
		if msg.Type != godbus.TypeSignal || msg.Body[0].(uint64) != uint64(k) || len(msg.Body[2].(string)) != 20000+k*37 {
			t.Fatalf("message %d: %v %v, want signal %d", i, msg.Type, msg.Body[0], k)
		}
	}
	if p == 0 {
		t.Errorf("no send was cut short: the test did not exercise partial sends")
	}
	raw.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.budget.mu.Lock()
		total, groups := s.budget.total, len(s.budget.byGroup)
		s.budget.mu.Unlock()
		if total == 0 && groups == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("budget holds %d bytes in %d groups after the peer left", total, groups)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

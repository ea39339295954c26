package p2p

import (
	"bytes"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
)

func echoCall(t *testing.T, serial uint32) []byte {
	return clientMessage(t, &godbus.Message{Type: godbus.TypeMethodCall, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:      godbus.MakeVariant(godbus.ObjectPath("/org/contid1")),
		godbus.FieldMember:    godbus.MakeVariant("Echo"),
		godbus.FieldSignature: godbus.MakeVariant(godbus.SignatureOf("")),
	}, Body: []any{"x"}}, serial)
}

// Over a real socket, as a user (echoer puts every caller in UID 1000's
// group) with the shipped figures: Hello and 999 pipelined calls are
// answered at once, the next 200 at 100 a second.
func TestRateBurstOverSocket(t *testing.T) {
	_, raw, rd := authenticatedPeer(t, echoer{})
	serial := uint32(1)
	round := func(n int, first bool) time.Duration {
		var buf bytes.Buffer
		if first {
			buf.Write(helloMessage(t))
			n--
		}
		for i := 0; i < n; i++ {
			serial++
			buf.Write(echoCall(t, serial))
		}
		if first {
			n++
		}
		start := time.Now()
		go func() { _, _ = raw.Write(buf.Bytes()) }()
		for got := 0; got < n; {
			msg, err := godbus.DecodeMessage(rd)
			if err != nil {
				t.Fatalf("after %d replies: %v", got, err)
			}
			if msg.Type == godbus.TypeMethodReply {
				got++
			}
		}
		return time.Since(start)
	}
	if d := round(1000, true); d > 500*time.Millisecond {
		t.Errorf("the burst of 1,000 took %v", d)
	} else {
		t.Logf("1,000 calls at once: %v", d)
	}
	if d := round(200, false); d < 1800*time.Millisecond || d > 2600*time.Millisecond {
		t.Errorf("200 calls past the burst took %v, want about 2 s", d)
	} else {
		t.Logf("200 calls past the burst: %v", d)
	}
}

// Signals are written by the queue's writer, not the reader that sleeps
// for its rate: a client whose calls wait still gets its signals at once.
// Control: its call is indeed held back.
func TestRateSignalsNotLimited(t *testing.T) {
	s, raw, rd := authenticatedPeer(t, echoer{})
	if _, err := raw.Write(helloMessage(t)); err != nil {
		t.Fatal(err)
	}
	if m, err := godbus.DecodeMessage(rd); err != nil || m.Type != godbus.TypeMethodReply {
		t.Fatalf("Hello reply: %v %v", m, err)
	}
	// The reader holds the token for the next message already; after
	// that one, 5 s of debt.
	for i := 0; i < 1500; i++ {
		s.messages.take(Group{UID: 1000}, time.Now())
	}
	if _, err := raw.Write(echoCall(t, 2)); err != nil {
		t.Fatal(err)
	}
	if m, err := godbus.DecodeMessage(rd); err != nil || m.Type != godbus.TypeMethodReply {
		t.Fatalf("reply 2: %v %v", m, err)
	}
	if _, err := raw.Write(echoCall(t, 3)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < 100; i++ {
		s.Emit(client.ManagerPath, client.ManagerInterface, "ContainerNew", uint64(i), client.ContainerPath(1), "n")
	}
	for i := 0; i < 100; i++ {
		m, err := godbus.DecodeMessage(rd)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type != godbus.TypeSignal {
			t.Fatalf("message %d is %v before the signals: the call was not held back", i, m.Type)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("100 signals took %v", d)
	}
	m, err := godbus.DecodeMessage(rd)
	if err != nil || m.Type != godbus.TypeMethodReply {
		t.Fatalf("reply 3: %v %v", m, err)
	}
	if d := time.Since(start); d < 4*time.Second {
		t.Errorf("the call past the rate was answered after %v, want about 5 s", d)
	} else {
		t.Logf("signals at once; the call held back %v", d)
	}
}

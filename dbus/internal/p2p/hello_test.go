package p2p

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
)

// sd-bus (busctl and every systemd tool) fails a connection with EIO when
// anything but the reply to its Hello arrives first, so a signal the
// server broadcasts while a client is between authentication and Hello
// must wait. This was seen in the VM tier as busctl's "Call failed:
// Input/output error" when a container exited just as a client connected.
// The test plays that client byte by byte: authenticate, let a signal
// fire, send Hello, and require the Hello reply first; then a later signal
// must come through, or the check above could not fail.
func TestSignalsWaitForHelloReply(t *testing.T) {
	s, raw, rd := authenticatedPeer(t, &recorder{})

	// The connection was accepted before the server answered AUTH, so
	// it is among those signals go to; it has not said Hello yet. What
	// Emit queues is written in order, so a wrongly queued signal would
	// come ahead of the Hello reply.
	signal := func(name string) {
		s.Emit(client.ManagerPath, client.ManagerInterface, "ContainerNew", uint64(7), client.ContainerPath(7), name)
	}
	signal("before-hello")

	// sd-bus's Hello is serial 1.
	if _, err := raw.Write(helloMessage(t)); err != nil {
		t.Fatal(err)
	}

	first, err := godbus.DecodeMessage(rd)
	if err != nil {
		t.Fatalf("reading the first message: %v", err)
	}
	if first.Type != godbus.TypeMethodReply || first.Headers[godbus.FieldReplySerial].Value() != uint32(1) {
		t.Fatalf("first message after Hello is %v %v, want the reply to Hello (serial 1)", first.Type, first.Headers)
	}

	signal("after-hello")
	for {
		msg, err := godbus.DecodeMessage(rd)
		if err != nil {
			t.Fatalf("no ContainerNew signal after the Hello reply: %v", err)
		}
		if msg.Type == godbus.TypeSignal && msg.Headers[godbus.FieldMember].Value() == "ContainerNew" {
			if name := msg.Body[2]; name != "after-hello" {
				t.Fatalf("the signal after Hello is the one for %v", name)
			}
			return
		}
	}
}

// authenticatedPeer serves d on a socket of its own and connects to it as
// a raw client that has authenticated (EXTERNAL, as the test's UID) and
// sent BEGIN, so that the test writes and reads every byte from then on.
// The server stops when the test ends.
func authenticatedPeer(t *testing.T, d Dispatcher) (*Server, net.Conn, *bufio.Reader) {
	t.Helper()
	s, err := New(d, func(int, string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "bus")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	raw, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	_ = raw.SetDeadline(time.Now().Add(60 * time.Second))
	rd := bufio.NewReader(raw)
	uid := hex.EncodeToString([]byte(strconv.Itoa(os.Geteuid())))
	if _, err := raw.Write([]byte("\x00AUTH EXTERNAL " + uid + "\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := rd.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "OK ") {
		t.Fatalf("AUTH EXTERNAL: %q, %v", line, err)
	}
	if _, err := raw.Write([]byte("BEGIN\r\n")); err != nil {
		t.Fatal(err)
	}
	return s, raw, rd
}

// helloMessage is a client's Hello, serial 1.
func helloMessage(t *testing.T) []byte {
	return clientMessage(t, &godbus.Message{Type: godbus.TypeMethodCall, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:        godbus.MakeVariant(godbus.ObjectPath("/org/freedesktop/DBus")),
		godbus.FieldInterface:   godbus.MakeVariant("org.freedesktop.DBus"),
		godbus.FieldMember:      godbus.MakeVariant("Hello"),
		godbus.FieldDestination: godbus.MakeVariant("org.freedesktop.DBus"),
	}}, 1)
}

// clientMessage encodes m as a client sends it, with the given serial.
func clientMessage(t *testing.T, m *godbus.Message, serial uint32) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := m.EncodeTo(&buf, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	binary.LittleEndian.PutUint32(b[8:12], serial)
	return b
}

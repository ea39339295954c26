package dbus_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
)

// sd-bus (busctl and every systemd tool) fails a connection with EIO when
// anything but the reply to its Hello arrives first, so a signal contidd
// broadcasts while a client is between authentication and Hello must wait.
// This was seen in the VM tier as busctl's "Call failed: Input/output
// error" when a container exited just as a client connected. The test
// plays that client byte by byte: authenticate, let a signal fire, send
// Hello, and require the Hello reply first; then a later signal must come
// through, or the check above could not fail.
func TestP2PSignalsWaitForHelloReply(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	raw, err := net.Dial("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
	rd := bufio.NewReader(raw)
	uid := hex.EncodeToString([]byte(strconv.Itoa(os.Getuid())))
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

	// A new container is announced to every connection that may get
	// signals; this one has not said Hello yet.
	tagger := e.p2pClient()
	if _, err := tagger.TagCgroup(ctx, e.cgroup("before-hello"), 0, client.TagOptions{}); err != nil {
		t.Fatal(err)
	}
	// Give a wrongly sent signal time to arrive ahead of the Hello.
	time.Sleep(300 * time.Millisecond)

	hello := &godbus.Message{Type: godbus.TypeMethodCall, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:        godbus.MakeVariant(godbus.ObjectPath("/org/freedesktop/DBus")),
		godbus.FieldInterface:   godbus.MakeVariant("org.freedesktop.DBus"),
		godbus.FieldMember:      godbus.MakeVariant("Hello"),
		godbus.FieldDestination: godbus.MakeVariant("org.freedesktop.DBus"),
	}}
	var buf bytes.Buffer
	if err := hello.EncodeTo(&buf, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	binary.LittleEndian.PutUint32(b[8:12], 1) // sd-bus's Hello is serial 1
	if _, err := raw.Write(b); err != nil {
		t.Fatal(err)
	}

	first, err := godbus.DecodeMessage(rd)
	if err != nil {
		t.Fatalf("reading the first message: %v", err)
	}
	if first.Type != godbus.TypeMethodReply || first.Headers[godbus.FieldReplySerial].Value() != uint32(1) {
		t.Fatalf("first message after Hello is %v %v, want the reply to Hello (serial 1)", first.Type, first.Headers)
	}

	if _, err := tagger.TagCgroup(ctx, e.cgroup("after-hello"), 0, client.TagOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := godbus.DecodeMessage(rd)
		if err != nil {
			t.Fatalf("no ContainerNew signal after the Hello reply: %v", err)
		}
		if msg.Type == godbus.TypeSignal && msg.Headers[godbus.FieldMember].Value() == "ContainerNew" {
			return
		}
	}
}

package dbus

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
)

// busMessage is a message as dbus-daemon would forward it, with a sender.
func busMessage(t testing.TB, order binary.ByteOrder, typ godbus.Type, sender string, body ...any) []byte {
	t.Helper()
	msg := &godbus.Message{Type: typ, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:        godbus.MakeVariant(client.ManagerPath),
		godbus.FieldInterface:   godbus.MakeVariant(client.ManagerInterface),
		godbus.FieldMember:      godbus.MakeVariant("ListContainers"),
		godbus.FieldDestination: godbus.MakeVariant(client.BusName),
	}, Body: body}
	if sender != "" {
		msg.Headers[godbus.FieldSender] = godbus.MakeVariant(sender)
	}
	if len(body) > 0 {
		msg.Headers[godbus.FieldSignature] = godbus.MakeVariant(godbus.SignatureOf(body...))
	}
	var buf bytes.Buffer
	if err := msg.EncodeTo(&buf, order); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	order.PutUint32(b[8:12], 9)
	return b
}

// headerFields is the header field array of an encoded message, without
// its padding.
func headerFields(raw []byte) ([]byte, binary.ByteOrder, bool) {
	if len(raw) < 16 {
		return nil, nil, false
	}
	order := byteOrder(raw[0])
	n := uint64(order.Uint32(raw[12:16]))
	if 16+n > uint64(len(raw)) {
		return nil, nil, false
	}
	return raw[16 : 16+n], order, true
}

func TestHeaderSender(t *testing.T) {
	le, be := binary.LittleEndian, binary.BigEndian
	for _, tt := range []struct {
		name   string
		raw    []byte
		sender string
		found  bool
	}{
		{"little-endian call", busMessage(t, le, godbus.TypeMethodCall, ":1.42", "x"), ":1.42", true},
		{"big-endian call", busMessage(t, be, godbus.TypeMethodCall, ":1.7", uint32(3)), ":1.7", true},
		{"signal", busMessage(t, le, godbus.TypeSignal, ":1.9"), ":1.9", true},
		{"no sender", busMessage(t, le, godbus.TypeMethodCall, ""), "", false},
		{"long sender", busMessage(t, le, godbus.TypeMethodCall, ":1.123456789"), ":1.123456789", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fields, order, _ := headerFields(tt.raw)
			got, ok := headerString(fields, order, byte(godbus.FieldSender))
			if ok != tt.found || got != tt.sender {
				t.Errorf("got %q, %v; want %q, %v", got, ok, tt.sender, tt.found)
			}
			// Every truncation of the fields is walked without a panic
			// and yields the sender or nothing.
			for i := range fields {
				if got, ok := headerString(fields[:i], order, byte(godbus.FieldSender)); ok && got != tt.sender {
					t.Fatalf("fields cut at %d: got %q", i, got)
				}
			}
		})
	}
}

func TestUnixSocketName(t *testing.T) {
	for _, tt := range []struct {
		entry, name string
		ok          bool
	}{
		{"unix:path=/run/dbus/system_bus_socket", "/run/dbus/system_bus_socket", true},
		{"unix:path=/tmp/a%20b,guid=0123", "/tmp/a b", true},
		{"unix:abstract=/tmp/dbus-X", "@/tmp/dbus-X", true},
		{"unix:path=/a,abstract=b", "", false},
		{"unix:guid=0123", "", false},
		{"tcp:host=localhost,port=1", "", false},
		{"unix:path=/a%zz", "", false},
	} {
		t.Run(tt.entry, func(t *testing.T) {
			name, err := unixSocketName(tt.entry)
			if (err == nil) != tt.ok || name != tt.name {
				t.Errorf("got %q, %v; want %q, ok %v", name, err, tt.name, tt.ok)
			}
		})
	}
}

// FuzzHeaderSender checks the relay's walk of header fields against
// godbus: on any input, a sender the walk finds is the one godbus
// decodes; and in any message godbus encodes, the walk finds the sender
// whatever it is. Seeds: testdata/fuzz/FuzzHeaderSender.
func FuzzHeaderSender(f *testing.F) {
	le, be := binary.LittleEndian, binary.BigEndian
	f.Add(busMessage(f, le, godbus.TypeMethodCall, ":1.42", "x"), ":1.42", false)
	f.Add(busMessage(f, be, godbus.TypeSignal, ":1.7", uint32(3)), ":1.7000", true)
	f.Fuzz(func(t *testing.T, raw []byte, sender string, bigEndian bool) {
		if fields, order, ok := headerFields(raw); ok {
			got, found := headerString(fields, order, byte(godbus.FieldSender))
			if msg, err := godbus.DecodeMessage(bytes.NewReader(raw)); err == nil && found {
				if want, _ := msg.Headers[godbus.FieldSender].Value().(string); got != want {
					t.Fatalf("relay found sender %q; godbus decoded %q", got, want)
				}
			}
		}
		if sender == "" || !utf8.ValidString(sender) || strings.ContainsRune(sender, 0) {
			return // godbus does not encode it
		}
		var order binary.ByteOrder = le
		if bigEndian {
			order = be
		}
		fields, _, _ := headerFields(busMessage(t, order, godbus.TypeMethodCall, sender, raw))
		if got, found := headerString(fields, order, byte(godbus.FieldSender)); !found || got != sender {
			t.Fatalf("relay found %q, %v in a message from %q", got, found, sender)
		}
	})
}

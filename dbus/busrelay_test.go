package dbus

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

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
	}{
		{"little-endian call", busMessage(t, le, godbus.TypeMethodCall, ":1.42", "x"), ":1.42"},
		{"big-endian call", busMessage(t, be, godbus.TypeMethodCall, ":1.7", uint32(3)), ":1.7"},
		{"signal", busMessage(t, le, godbus.TypeSignal, ":1.9"), ":1.9"},
		{"no sender", busMessage(t, le, godbus.TypeMethodCall, ""), ""},
		{"long sender", busMessage(t, le, godbus.TypeMethodCall, ":1.123456789"), ":1.123456789"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fields, order, _ := headerFields(tt.raw)
			h, ok := parseHeaderFields(&sliceFields{b: fields}, order)
			if !ok || h.sender != tt.sender || h.destination != client.BusName {
				t.Errorf("got %+v, %v; want sender %q", h, ok, tt.sender)
			}
			// Streamed, the walk finds the same.
			in, cleanup := streamOf(t, fields)
			defer cleanup()
			src := &streamFields{in: in, left: int64(len(fields))}
			if hs, ok := parseHeaderFields(src, order); !ok || hs != h {
				t.Errorf("streamed: got %+v, %v; want %+v", hs, ok, h)
			}
			// Every truncation of the fields is walked without a panic
			// and yields the sender or nothing.
			for i := range fields {
				if h, ok := parseHeaderFields(&sliceFields{b: fields[:i]}, order); ok && h.sender != "" && h.sender != tt.sender {
					t.Fatalf("fields cut at %d: got %q", i, h.sender)
				}
			}
		})
	}
}

// streamOf is a relayReader from which fields can be read, as the relay
// reads from the bus.
func streamOf(t *testing.T, fields []byte) (*relayReader, func()) {
	t.Helper()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pair[1])
	if _, err := unix.Write(pair[1], fields); err != nil {
		t.Fatal(err)
	}
	c, err := fileUnixConn(pair[0], "test")
	if err != nil {
		t.Fatal(err)
	}
	return &relayReader{conn: c, oob: make([]byte, unix.CmsgSpace(4*4))}, func() { c.Close() }
}

func TestDescriptorArgs(t *testing.T) {
	for _, tt := range []struct {
		sig    string
		top    int
		nested bool
	}{
		{"hta{sv}", 1, false},
		{"", 0, false},
		{"hh", 2, false},
		{"ah", 0, true},
		{"a{sh}", 0, true},
		{"(h)", 0, true},
		{"aah", 0, true},
		{"sa(ih)h", 1, true},
		{"v", 0, false},
		{"a", 0, true},
		{"(h", 0, true},
	} {
		t.Run(tt.sig, func(t *testing.T) {
			if top, nested := descriptorArgs(tt.sig); top != tt.top || nested != tt.nested {
				t.Errorf("got %d, %v; want %d, %v", top, nested, tt.top, tt.nested)
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
			h, found := parseHeaderFields(&sliceFields{b: fields}, order)
			if msg, err := godbus.DecodeMessage(bytes.NewReader(raw)); err == nil && found {
				want := func(f godbus.HeaderField) string {
					switch v := msg.Headers[f].Value().(type) {
					case string:
						if len(v) <= 255 {
							return v
						}
					case godbus.Signature:
						return v.String()
					}
					return ""
				}
				fds, _ := msg.Headers[godbus.FieldUnixFDs].Value().(uint32)
				if h.sender != want(godbus.FieldSender) || h.destination != want(godbus.FieldDestination) || h.signature != want(godbus.FieldSignature) || h.unixFDs != fds {
					t.Fatalf("relay read %+v; godbus decoded %v", h, msg.Headers)
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
		if len(sender) > 255 {
			return // no bus name is this long
		}
		fields, _, _ := headerFields(busMessage(t, order, godbus.TypeMethodCall, sender, raw))
		if h, found := parseHeaderFields(&sliceFields{b: fields}, order); !found || h.sender != sender || h.signature != "ay" {
			t.Fatalf("relay read %+v, %v in a message from %q", h, found, sender)
		}
	})
}

package p2p

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

// rawPing is a Ping call as it comes off the wire, with the serial and
// the header flags byte given.
func rawPing(t *testing.T, serial uint32, flags byte) []byte {
	t.Helper()
	msg := &godbus.Message{Type: godbus.TypeMethodCall, Headers: map[godbus.HeaderField]godbus.Variant{
		godbus.FieldPath:   godbus.MakeVariant(godbus.ObjectPath("/org/contid1")),
		godbus.FieldMember: godbus.MakeVariant("Ping"),
	}}
	var buf bytes.Buffer
	if err := msg.EncodeTo(&buf, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	binary.LittleEndian.PutUint32(raw[8:12], serial)
	raw[2] = flags
	return raw
}

// A message is decoded only with a serial the specification allows: a
// reply to serial 0 could not name its call.
func TestDecodeMessageSerial(t *testing.T) {
	for _, tt := range []struct {
		name    string
		serial  uint32
		wantErr string
	}{
		{"serial 1", 1, ""},
		{"the largest serial", ^uint32(0), ""},
		{"serial 0", 0, "serial 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := decodeMessage(rawPing(t, tt.serial, 0), nil)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.wantErr == "" && got.Serial() != tt.serial:
				t.Fatalf("serial %d, want %d", got.Serial(), tt.serial)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
			}
		})
	}
}

// Header flags the specification does not define are ignored, as it says
// they must be: the call is decoded with the flags it knows kept.
func TestDecodeMessageUnknownFlags(t *testing.T) {
	for _, tt := range []struct {
		name  string
		flags byte
		want  godbus.Flags
	}{
		{"no flags", 0, 0},
		{"no reply expected", 0x1, godbus.FlagNoReplyExpected},
		{"an unknown flag alone", 0x80, 0},
		{"an unknown flag with a known one", 0x81, godbus.FlagNoReplyExpected},
		{"every flag", 0xff, godbus.FlagNoReplyExpected | godbus.FlagNoAutoStart | godbus.FlagAllowInteractiveAuthorization},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := decodeMessage(rawPing(t, 7, tt.flags), nil)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if got.Flags != tt.want {
				t.Fatalf("flags %#x, want %#x", got.Flags, tt.want)
			}
		})
	}
}

package p2p

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

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
			msg := &godbus.Message{Type: godbus.TypeMethodCall, Headers: map[godbus.HeaderField]godbus.Variant{
				godbus.FieldPath:   godbus.MakeVariant(godbus.ObjectPath("/org/contid1")),
				godbus.FieldMember: godbus.MakeVariant("Ping"),
			}}
			var buf bytes.Buffer
			if err := msg.EncodeTo(&buf, binary.LittleEndian); err != nil {
				t.Fatal(err)
			}
			raw := buf.Bytes()
			binary.LittleEndian.PutUint32(raw[8:12], tt.serial)
			got, _, err := decodeMessage(raw, nil)
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

package wire

import (
	"encoding/binary"
	"errors"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

// The length comes from the fixed header in either byte order, with the
// header fields padded to 8; a message over MaxMessageSize is a
// *TooLarge that still says whom to answer, and one over the protocol's
// bound, or with no valid byte order, is an error.
func TestMessageLength(t *testing.T) {
	hdr := func(order byte, typ godbus.Type, flags godbus.Flags, body, serial, fields uint32) []byte {
		b := []byte{order, byte(typ), byte(flags), 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		var o binary.ByteOrder = binary.LittleEndian
		if order == 'B' {
			o = binary.BigEndian
		}
		o.PutUint32(b[4:], body)
		o.PutUint32(b[8:], serial)
		o.PutUint32(b[12:], fields)
		return b
	}
	call := godbus.TypeMethodCall
	tests := []struct {
		name      string
		hdr       []byte
		want      int
		tooLarge  bool
		wantReply bool
		err       bool
	}{
		{"little-endian", hdr('l', call, 0, 8, 1, 13), 16 + 16 + 8, false, false, false},
		{"big-endian", hdr('B', call, 0, 8, 1, 16), 16 + 16 + 8, false, false, false},
		{"at the bound", hdr('l', call, 0, MaxMessageSize-16-8, 1, 8), MaxMessageSize, false, false, false},
		{"a byte over", hdr('l', call, 0, MaxMessageSize-16-8+1, 9, 8), 0, true, true, false},
		{"over, no reply wanted", hdr('l', call, godbus.FlagNoReplyExpected, MaxMessageSize, 9, 8), 0, true, false, false},
		{"over, a signal", hdr('l', godbus.TypeSignal, 0, MaxMessageSize, 9, 8), 0, true, false, false},
		{"over the protocol's bound", hdr('l', call, 0, ProtocolMaxMessage, 1, 8), 0, false, false, true},
		{"bad byte order", hdr('x', call, 0, 8, 1, 8), 0, false, false, true},
	}
	for _, tt := range tests {
		got, err := MessageLength(tt.hdr)
		var big *TooLarge
		switch {
		case tt.tooLarge:
			if !errors.As(err, &big) {
				t.Errorf("%s: %d, %v; want a *TooLarge", tt.name, got, err)
			} else if big.WantsReply() != tt.wantReply || big.Serial != 9 {
				t.Errorf("%s: %+v wants reply %v; want %v, serial 9", tt.name, big, big.WantsReply(), tt.wantReply)
			}
		case tt.err:
			if err == nil || errors.As(err, &big) {
				t.Errorf("%s: %d, %v; want a protocol error", tt.name, got, err)
			}
		case err != nil || got != tt.want:
			t.Errorf("%s: %d, %v; want %d", tt.name, got, err, tt.want)
		}
	}
}

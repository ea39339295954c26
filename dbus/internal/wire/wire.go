// Package wire frames D-Bus messages from their fixed header, for both of
// contidd's transports: the peer-to-peer server, which reads its peers'
// messages, and the system-bus relay, which screens what dbus-daemon
// sends before godbus decodes it. Both hold a message to the same bound,
// and skip a larger one unread.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"
)

const (
	// MaxMessageSize: every call contidd serves fits in far less, and a
	// message is refused from its fixed header, before it is read or
	// decoded. The bound holds for root too: decoding multiplies a body's
	// size (16 MiB of variants became 300 MiB of Go values), so what a
	// client may send, not only what it may hold, must be small. A larger
	// message is read into a small scratch buffer and dropped.
	MaxMessageSize = 64 << 10
	// ProtocolMaxMessage is the D-Bus specification's bound. A message
	// between the two is skipped unread and answered with an error.
	ProtocolMaxMessage = 128 << 20
)

// TooLarge is a message over MaxMessageSize, skipped without being
// decoded; the fixed header still says whom to answer.
type TooLarge struct {
	Length uint64
	Serial uint32
	Type   godbus.Type
	Flags  godbus.Flags
}

func (e *TooLarge) Error() string {
	return fmt.Sprintf("protocol: message of %d bytes exceeds %d", e.Length, MaxMessageSize)
}

// WantsReply tells a call that expects an answer, which then is an error.
func (e *TooLarge) WantsReply() bool {
	return e.Type == godbus.TypeMethodCall && e.Flags&godbus.FlagNoReplyExpected == 0 && e.Serial != 0
}

// MessageLength is the length of a whole message from its 16-byte fixed
// header. One over MaxMessageSize is a *TooLarge, up to the protocol's
// own bound; beyond that the stream cannot be trusted.
func MessageLength(hdr []byte) (int, error) {
	var order binary.ByteOrder
	switch hdr[0] {
	case 'l':
		order = binary.LittleEndian
	case 'B':
		order = binary.BigEndian
	default:
		return 0, errors.New("protocol: bad byte order mark")
	}
	bodyLen := uint64(order.Uint32(hdr[4:8]))
	fieldsLen := uint64(order.Uint32(hdr[12:16]))
	total := 16 + (fieldsLen+7)&^7 + bodyLen
	switch {
	case total > ProtocolMaxMessage:
		return 0, fmt.Errorf("protocol: message of %d bytes exceeds the D-Bus limit of %d", total, ProtocolMaxMessage)
	case total > MaxMessageSize:
		return 0, &TooLarge{Length: total, Serial: order.Uint32(hdr[8:12]), Type: godbus.Type(hdr[1]), Flags: godbus.Flags(hdr[2])}
	}
	return int(total), nil
}

// CloseAll closes descriptors that came with a message and that nothing
// will use.
// IgnoreUnknownFlags clears the header flags the specification does not
// define (byte 2 of the fixed header), which it says must be ignored.
// godbus refuses a message that has one: the bus relay would drop the
// call unanswered, leaving the caller to its timeout, and the
// peer-to-peer server would take it for a protocol error.
func IgnoreUnknownFlags(msg []byte) {
	const known = godbus.FlagNoReplyExpected | godbus.FlagNoAutoStart | godbus.FlagAllowInteractiveAuthorization
	if len(msg) > 2 {
		msg[2] &= byte(known)
	}
}

func CloseAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

package p2p

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"unicode/utf8"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/dbus/internal/wire"
)

// The ListContainers reply is the one body that grows with the number of
// containers. godbus encodes by reflection and allocates for every field
// it writes: at 4,000 containers a reply cost 60,000 allocations and
// 2.9 MB of garbage, which the collector then chases while every other
// call waits. That body is written here directly instead; its bytes are
// the ones godbus writes (TestRowsBody).

// rowsSignature is the signature of a []client.ContainerRow body.
var rowsSignature = godbus.SignatureOf([]client.ContainerRow(nil))

// encodeRowsMessage encodes msg, whose body is one []client.ContainerRow,
// little-endian: godbus writes the header (which says the signature), and
// the body is appended to it.
func encodeRowsMessage(msg *godbus.Message, rows []client.ContainerRow) ([]byte, error) {
	// godbus refused what a client would refuse to read; so must this.
	for _, r := range rows {
		if !validString(r.Name) || !validString(r.Unit) || !validString(r.Cgroup) {
			return nil, errors.New("dbus: a container row holds a string that is not valid UTF-8 or holds a NUL")
		}
		if !validObjectPath(string(r.Path)) {
			return nil, errors.New("dbus: a container row holds an invalid object path")
		}
	}
	head := *msg
	head.Body = nil
	head.Headers = make(map[godbus.HeaderField]godbus.Variant, len(msg.Headers)+1)
	for k, v := range msg.Headers {
		head.Headers[k] = v
	}
	head.Headers[godbus.FieldSignature] = godbus.MakeVariant(rowsSignature)
	b, err := encodeMessage(&head)
	if err != nil {
		return nil, err
	}
	// godbus pads the header to 8 bytes, where a body starts.
	start := len(b)
	b = appendRows(slices.Grow(b, rowsSize(rows)), rows)
	// The array's length: the body less its own length field and the
	// padding to the first element.
	if len(b)-start-8 > maxArrayLen {
		return nil, errors.New("dbus: the container rows exceed the D-Bus array limit of 64 MiB")
	}
	if len(b) > wire.ProtocolMaxMessage {
		return nil, errors.New("dbus: message is too long")
	}
	binary.LittleEndian.PutUint32(b[4:8], uint32(len(b)-start))
	return b, nil
}

// rowsSize bounds the bytes appendRows writes, so the reply is
// allocated once.
func rowsSize(rows []client.ContainerRow) int {
	n := 12
	for _, r := range rows {
		// Padding, two numbers, and four strings' lengths and NULs.
		n += 7 + 16 + 7 + 4*(4+1+3) + len(r.Name) + len(r.Unit) + len(r.Cgroup) + len(r.Path)
	}
	return n
}

// appendRows appends rows as the D-Bus type a(tsssto), little-endian.
// Alignment is counted from the start of b, which must be where the
// message starts.
func appendRows(b []byte, rows []client.ContainerRow) []byte {
	b = pad(b, 4)
	lenAt := len(b)
	b = binary.LittleEndian.AppendUint32(b, 0)
	// The array's length counts from its first element, after the
	// padding that aligns it, and is written even when empty.
	b = pad(b, 8)
	first := len(b)
	for _, r := range rows {
		b = pad(b, 8)
		b = binary.LittleEndian.AppendUint64(b, r.ID)
		b = appendString(b, r.Name)
		b = appendString(b, r.Unit)
		b = appendString(b, r.Cgroup)
		b = pad(b, 8)
		b = binary.LittleEndian.AppendUint64(b, r.Parent)
		b = appendString(b, string(r.Path))
	}
	binary.LittleEndian.PutUint32(b[lenAt:], uint32(len(b)-first))
	return b
}

// appendString writes a string or an object path: its length, its
// bytes, and a NUL.
func appendString(b []byte, s string) []byte {
	b = pad(b, 4)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	b = append(b, s...)
	return append(b, 0)
}

func pad(b []byte, align int) []byte {
	for len(b)%align != 0 {
		b = append(b, 0)
	}
	return b
}

// maxArrayLen is the specification's bound on an array's bytes; godbus
// and sd-bus refuse a message with a longer one.
const maxArrayLen = 1 << 26

// validString: what a D-Bus string may hold, valid UTF-8 and no NUL.
func validString(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// validObjectPath is godbus's ObjectPath.IsValid without its allocations:
// "/", or "/"-separated non-empty elements of [A-Za-z0-9_].
func validObjectPath(s string) bool {
	if s == "/" {
		return true
	}
	if len(s) < 2 || s[0] != '/' || s[len(s)-1] == '/' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '/':
			if s[i-1] == '/' {
				return false
			}
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		default:
			return false
		}
	}
	return true
}

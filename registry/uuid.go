package registry

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/contid/contid"
)

// A container's instance UUID names it across a fleet. Its audit
// container ID is unique on one host only: container 42 exists on every
// host, and a host that lost its state directory may hand 42 out again.
// The UUID is drawn at random (RFC 9562 version 4) when the record is
// made, unless the caller brings one of its own (an orchestrator's pod
// UID), and never changes.

// nilUUID and maxUUID are RFC 9562's two special values: they mean "none"
// and "any" to whoever reads them, never one container.
const (
	nilUUID = "00000000-0000-0000-0000-000000000000"
	maxUUID = "ffffffff-ffff-ffff-ffff-ffffffffffff"
)

// NewUUID returns a random version 4 UUID in its canonical text.
func NewUUID() string {
	var b [16]byte
	// crypto/rand.Read never fails: the runtime crashes the program
	// rather than hand out predictable bytes.
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // variant 10 (RFC 9562)
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}

// ValidateUUID checks a container UUID a caller brings: RFC 9562's
// canonical text, 8-4-4-4-12 lowercase hex digits. Any version is
// accepted (a pod UID need not be version 4); the nil and max UUIDs are
// not, as they name no container. UUIDs are compared as text, in the
// registry and in journal matches, so only one spelling gets in, and an
// upper-case or braced one is refused with the spelling to use. Empty
// means "none" (draw one).
func ValidateUUID(s string) error {
	if s == "" {
		return nil
	}
	if len(s) != 36 {
		return fmt.Errorf("%w: UUID %q is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", contid.ErrInvalidArgs, Truncate(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return fmt.Errorf("%w: UUID %q is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", contid.ErrInvalidArgs, s)
			}
		case c >= '0' && c <= '9' || c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			return fmt.Errorf("%w: UUID %q is not in canonical lower case (did you mean %q?)", contid.ErrInvalidArgs, s, strings.ToLower(s))
		default:
			return fmt.Errorf("%w: UUID %q holds %q, not a hex digit", contid.ErrInvalidArgs, s, c)
		}
	}
	if s == nilUUID || s == maxUUID {
		return fmt.Errorf("%w: %s is RFC 9562's %s UUID, which names no container", contid.ErrInvalidArgs, s, map[string]string{nilUUID: "nil", maxUUID: "max"}[s])
	}
	return nil
}

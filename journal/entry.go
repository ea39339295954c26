// Package journal writes contid's journal entries: audit events enriched
// with their container, and contid's own records, over journald's native
// protocol.
//
// The writer is our own rather than go-systemd's journal.Send because the
// socket path must be configurable (tests point it at a private journald)
// and because it runs once per audit event: entries are built in a reused
// buffer and sent without allocating.
package journal

import (
	"encoding/binary"
	"errors"
	"strconv"
)

// ErrFieldName: a field name journald would reject.
var ErrFieldName = errors.New("invalid journal field name")

// maxFieldName is journald's limit on field name length.
const maxFieldName = 64

// Entry is one journal entry in the native protocol encoding, built in
// place. The zero value is empty and ready; Reset reuses the memory.
type Entry struct {
	buf []byte
}

// Reset empties the entry, keeping its buffer.
func (e *Entry) Reset() { e.buf = e.buf[:0] }

// Bytes is the encoded entry.
func (e *Entry) Bytes() []byte { return e.buf }

// Len is the encoded size.
func (e *Entry) Len() int { return len(e.buf) }

// ValidFieldName reports whether journald accepts name from a client:
// upper-case letters, digits and '_', not starting with a digit or '_'
// (leading '_' is reserved for trusted fields), at most 64 bytes.
func ValidFieldName(name string) bool {
	if name == "" || len(name) > maxFieldName || name[0] == '_' || (name[0] >= '0' && name[0] <= '9') {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Add appends a field. name must be a valid field name: callers pass
// constants, and sanitise anything else through AddSanitized. The value
// may hold any bytes; a newline switches to the length-prefixed form.
func (e *Entry) Add(name, value string) {
	e.buf = append(e.buf, name...)
	e.buf = appendValue(e.buf, value)
}

// AddBytes is Add for a byte slice value.
func (e *Entry) AddBytes(name string, value []byte) {
	e.buf = append(e.buf, name...)
	e.buf = appendValue(e.buf, value)
}

// AddUint appends a decimal number.
func (e *Entry) AddUint(name string, v uint64) {
	e.buf = append(e.buf, name...)
	e.buf = append(e.buf, '=')
	e.buf = strconv.AppendUint(e.buf, v, 10)
	e.buf = append(e.buf, '\n')
}

// AddSanitized appends prefix+name, with name upper-cased and every byte
// journald would refuse replaced by '_', truncated to the length limit:
// audit field names ("a1[0]", "old-auid") become AUDIT_FIELD_A1_0_ and
// AUDIT_FIELD_OLD_AUID. prefix must itself be valid.
func (e *Entry) AddSanitized(prefix, name, value string) {
	start := len(e.buf)
	e.buf = append(e.buf, prefix...)
	for i := 0; i < len(name) && len(e.buf)-start < maxFieldName; i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		default:
			c = '_'
		}
		e.buf = append(e.buf, c)
	}
	e.buf = appendValue(e.buf, value)
}

// appendValue writes "=value\n", or, when the value holds a newline,
// journald's binary-safe form: "\n", the length as 64-bit little endian,
// the bytes, "\n".
func appendValue[T ~string | ~[]byte](buf []byte, v T) []byte {
	for i := 0; i < len(v); i++ {
		if v[i] == '\n' {
			buf = append(buf, '\n')
			buf = binary.LittleEndian.AppendUint64(buf, uint64(len(v)))
			buf = append(buf, v...)
			return append(buf, '\n')
		}
	}
	buf = append(buf, '=')
	buf = append(buf, v...)
	return append(buf, '\n')
}

// The trail's entries and contidd's own messages come from the same
// process, so they share the unit (the trusted match) and
// SYSLOG_IDENTIFIER. The syslog facility tells them apart: the trail is
// RFC 5424's "log audit" (13; journalctl of systemd 252 knows it by
// number only), the daemon's own messages are "daemon" (3). `journalctl
// _SYSTEMD_UNIT=contidd.service --facility=daemon` shows the daemon
// alone, `--facility=13` the trail.
const (
	FacilityTrail  = 13
	FacilityDaemon = 3
)

// trailIdentity names the writer of an entry of the trail.
func trailIdentity(e *Entry) {
	e.Add("SYSLOG_IDENTIFIER", "contidd")
	e.AddUint("SYSLOG_FACILITY", FacilityTrail)
}

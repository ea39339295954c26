package audit

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/elastic/go-libaudit/v2/auparse"
)

// ErrBadHeader: a record does not start with "audit(<sec>.<ms>:<serial>):".
var ErrBadHeader = errors.New("malformed audit record header")

// parseHeader reads the "audit(1700000000.123:4567): " prefix every kernel
// record carries and returns the time, the event serial and the offset
// where the fields start. It does the work of auparse.Parse without its
// allocations: this runs for every record in the stream.
func parseHeader(b []byte) (time.Time, uint32, int, error) {
	const prefix = "audit("
	if !bytes.HasPrefix(b, []byte(prefix)) {
		return time.Time{}, 0, 0, ErrBadHeader
	}
	end := bytes.IndexByte(b, ')')
	if end < 0 {
		return time.Time{}, 0, 0, ErrBadHeader
	}
	stamp := b[len(prefix):end]
	dot := bytes.IndexByte(stamp, '.')
	colon := bytes.IndexByte(stamp, ':')
	if dot < 0 || colon < dot {
		return time.Time{}, 0, 0, ErrBadHeader
	}
	sec, ok1 := atou(stamp[:dot])
	ms, ok2 := atou(stamp[dot+1 : colon])
	serial, ok3 := atou(stamp[colon+1:])
	if !ok1 || !ok2 || !ok3 || serial > 1<<32-1 {
		return time.Time{}, 0, 0, ErrBadHeader
	}
	off := end + 1
	if off < len(b) && b[off] == ':' {
		off++
	}
	for off < len(b) && b[off] == ' ' {
		off++
	}
	return time.Unix(int64(sec), int64(ms)*int64(time.Millisecond)), uint32(serial), off, nil
}

func atou(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// Field is one key=value of a record, with quotes removed and hex-encoded
// untrusted strings decoded.
type Field struct {
	Key   string
	Value string
}

// Record is one netlink message of an event (SYSCALL, EXECVE, PATH, ...).
type Record struct {
	Type   auparse.AuditMessageType
	Fields []Field
}

// Get returns the first value of key in the record.
func (r *Record) Get(key string) (string, bool) {
	for _, f := range r.Fields {
		if f.Key == key {
			return f.Value, true
		}
	}
	return "", false
}

// parser splits records into fields. The strings it produces point into
// the record text or into its arena, so an event is valid only until the
// next one is parsed: the pipeline hands each event to its handler and
// then reuses everything.
type parser struct {
	arena []byte
}

func (p *parser) reset() { p.arena = p.arena[:0] }

// fields appends the fields of one record body (after the header) to dst.
// User-space records wrap their payload in msg='...'; its inner pairs are
// flattened in, as auparse does, so that op=, res= and friends of a
// VIRT_* or USER_* record are fields like any other.
func (p *parser) fields(typ auparse.AuditMessageType, body string, dst []Field) []Field {
	for i := 0; i < len(body); {
		for i < len(body) && body[i] == ' ' {
			i++
		}
		eq := strings.IndexByte(body[i:], '=')
		if eq < 0 {
			break
		}
		key := body[i : i+eq]
		if sp := strings.LastIndexByte(key, ' '); sp >= 0 {
			// A word without '=' (old kernels print "audit_enabled"
			// style tokens): skip it.
			key = key[sp+1:]
		}
		i += eq + 1
		var value string
		quoted := false
		switch {
		case i < len(body) && (body[i] == '"' || body[i] == '\''):
			q := body[i]
			end := strings.IndexByte(body[i+1:], q)
			if end < 0 {
				value = body[i+1:]
				i = len(body)
			} else {
				value = body[i+1 : i+1+end]
				i += end + 2
			}
			quoted = true
			if q == '\'' && key == "msg" {
				dst = p.fields(typ, value, dst)
				continue
			}
		default:
			end := strings.IndexByte(body[i:], ' ')
			if end < 0 {
				end = len(body) - i
			}
			value = body[i : i+end]
			i += end
		}
		if !quoted && isUntrusted(typ, key) {
			value = p.unhex(value, typ == auparse.AUDIT_PROCTITLE)
		}
		dst = append(dst, Field{Key: key, Value: value})
	}
	return dst
}

// isUntrusted says whether the kernel logs key with audit_log_untrustedstring,
// i.e. quoted when harmless and hex-encoded otherwise. Only those may be
// decoded: a SYSCALL record's a0 is a hex number, an EXECVE record's a0 is
// an encoded string.
func isUntrusted(typ auparse.AuditMessageType, key string) bool {
	switch key {
	case "comm", "exe", "name", "cwd", "path", "key", "proctitle", "old-comm", "new-comm", "data", "cmd", "vm", "ocomm":
		return true
	}
	if typ == auparse.AUDIT_EXECVE && len(key) > 1 && key[0] == 'a' && key[1] >= '0' && key[1] <= '9' {
		return !strings.HasSuffix(key, "_len")
	}
	return false
}

// unhex decodes an even-length upper-case hex value into the arena; values
// that are not hex ("(null)", "?") come back unchanged. NULs in a
// proctitle separate arguments and become spaces.
func (p *parser) unhex(v string, nulToSpace bool) string {
	if len(v) == 0 || len(v)%2 != 0 {
		return v
	}
	for i := 0; i < len(v); i++ {
		if unhexDigit(v[i]) < 0 {
			return v
		}
	}
	start := len(p.arena)
	for i := 0; i < len(v); i += 2 {
		c := byte(unhexDigit(v[i])<<4 | unhexDigit(v[i+1]))
		if c == 0 && nulToSpace {
			c = ' '
		}
		p.arena = append(p.arena, c)
	}
	out := p.arena[start:]
	if nulToSpace {
		out = bytes.TrimRight(out, " ")
	}
	// The arena may be reallocated by a later append; the old backing
	// array stays alive as long as this string refers to it.
	return unsafe.String(unsafe.SliceData(out), len(out))
}

func unhexDigit(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// syscallName maps a SYSCALL record's arch and number to a name, through
// auparse's tables; unknown pairs keep the number.
func syscallName(arch, number string) string {
	a, err := strconv.ParseUint(arch, 16, 32)
	if err != nil {
		return number
	}
	archName, ok := auparse.AuditArchNames[auparse.AuditArch(a)]
	if !ok {
		return number
	}
	n, err := strconv.Atoi(number)
	if err != nil {
		return number
	}
	if name, ok := auparse.AuditSyscalls[archName][n]; ok {
		return name
	}
	return number
}

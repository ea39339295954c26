package journal

import (
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/elastic/go-libaudit/v2/auparse"

	"github.com/contid/contid/kernel/audit"
)

// journald (systemd 252, journald-native.c) drops an entry of more than
// 1,024 fields (ENTRY_FIELD_COUNT_MAX) without telling the sender, and
// one larger than 770 MiB (ENTRY_SIZE_MAX) even through a sealed memfd.
// The kernel logs
// every execve argument as its own field, and an argument longer than a
// record as several, so one padded command line would make its event
// vanish. The bounds below keep every entry far inside both limits: at
// most maxAuditFields AUDIT_FIELD_* fields, each value at most
// maxValueBytes, plus the fixed fields buildEvent adds (fewer than 32
// with the deepest chain).
const (
	// maxAuditFields bounds the AUDIT_FIELD_* fields of one entry.
	maxAuditFields = 400
	// maxValueBytes bounds one field value.
	maxValueBytes = 16 << 10
	// maxArgFields is how many execve arguments also get a field of
	// their own (AUDIT_FIELD_A0, ...), so a match on a program's first
	// arguments keeps working; the whole command line is in
	// AUDIT_EXECVE_ARGV.
	maxArgFields = 32
	// maxArgvBytes bounds AUDIT_EXECVE_ARGV.
	maxArgvBytes = 64 << 10
)

// TruncationMarker ends every value contid shortened, so a reader of the
// entry sees that something follows that the journal does not hold.
const TruncationMarker = "[contid: truncated]"

// truncation counts what one entry left out.
type truncation struct {
	fields uint64 // fields not written at all
	bytes  uint64 // value bytes cut off
}

func (t truncation) any() bool { return t.fields > 0 || t.bytes > 0 }

// appendAuditFields writes the records' fields of ev into e within the
// bounds above, folding each EXECVE record's arguments into
// AUDIT_EXECVE_ARGV, and says what it had to leave out.
func (f *Forwarder) appendAuditFields(e *Entry, ev *audit.Event) truncation {
	var cut truncation
	left := maxAuditFields
	// add writes one field; a copy's value is also held elsewhere in
	// the entry (an argument in AUDIT_EXECVE_ARGV), so what is cut from
	// it is not missing from the entry and not counted.
	add := func(key, value string, copy bool) {
		if left == 0 {
			if !copy {
				cut.fields++
			}
			return
		}
		left--
		if len(value) > maxValueBytes {
			if !copy {
				cut.bytes += uint64(len(value) - maxValueBytes)
			}
			f.val = appendTruncated(f.val[:0], value, maxValueBytes)
			value = unsafeString(f.val) // AddSanitized copies it
		}
		e.AddSanitized("AUDIT_FIELD_", key, value)
	}

	syscall := ev.Syscall()
	foldedArgv := false
	for i := range ev.Records {
		r := &ev.Records[i]
		if r.Type == auparse.AUDIT_EXECVE {
			// One execve can span many EXECVE records; fold them all
			// into one command line, once.
			if !foldedArgv {
				foldedArgv = true
				f.appendArgv(e, ev, add, &cut)
			}
			continue
		}
		for _, fl := range r.Fields {
			v := fl.Value
			if r.Type == auparse.AUDIT_SYSCALL {
				switch fl.Key {
				case "syscall":
					v = syscall
				case "arch":
					v = archName(v)
				}
			}
			add(fl.Key, v, false)
		}
	}
	return cut
}

// appendArgv folds the EXECVE records of ev: argc as AUDIT_FIELD_ARGC,
// the first maxArgFields arguments as AUDIT_FIELD_A<n>, and every
// argument into AUDIT_EXECVE_ARGV, space-separated, each one Go-quoted
// unless it is plain printable ASCII without quotes or backslashes, so
// the line splits back into the arguments unambiguously. The kernel
// splits an argument longer than a record into a<n>[0], a<n>[1], ...
// after an a<n>_len; the parser has decoded each piece, and they are
// joined here.
func (f *Forwarder) appendArgv(e *Entry, ev *audit.Event, add func(key, value string, copy bool), cut *truncation) {
	f.argv = f.argv[:0]
	args := 0
	var argvTruncated bool
	arg := f.argBuf[:0] // the argument being assembled from pieces
	curIndex, curKey := -1, ""
	flush := func() {
		if curIndex < 0 {
			return
		}
		if args < maxArgFields {
			if curKey == "" {
				curKey = "a" + strconv.Itoa(curIndex)
			}
			add(curKey, unsafeString(arg), true)
		}
		args++
		f.argv, argvTruncated = appendArg(f.argv, arg, args == 1, argvTruncated, cut)
		arg = arg[:0]
		curIndex = -1
	}
	for i := range ev.Records {
		r := &ev.Records[i]
		if r.Type != auparse.AUDIT_EXECVE {
			continue
		}
		for _, fl := range r.Fields {
			if fl.Key == "argc" {
				add("argc", fl.Value, false)
				continue
			}
			n, piece, ok := argKey(fl.Key)
			if !ok {
				continue // a<n>_len, or something new: the value says it all
			}
			if n != curIndex || !piece {
				flush()
				curIndex, curKey = n, fl.Key
				if piece {
					curKey = ""
				}
			}
			arg = append(arg, fl.Value...)
		}
	}
	flush()
	f.argBuf = arg[:0]
	if argvTruncated {
		f.argv = append(f.argv, TruncationMarker...)
	}
	e.AddBytes("AUDIT_EXECVE_ARGV", f.argv)
}

// appendArg adds one argument to the folded command line unless the line
// is already full; the bytes that do not fit are counted.
func appendArg(line, arg []byte, first, full bool, cut *truncation) ([]byte, bool) {
	if full {
		cut.bytes += uint64(len(arg))
		return line, true
	}
	if !first {
		line = append(line, ' ')
	}
	start := len(line)
	if plainArg(arg) {
		line = append(line, arg...)
	} else {
		// Quote no more than can fit: a 128 KiB argument need not be
		// escaped whole to keep its first kilobytes.
		src := arg
		if room := maxArgvBytes - start; len(src) > room && room >= 0 {
			src = src[:room]
		}
		line = strconv.AppendQuote(line, string(src))
		if len(src) < len(arg) {
			cut.bytes += uint64(len(arg) - len(src))
			full = true
		}
	}
	if len(line) > maxArgvBytes {
		kept := utf8Prefix(line[:maxArgvBytes])
		// What was cut is counted in the argument's own bytes (an
		// escape's extra bytes are not the argument's).
		over := len(line) - len(kept)
		if over > len(arg) {
			over = len(arg)
		}
		cut.bytes += uint64(over)
		line = kept
		full = true
	}
	return line, full
}

// plainArg: printable ASCII, no space, quote or backslash, not empty.
func plainArg(a []byte) bool {
	if len(a) == 0 {
		return false
	}
	for _, c := range a {
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// argKey reads an EXECVE field name: "a12" is argument 12, "a12[3]" a
// piece of it; "a12_len" and anything else is not an argument.
func argKey(key string) (n int, piece, ok bool) {
	if len(key) < 2 || key[0] != 'a' {
		return 0, false, false
	}
	i := 1
	for i < len(key) && key[i] >= '0' && key[i] <= '9' {
		n = n*10 + int(key[i]-'0')
		i++
		if n > 1<<24 {
			return 0, false, false
		}
	}
	if i == 1 {
		return 0, false, false
	}
	switch {
	case i == len(key):
		return n, false, true
	case key[i] == '[' && key[len(key)-1] == ']':
		return n, true, true
	}
	return 0, false, false
}

// appendTruncated appends the first max bytes of v (backed off to a
// UTF-8 boundary) and the marker.
func appendTruncated(dst []byte, v string, max int) []byte {
	dst = append(dst, utf8Prefix([]byte(v[:max]))...)
	return append(dst, TruncationMarker...)
}

// utf8Prefix drops a multi-byte character cut in half at the end of b.
func utf8Prefix(b []byte) []byte {
	for back := 1; back <= utf8.UTFMax && back <= len(b); back++ {
		start := len(b) - back
		if utf8.RuneStart(b[start]) {
			if utf8.FullRune(b[start:]) {
				return b
			}
			return b[:start]
		}
	}
	return b
}

// unsafeString views b as a string for a call that copies it at once.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

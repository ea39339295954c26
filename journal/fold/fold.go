// Package fold drops the repeats from a stream of journal entries in
// journalctl's export format.
//
// A collector's files may hold an entry twice: systemd-journal-upload
// saves its cursor only after a whole request succeeded, so after a
// collector outage it sends again what the stopped collector had
// already stored, and systemd-journal-remote appends whatever it is
// sent. journalctl has no option to fold such repeats, and the files
// are journal-remote's to write, so a reader that wants each event once
// folds what journalctl prints: `journalctl -o export` in, the same
// stream less the repeats out.
package fold

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Field is one field of an entry; an entry may hold a name more than
// once.
type Field struct {
	Name  string
	Value []byte
	// binary: the field came in the binary form. journal-remote ignores
	// a text field whose name starts with two underscores and stores a
	// binary one, so the form tells a field the entry holds from one
	// journalctl made up.
	binary bool
}

// Entry is one entry as journalctl exported it.
type Entry struct {
	Fields []Field
	// raw is the entry's bytes as read, without the blank line that
	// ends it, so that it is written on exactly as journalctl wrote it.
	raw []byte
}

// Value is the entry's first value of the field name, and whether it
// has one.
func (e *Entry) Value(name string) (string, bool) {
	for _, f := range e.Fields {
		if f.Name == name {
			return string(f.Value), true
		}
	}
	return "", false
}

// WriteTo writes the entry in the export format, as it was read.
func (e *Entry) WriteTo(w io.Writer) (int64, error) {
	// Two writes, not one of raw and the newline appended, which would
	// copy the whole entry.
	n, err := w.Write(e.raw)
	if err != nil {
		return int64(n), err
	}
	_, err = w.Write([]byte{'\n'})
	return int64(n) + 1, err
}

// Reader reads entries in the export format: text fields NAME=VALUE\n,
// binary ones (a value holding a newline or bytes that are not
// printable) NAME\n, the value's size as a little-endian 64-bit number,
// the value and \n; a blank line ends an entry.
type Reader struct {
	r *bufio.Reader
}

// NewReader reads entries from r, journalctl -o export's output.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10)}
}

// Next returns the next entry, or io.EOF after the last. A stream that
// ends inside an entry is an error: journalctl ends every entry with a
// blank line, so the entry was cut short.
//
// The entry's bytes are read into one buffer, and its fields' names
// and values are slices of it, set once it is whole: a field as large
// as the journal allows (a collector's file may hold one of some
// hundred megabytes) is held once, not copied into a field as well.
func (r *Reader) Next() (*Entry, error) {
	var e Entry
	type span struct {
		name, nameEnd, start, end int
		binary                    bool
	}
	var spans []span
	raw := bytes.NewBuffer(nil)
	for {
		line, err := r.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long text field: gather it whole.
			var long []byte
			long = append(long, line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err == io.EOF && len(line) == 0 && raw.Len() == 0 {
			return nil, io.EOF
		}
		if err != nil {
			return nil, fmt.Errorf("export format: %w", unexpected(err))
		}
		if len(line) == 1 {
			if raw.Len() == 0 {
				// journalctl writes no empty entries; a stray blank
				// line is not one.
				continue
			}
			e.raw = raw.Bytes()
			for _, s := range spans {
				e.Fields = append(e.Fields, Field{Name: string(e.raw[s.name:s.nameEnd]),
					Value: e.raw[s.start:s.end:s.end], binary: s.binary})
			}
			return &e, nil
		}
		at := raw.Len()
		raw.Write(line)
		text := line[:len(line)-1]
		if i := bytes.IndexByte(text, '='); i >= 0 {
			spans = append(spans, span{name: at, nameEnd: at + i, start: at + i + 1, end: at + len(text)})
			continue
		}
		var size [8]byte
		if _, err := io.ReadFull(r.r, size[:]); err != nil {
			return nil, fmt.Errorf("export format: the size of field %q: %w", text, unexpected(err))
		}
		raw.Write(size[:])
		n := binary.LittleEndian.Uint64(size[:])
		// Room for the value at once, up to 64 MiB (and ReadFrom's
		// margin, without which it doubles a buffer it just filled);
		// beyond that CopyN grows the buffer as data comes, so that a
		// corrupt size cannot make it allocate more than that and what
		// the stream holds.
		raw.Grow(int(min(n, 64<<20)) + bytes.MinRead + 1)
		start := raw.Len()
		if _, err := io.CopyN(raw, r.r, int64(min(n, 1<<62))); err != nil {
			return nil, fmt.Errorf("export format: the %d-byte value of field %q: %w", n, text, unexpected(err))
		}
		end, err := r.r.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("export format: after field %q: %w", text, unexpected(err))
		}
		if end != '\n' {
			return nil, fmt.Errorf("export format: field %q is not followed by a newline", text)
		}
		spans = append(spans, span{name: at, nameEnd: at + len(text), start: start, end: raw.Len(), binary: true})
		raw.WriteByte('\n')
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Seen remembers the entries read so far, by a digest of each one's
// key, to tell a repeat. It holds 32 bytes and a map slot for each
// distinct entry: the two copies of a resent entry may lie far apart in
// journalctl's output (the second is stored after whatever the
// collector received in between), so no window smaller than the whole
// stream finds them all.
type Seen struct {
	keys map[[sha256.Size]byte]struct{}
}

// NewSeen remembers no entry yet.
func NewSeen() *Seen {
	return &Seen{keys: map[[sha256.Size]byte]struct{}{}}
}

// Repeat says whether an entry identical to e was seen before, and
// remembers e.
func (s *Seen) Repeat(e *Entry) bool {
	k := key(e)
	if _, ok := s.keys[k]; ok {
		return true
	}
	s.keys[k] = struct{}{}
	return false
}

// key is the digest of every field of the entry but those the journal
// that stores it makes up: two entries are one when they have the same
// fields with the same values, in any order.
//
// The key cannot fold two different events. It holds the fields the
// sending host's journald stamped, which journal-remote keeps as sent:
// _BOOT_ID, __REALTIME_TIMESTAMP and __MONOTONIC_TIMESTAMP (journald's
// clocks when it received the entry), and every field of the entry
// besides; and each of contidd's audit event entries carries
// AUDIT_EVENT_ID, the kernel's serial, which no two events of one boot
// share. Entries that agree in all of that are, to any reader, the same
// entry.
//
// What is left out is the address of the copy, which the collector's
// journal (or journalctl printing it) assigns: __CURSOR, __SEQNUM and
// __SEQNUM_ID and any such field added later, which journalctl prints
// in the text form (NAME=VALUE) with a name that starts with two
// underscores, other than the two timestamps. journal-remote ignores
// such a text field in what it is sent, in the collector and when the
// folded entries are written again, so no entry holds one. It does
// store a field of that name sent in the binary form, which journalctl
// prints in the binary form when its value is not printable: that is
// the entry's, and in the key. Were it left out, an entry forged as a
// genuine one plus such a field, sorted before it, would fold the
// genuine one away and be shown in its place.
func key(e *Entry) [sha256.Size]byte {
	fields := make([]Field, 0, len(e.Fields))
	for _, f := range e.Fields {
		if !f.binary && strings.HasPrefix(f.Name, "__") && f.Name != "__REALTIME_TIMESTAMP" && f.Name != "__MONOTONIC_TIMESTAMP" {
			continue
		}
		fields = append(fields, f)
	}
	// journalctl prints a file's fields in the order they lie in that
	// file, which differs between the copies of one entry.
	slices.SortFunc(fields, func(a, b Field) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return bytes.Compare(a.Value, b.Value)
	})
	h := sha256.New()
	var n [8]byte
	for _, f := range fields {
		binary.LittleEndian.PutUint64(n[:], uint64(len(f.Name)))
		h.Write(n[:])
		h.Write([]byte(f.Name))
		binary.LittleEndian.PutUint64(n[:], uint64(len(f.Value)))
		h.Write(n[:])
		h.Write(f.Value)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// Copy writes the entries of the export stream r to w, each repeat
// left out, and returns how many it wrote and how many it folded.
func Copy(w io.Writer, r io.Reader) (kept, folded int, err error) {
	in, seen := NewReader(r), NewSeen()
	bw := bufio.NewWriter(w)
	for {
		e, err := in.Next()
		if err == io.EOF {
			return kept, folded, bw.Flush()
		}
		if err != nil {
			return kept, folded, err
		}
		if seen.Repeat(e) {
			folded++
			continue
		}
		if _, err := e.WriteTo(bw); err != nil {
			return kept, folded, err
		}
		kept++
	}
}

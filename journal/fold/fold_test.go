package fold

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// binaryField is NAME in the export format's binary form.
func binaryField(name, value string) string {
	var size [8]byte
	binary.LittleEndian.PutUint64(size[:], uint64(len(value)))
	return name + "\n" + string(size[:]) + value + "\n"
}

const (
	a = "__CURSOR=s=1;i=1\n__REALTIME_TIMESTAMP=10\n__MONOTONIC_TIMESTAMP=5\n_BOOT_ID=b1\nMESSAGE=x\nAUDIT_EVENT_ID=7\n"
	// a's copy as another journal prints it: its own cursor and
	// sequence numbers, its fields in another order.
	aCopy = "__CURSOR=s=2;i=9\n__SEQNUM=9\n__SEQNUM_ID=2\n__MONOTONIC_TIMESTAMP=5\nAUDIT_EVENT_ID=7\n__REALTIME_TIMESTAMP=10\nMESSAGE=x\n_BOOT_ID=b1\n"
)

// Copy leaves out an entry identical to one before it in every field
// but those the storing journal assigns, and keeps every near twin.
func TestCopy(t *testing.T) {
	bin := binaryField("MESSAGE", "two\nlines") + "__REALTIME_TIMESTAMP=10\n_BOOT_ID=b1\n"
	tests := []struct {
		name       string
		in, want   string
		wantFolded int
	}{
		{"none", "", "", 0},
		{"one", a + "\n", a + "\n", 0},
		{"a repeat, fields reordered, another cursor", a + "\n" + aCopy + "\n", a + "\n", 1},
		{"a repeat after other entries", a + "\nMESSAGE=y\n\n" + a + "\n", a + "\nMESSAGE=y\n\n", 1},
		{"binary fields, repeated", bin + "\n" + bin + "\n", bin + "\n", 1},
		{"one value in binary and in text form", binaryField("MESSAGE", "x") + "\nMESSAGE=x\n\n", binaryField("MESSAGE", "x") + "\n", 1},
		{"the same message, another realtime", a + "\n" + strings.Replace(a, "__REALTIME_TIMESTAMP=10", "__REALTIME_TIMESTAMP=11", 1) + "\n",
			a + "\n" + strings.Replace(a, "__REALTIME_TIMESTAMP=10", "__REALTIME_TIMESTAMP=11", 1) + "\n", 0},
		{"another monotonic time", a + "\n" + strings.Replace(a, "_TIMESTAMP=5", "_TIMESTAMP=6", 1) + "\n",
			a + "\n" + strings.Replace(a, "_TIMESTAMP=5", "_TIMESTAMP=6", 1) + "\n", 0},
		{"the same instant, another event", a + "\n" + strings.Replace(a, "EVENT_ID=7", "EVENT_ID=8", 1) + "\n",
			a + "\n" + strings.Replace(a, "EVENT_ID=7", "EVENT_ID=8", 1) + "\n", 0},
		{"another boot", a + "\n" + strings.Replace(a, "_BOOT_ID=b1", "_BOOT_ID=b2", 1) + "\n",
			a + "\n" + strings.Replace(a, "_BOOT_ID=b1", "_BOOT_ID=b2", 1) + "\n", 0},
		{"a field more", a + "\n" + a + "X=\n\n", a + "\n" + a + "X=\n\n", 0},
		{"a field twice against once", a + "\n" + a + "MESSAGE=x\n\n", a + "\n" + a + "MESSAGE=x\n\n", 0},
		// journal-remote stores a field named __... sent in the binary
		// form (journalctl prints it so when its value is not
		// printable): a forged entry that adds one to a genuine entry is
		// another entry, not a copy that could take the genuine one's
		// place. The same field in the text form is ignored on import.
		{"a field named __ in the binary form", a + binaryField("__X", "y\nz") + "\n" + a + "\n",
			a + binaryField("__X", "y\nz") + "\n" + a + "\n", 0},
		{"a field named __ in the text form", a + "__X=y\n\n" + a + "\n", a + "__X=y\n\n", 1},
		// Values are not split at '=': a name ends at the first.
		{"where the name ends", "A=b=c\n\nA=b\nb=c\n\n", "A=b=c\n\nA=b\nb=c\n\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			kept, folded, err := Copy(&out, strings.NewReader(tt.in))
			if err != nil || out.String() != tt.want || folded != tt.wantFolded || kept != strings.Count(tt.want, "\n\n") {
				t.Fatalf("Copy: %q, kept %d, folded %d (%v)\nwant %q, folded %d", out.String(), kept, folded, err, tt.want, tt.wantFolded)
			}
		})
	}
}

// A stream cut inside an entry is an error, not a shorter entry.
func TestReaderCut(t *testing.T) {
	whole := binaryField("MESSAGE", "two\nlines")
	tests := []struct{ name, in string }{
		{"no blank line after the last entry", a},
		{"a text field without its newline", "MESSAGE=x"},
		{"in a binary field's size", whole[:len("MESSAGE\n")+3]},
		{"in a binary field's value", whole[:len(whole)-4]},
		{"without the newline after a binary value", whole[:len(whole)-1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.in))
			if e, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("Next: %+v, %v; want an unexpected EOF", e, err)
			}
		})
	}
	r := NewReader(strings.NewReader(whole[:len(whole)-1] + "x\n"))
	if _, err := r.Next(); err == nil || !strings.Contains(err.Error(), "not followed by a newline") {
		t.Fatalf("a binary value with a byte more than its size: %v", err)
	}
}

// A text field longer than the reader's buffer is read whole.
func TestReaderLongField(t *testing.T) {
	long := strings.Repeat("x", 200<<10)
	r := NewReader(strings.NewReader("MESSAGE=" + long + "\n\n"))
	e, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := e.Value("MESSAGE"); v != long {
		t.Fatalf("MESSAGE of %d bytes, want %d", len(v), len(long))
	}
}

// A large binary field is held once: read into the entry's buffer and
// written on from it, not also copied into the field and again on
// writing. A collector's file may hold a field of some hundred
// megabytes; here 16 MB, for which the reader makes room at once: what
// it allocates stays under one and a half times the field, where each
// copy more would add the field again (the reader before held it four
// times over, some 100 MB).
func TestLargeFieldHeldOnce(t *testing.T) {
	const size = 16 << 20
	in := a + binaryField("BLOB", strings.Repeat("\x00", size)) + "\n"
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := NewReader(strings.NewReader(in))
	e, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.WriteTo(io.Discard); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if v, _ := e.Value("BLOB"); len(v) != size {
		t.Fatalf("BLOB of %d bytes, want %d", len(v), size)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 3*size/2 {
		t.Fatalf("reading and writing an entry with a %d-byte field allocated %d bytes, want at most %d", size, got, 3*size/2)
	}
}

package journal

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contid/contid/internal/testenv"
)

func TestWriterPrivateJournald(t *testing.T) {
	j := testenv.StartJournald(t)
	w, err := NewWriter(j.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	mark := "contid-writer-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	big := strings.Repeat("0123456789abcdef", 9<<20/16) // past any datagram size
	tests := []struct {
		name  string
		field string
		value string
		memfd bool
	}{
		{"plain", "PLAIN", "hello journal", false},
		{"binary-safe", "MULTI", "line one\nline two\x00nul", false},
		{"memfd", "BIG", big, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := w.MemfdCount()
			var e Entry
			e.Add("MESSAGE", "writer test "+tt.name)
			e.Add("SYSLOG_IDENTIFIER", "contidd-test")
			e.Add("CONTID_TEST_MARK", mark)
			e.Add("CONTID_TEST_CASE", tt.name)
			e.Add(tt.field, tt.value)
			if err := w.Send(&e); err != nil {
				t.Fatal(err)
			}
			if got := w.MemfdCount() - before; (got == 1) != tt.memfd {
				t.Errorf("memfd path used %d times, want memfd=%v", got, tt.memfd)
			}
			entries := j.WaitFor(t, 5*time.Second, 1, "CONTID_TEST_MARK="+mark, "CONTID_TEST_CASE="+tt.name)
			if len(entries) != 1 {
				t.Fatalf("%d entries in the journal, want 1", len(entries))
			}
			if got := entries[0].Get(tt.field); got != tt.value {
				t.Errorf("%s read back with %d bytes, want %d", tt.field, len(got), len(tt.value))
			}
			if got := entries[0].Get("_TRANSPORT"); got != "journal" {
				t.Errorf("_TRANSPORT = %q, want journal", got)
			}
		})
	}
}

func TestWriterNoJournald(t *testing.T) {
	w, err := NewWriter(filepath.Join(t.TempDir(), "socket"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var e Entry
	e.Add("MESSAGE", "nobody listens")
	if err := w.Send(&e); !errors.Is(err, ErrNoJournal) {
		t.Fatalf("Send without journald: %v, want ErrNoJournal", err)
	}
}

func BenchmarkWriterSend(b *testing.B) {
	j := testenv.StartJournald(b)
	w, err := NewWriter(j.Socket)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	var e Entry
	e.Add("MESSAGE", "container 4 (web): execve /usr/bin/id by pid 1234 uid 0 res=success")
	e.Add("SYSLOG_IDENTIFIER", "contidd-bench")
	for i := 0; i < 40; i++ {
		e.AddUint("AUDIT_FIELD_X"+strconv.Itoa(i), uint64(i))
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Send(&e); err != nil {
			b.Fatal(err)
		}
	}
}

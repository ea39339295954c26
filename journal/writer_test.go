package journal

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contid/contid"
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

// TestAmbiguousInJournal: through a real journald, an ambiguous event is
// found by each candidate (AUDIT_CONTAINER_CANDIDATE=), while a match on
// AUDIT_CONTAINER_ID or _WITHIN finds only the event a container
// certainly caused. The candidate field, like every field a client sends,
// can be forged by any process; what the forger cannot set is the
// trusted fields journald adds. contidd's entries are told apart by
// _SYSTEMD_UNIT (no unit here: the writer's _PID stands in for it), and
// the control shows the forgery is found without that match.
func TestAmbiguousInJournal(t *testing.T) {
	j := testenv.StartJournald(t)
	testenv.RequireCommand(t, "nsenter", "logger")
	w, err := NewWriter(j.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	f := NewForwarder(w, fakeContainers{4: {contid.Chain{4, 2}, "web", ""}}, Config{})
	feedExec(t, attributor{how: contid.AmbiguousPID, cands: contid.Candidates{4, 7}}, f)
	feedExec(t, attributor{id: 4, how: contid.LiveProcess}, f)
	if s := f.Stats(); s.Written != 2 {
		t.Fatalf("forwarder stats %+v, want 2 written", s)
	}

	// The forger speaks journald's native protocol from its own process,
	// in journald's mount namespace, where the socket is the standard one.
	forge := exec.Command("nsenter", "--mount=/proc/"+strconv.Itoa(j.PID())+"/ns/mnt", "logger", "--journald")
	forge.Stdin = strings.NewReader("MESSAGE=forged\nSYSLOG_IDENTIFIER=contidd\nAUDIT_CONTAINER_ATTRIBUTION=ambiguous\nAUDIT_CONTAINER_CANDIDATE=4\n")
	if out, err := forge.CombinedOutput(); err != nil {
		t.Fatalf("forging an entry: %v: %s", err, out)
	}

	self := "_PID=" + strconv.Itoa(os.Getpid())
	if got := j.Query(t, "AUDIT_CONTAINER_CANDIDATE=4"); len(got) != 2 {
		t.Fatalf("control: AUDIT_CONTAINER_CANDIDATE=4 alone found %d entries, want 2 (contidd's and the forgery)", len(got))
	}
	tests := []struct {
		name       string
		matches    []string
		n          int
		attributed string
	}{
		{"candidate 4", []string{"AUDIT_CONTAINER_CANDIDATE=4", self}, 1, "ambiguous"},
		{"candidate 7", []string{"AUDIT_CONTAINER_CANDIDATE=7", self}, 1, "ambiguous"},
		{"no other candidate", []string{"AUDIT_CONTAINER_CANDIDATE=2", self}, 0, ""},
		{"trusted ID match: the certain event only", []string{"AUDIT_CONTAINER_ID=4", self}, 1, "live"},
		{"no ID for a candidate", []string{"AUDIT_CONTAINER_ID=7"}, 0, ""},
		{"nesting match: the certain event only", []string{"AUDIT_CONTAINER_WITHIN=2", self}, 1, "live"},
		{"no nesting match for a candidate", []string{"AUDIT_CONTAINER_WITHIN=7"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := j.Query(t, tt.matches...)
			if len(got) != tt.n {
				t.Fatalf("%v found %d entries, want %d: %v", tt.matches, len(got), tt.n, got)
			}
			if tt.n == 0 {
				return
			}
			e := got[0]
			if a := e.Get("AUDIT_CONTAINER_ATTRIBUTION"); a != tt.attributed {
				t.Errorf("AUDIT_CONTAINER_ATTRIBUTION=%q, want %q", a, tt.attributed)
			}
			if e.Get("_UID") != strconv.Itoa(os.Getuid()) || e.Get("_TRANSPORT") != "journal" {
				t.Errorf("_UID=%q _TRANSPORT=%q: not the writer's own entry", e.Get("_UID"), e.Get("_TRANSPORT"))
			}
			if tt.attributed != "ambiguous" {
				return
			}
			if id := e.Get("AUDIT_CONTAINER_ID"); id != "" {
				t.Errorf("ambiguous entry carries AUDIT_CONTAINER_ID=%s", id)
			}
			if c := e["AUDIT_CONTAINER_CANDIDATE"]; fmt.Sprint(c) != "[4 7]" {
				t.Errorf("AUDIT_CONTAINER_CANDIDATE=%v, want [4 7]", c)
			}
			if m := e.Get("MESSAGE"); !strings.HasPrefix(m, "could not tell which of containers 4 (web) and 7 (PID reused): execve /usr/bin/id") {
				t.Errorf("MESSAGE=%q", m)
			}
		})
	}
}

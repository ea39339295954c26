package audit_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contid/contid/journal"
	"github.com/contid/contid/kernel/audit"
)

// TestPaddedExecAttributed: a tagged process cannot hide an exec by
// padding its command line. journald drops an entry of more than 1,024
// fields without a word to the sender, and the kernel logs every
// argument as a field; each exec below still gives exactly one attributed
// entry, with what did not fit marked and counted.
func TestPaddedExecAttributed(t *testing.T) {
	s := newAuditSession(t)
	b := tracker(t)
	key := "contid-test-" + randomSuffix(t)
	s.addRule(execRule(key))
	cg := newCgroup(t, b, nil, "padded", true)
	p := startPipeline(t, b, fakeContainers{cg.chain.ID(): {cg.chain, "padded", "padded.scope"}}, audit.Config{}, journal.Config{})

	// A single argument may be at most MAX_ARG_STRLEN (128 KiB with its
	// NUL): 8 of them make the 1 MiB of arguments. 100,000 one-byte
	// arguments take about 1 MB of the 2 MiB ARG_MAX with their pointers.
	huge := strings.Repeat("H", 128<<10-1)
	tests := []struct {
		name      string
		args      []string
		truncated bool
	}{
		{"1,100 arguments", repeated(1100, "x"), false},
		{"100,000 arguments", repeated(100000, "x"), true},
		{"1 MiB of arguments", repeated(8, huge), true},
	}
	var wantTruncated uint64
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			marker := "pad" + randomSuffix(t)
			before := p.fwd.Stats()
			cg.run(t, append([]string{"/bin/true", marker}, tc.args...)...)
			argc := strconv.Itoa(len(tc.args) + 2)
			// The first arguments keep fields of their own, so the marker
			// finds the entry.
			p.journald.WaitFor(t, 10*time.Second, 1, "AUDIT_FIELD_A1="+marker)
			p.waitIdle(t, 300*time.Millisecond, 5*time.Second)
			found := p.journald.Query(t, "AUDIT_FIELD_A1="+marker)
			if len(found) != 1 {
				t.Fatalf("%d entries for the exec, want 1 (reader %+v, forwarder %+v)", len(found), p.reader.Stats(), p.fwd.Stats())
			}
			e := found[0]
			if got := e.Get("AUDIT_CONTAINER_ID"); got != idStr(cg.chain.ID()) {
				t.Errorf("AUDIT_CONTAINER_ID = %q, want %d", got, cg.chain.ID())
			}
			if got := e.Get("AUDIT_FIELD_ARGC"); got != argc {
				t.Errorf("AUDIT_FIELD_ARGC = %q, want %s", got, argc)
			}
			argv := e.Get("AUDIT_EXECVE_ARGV")
			if !strings.HasPrefix(argv, "/bin/true "+marker+" ") {
				t.Errorf("AUDIT_EXECVE_ARGV starts %.60q", argv)
			}
			after := p.fwd.Stats()
			cutBytes, _ := strconv.ParseUint(e.Get("AUDIT_TRUNCATED_BYTES"), 10, 64)
			t.Logf("%d fields, AUDIT_EXECVE_ARGV %d bytes, AUDIT_TRUNCATED_BYTES %d, truncated entries %d",
				fieldCount(e), len(argv), cutBytes, after.Truncated)
			// Every argument is plain: the bytes kept and the bytes
			// counted as cut add up to the command line.
			kept := strings.ReplaceAll(strings.TrimSuffix(argv, journal.TruncationMarker), " ", "")
			total := len("/bin/true") + len(marker)
			for _, a := range tc.args {
				total += len(a)
			}
			if uint64(len(kept))+cutBytes != uint64(total) {
				t.Errorf("kept %d + AUDIT_TRUNCATED_BYTES %d, want the %d bytes of the command line", len(kept), cutBytes, total)
			}
			if tc.truncated {
				wantTruncated++
				if !strings.HasSuffix(argv, journal.TruncationMarker) || cutBytes == 0 {
					t.Errorf("truncation not marked and counted: ...%q, AUDIT_TRUNCATED_BYTES %q", argv[max(0, len(argv)-40):], e.Get("AUDIT_TRUNCATED_BYTES"))
				}
			} else if strings.Contains(argv, journal.TruncationMarker) || e.Get("AUDIT_TRUNCATED_BYTES") != "" {
				t.Errorf("entry marked truncated: AUDIT_TRUNCATED_BYTES %q", e.Get("AUDIT_TRUNCATED_BYTES"))
			}
			if after.Truncated != wantTruncated || after.Lost != before.Lost {
				t.Errorf("forwarder %+v: want %d truncated, no loss", after, wantTruncated)
			}
		})
	}
}

func repeated(n int, s string) []string {
	a := make([]string, n)
	for i := range a {
		a[i] = s
	}
	return a
}

// fieldCount counts the entry's fields, repeated ones each time.
func fieldCount(e map[string][]string) int {
	n := 0
	for _, v := range e {
		n += len(v)
	}
	return n
}

package daemon

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestStatStartTime(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"1 (init) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 77 100 200", 77, true},
		// comm may hold spaces and parentheses.
		{"42 (a) b) c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 99 0", 99, true},
		{"42 (short) R 1 2", 0, false},
		{"garbage", 0, false},
	}
	for _, tt := range tests {
		got, err := statStartTime([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("statStartTime(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// ownerAlive pins the owner by start time: the same PID with another
// start time is a reused PID, not the owner.
func TestOwnerAlive(t *testing.T) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	start, err := statStartTime(b)
	if err != nil {
		t.Fatal(err)
	}
	pid := uint32(os.Getpid())
	if !ownerAlive(pid, start) {
		t.Fatal("the test process is not alive by its own start time")
	}
	if ownerAlive(pid, start+1) {
		t.Fatal("a different start time was taken for the owner")
	}
	if ownerAlive(0, 0) {
		t.Fatal("PID 0 was taken for an owner")
	}
}

func TestLoggerPrefixesAndFilters(t *testing.T) {
	var b strings.Builder
	l := &Logger{max: 6, out: &b}
	l.Logf(3, "bad %d", 1)
	l.Logf(6, "info\n")
	l.Logf(7, "debug is filtered")
	if got, want := b.String(), "<3>bad 1\n<6>info\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

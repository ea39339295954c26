package daemon

import (
	"os"
	"strings"
	"testing"

	"github.com/contid/contid/internal/procstat"
)

// ownerAlive pins the owner by start time: the same PID with another
// start time is a reused PID, not the owner.
func TestOwnerAlive(t *testing.T) {
	start, err := procstat.StartTicks(os.Getpid())
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
	l := &Logger{out: &b}
	l.SetLevel(6)
	l.Logf(3, "bad %d", 1)
	l.Logf(6, "info\n")
	l.Logf(7, "debug is filtered")
	if got, want := b.String(), "<3>bad 1\n<6>info\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

package procstat

import (
	"errors"
	"os"
	"testing"
)

func TestStatStartTicks(t *testing.T) {
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
		got, err := statStartTicks([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("statStartTicks(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	if _, err := StartTicks(os.Getpid()); err != nil {
		t.Errorf("own start time: %v", err)
	}
}

// A process's identity is read whole from its own /proc entry, and one
// that is gone is ErrGone, which callers refuse as an exited process.
func TestReadIdentity(t *testing.T) {
	self := uint32(os.Getpid())
	id, err := ReadIdentity(self)
	if err != nil {
		t.Fatal(err)
	}
	start, err := StartTicks(int(self))
	if err != nil {
		t.Fatal(err)
	}
	if id.Start != start {
		t.Errorf("start %d, StartTicks says %d", id.Start, start)
	}
	if id.Image.Ino == 0 || id.Image.StartCode == 0 || id.Image.StartStack == 0 || id.Image.ArgStart == 0 {
		t.Errorf("incomplete image %+v", id.Image)
	}
	if again, err := ReadIdentity(self); err != nil || again != id {
		t.Errorf("read again: %+v, %v; want %+v", again, err, id)
	}
	euid, err := EffectiveUID(self)
	if err != nil || euid != uint32(os.Geteuid()) {
		t.Errorf("EffectiveUID = %d, %v; want %d", euid, err, os.Geteuid())
	}
	const gone = 1<<22 + 7 // above pid_max's limit: never a process
	if _, err := ReadIdentity(gone); !errors.Is(err, ErrGone) {
		t.Errorf("ReadIdentity of no process: %v, want ErrGone", err)
	}
	if _, err := EffectiveUID(gone); !errors.Is(err, ErrGone) {
		t.Errorf("EffectiveUID of no process: %v, want ErrGone", err)
	}
}

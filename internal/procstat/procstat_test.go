package procstat

import (
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

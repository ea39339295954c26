package kernel

import (
	"testing"

	"github.com/contid/contid"
)

func TestLoadTracking(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	mode, reason := b.Enforcement()
	if mode != contid.ModeTracking {
		t.Fatalf("mode = %s (%s), want tracking", mode, reason)
	}
	t.Logf("mode %s: %s", mode, reason)
}

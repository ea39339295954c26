// Package testenv gates privileged tests: each one starts with a single
// call that checks root and the kernel feature it needs, and skips with
// the reason when either is missing, so `go test ./...` passes anywhere
// while `.ci/run` (as root) runs every tier for real.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root (run the privileged tiers with `sudo make test`)")
	}
}

// RequireCommand skips the test unless every named program is on PATH.
func RequireCommand(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("skipped: %s is not installed (`make deps` installs it)", n)
		}
	}
}

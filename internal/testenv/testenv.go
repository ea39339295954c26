// Package testenv gates privileged tests: each one starts with a single
// call that checks root and the kernel feature it needs, and skips with
// the reason when either is missing, so `go test ./...` passes anywhere
// while `.ci/run` (as root) runs every tier for real. Under `make check`,
// which runs where every feature is expected, a test that would skip for
// a missing one fails instead (see Missing).
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireAllEnv is set to 1 by `make check` (CI): there the privileged
// tests run where root and every kernel feature they need are expected,
// so one that cannot run is a failure, not a skip.
const RequireAllEnv = "CONTID_TEST_REQUIRE_ALL"

// Missing skips t for a missing privilege, program or kernel feature, or,
// where RequireAllEnv is 1, fails it naming what is missing.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequireAllEnv) == "1" {
		why := strings.TrimPrefix(fmt.Sprintf(format, args...), "skipped: ")
		t.Fatalf("cannot run (%s=1 requires every privileged test to): %s", RequireAllEnv, why)
	}
	t.Skipf(format, args...)
}

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "skipped: needs root (run the privileged tiers with `sudo make test`)")
	}
}

// RequireCommand skips the test unless every named program is on PATH.
func RequireCommand(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			Missing(t, "skipped: %s is not installed (`make deps` installs it)", n)
		}
	}
}

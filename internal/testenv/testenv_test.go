package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// missingProbe is set in the child that TestMissing starts.
const missingProbe = "CONTID_TESTENV_PROBE"

func TestMissingProbe(t *testing.T) {
	if os.Getenv(missingProbe) != "1" {
		t.Skip("skipped: runs only as TestMissing's child")
	}
	Missing(t, "skipped: the probe's feature is absent")
}

// A missing feature skips the test, unless RequireAllEnv is 1: then the
// test fails and names what is missing.
func TestMissing(t *testing.T) {
	for _, tt := range []struct {
		requireAll string
		fails      bool
		says       string
	}{
		{"", false, "--- SKIP: TestMissingProbe"},
		{"0", false, "--- SKIP: TestMissingProbe"},
		{"1", true, "cannot run (CONTID_TEST_REQUIRE_ALL=1 requires every privileged test to): the probe's feature is absent"},
	} {
		t.Run("require="+tt.requireAll, func(t *testing.T) {
			// Through /proc: as nobody (make test-unprivileged) the test
			// binary's own directory is not searchable.
			cmd := exec.Command("/proc/self/exe", "-test.run=^TestMissingProbe$", "-test.v")
			cmd.Env = append(os.Environ(), missingProbe+"=1", RequireAllEnv+"="+tt.requireAll)
			out, err := cmd.CombinedOutput()
			if failed := err != nil; failed != tt.fails {
				t.Errorf("child failed: %v (%v), want %v\n%s", failed, err, tt.fails, out)
			}
			if !strings.Contains(string(out), tt.says) {
				t.Errorf("child's output lacks %q:\n%s", tt.says, out)
			}
		})
	}
}

package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// asContidctl makes the test binary run contidctl's main instead of the
// tests, so that a test can run contidctl as a program (events replaces
// itself with journalctl) without building it: under the unprivileged
// tier, nobody cannot run the go tool.
const asContidctl = "CONTIDCTL_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asContidctl) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// runBinary runs contidctl as a program and returns stdout, stderr and exit code.
func runBinary(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// /proc/self/exe, not the path: the unprivileged tier runs the test
	// binary as nobody from a directory only its builder may search.
	cmd := exec.CommandContext(ctx, "/proc/self/exe", args...)
	cmd.Env = append(append(os.Environ(), asContidctl+"=1"), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return stdout.String(), stderr.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), 0
}

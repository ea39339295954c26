package kernel

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/contid/contid"
	"github.com/contid/contid/internal/testenv"
)

// Where the BPF LSM cannot run, each enforcing-mode program must fail to
// load with an error that names the program and the kernel's reason.
func TestEnforcingProgramsFailCleanly(t *testing.T) {
	requireBPF(t)
	if err := tryLSMProgram(); err == nil {
		t.Skip("skipped: LSM programs load here; the VM tier exercises enforcing mode")
	}
	b := loadTest(t, testPinDir(t))
	spec, progs := loadTestSpec(t)
	for _, ps := range enforcingAttachments(progs) {
		err := b.attach(spec, ps)
		if err == nil {
			t.Errorf("%s attached although a test LSM program could not", ps.Name)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, ps.Name) || !strings.Contains(msg, "operation not permitted") {
			t.Errorf("%s: unhelpful error %q", ps.Name, msg)
		}
		t.Logf("%s", msg)
	}
}

// Probe in a private mount namespace, since it mounts securityfs when the
// host has none.
func TestProbeExplainsMode(t *testing.T) {
	requireBPF(t)
	testenv.RequireCommand(t, "unshare")
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=probe")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("probe helper: %v\n%s", err, out.String())
	}
	lines := strings.SplitN(strings.TrimSpace(out.String()), "\n", 2)
	if len(lines) != 2 {
		t.Fatalf("probe helper printed %q", out.String())
	}
	mode, reason := contid.Mode(lines[0]), lines[1]
	t.Logf("Probe: %s: %s", mode, reason)
	lsmWorks := tryLSMProgram() == nil
	switch {
	case mode == contid.ModeEnforcing && !lsmWorks:
		t.Errorf("enforcing although an LSM program cannot load here")
	case mode == contid.ModeTracking && !strings.Contains(reason, "BPF LSM not active") &&
		!strings.Contains(reason, "loading an LSM program failed"):
		t.Errorf("tracking with an unexplained reason %q", reason)
	case mode != contid.ModeTracking && mode != contid.ModeEnforcing:
		t.Errorf("unknown mode %q", mode)
	}
}

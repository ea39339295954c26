package kernel

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
	"github.com/contid/contid/internal/testenv"
)

func randomSuffix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// testPinDir is a private pin directory, unpinned when the test ends.
func testPinDir(t testing.TB) string {
	t.Helper()
	dir := "/sys/fs/bpf/contid-test-" + randomSuffix(t)
	t.Cleanup(func() {
		if err := Unpin(dir); err != nil {
			t.Errorf("unpin: %v", err)
		}
	})
	return dir
}

// testModeEnv selects the mode the privileged tests load contid in. The
// host tier runs them in tracking mode (its kernel has no BPF LSM); the VM
// tier runs the same tests again with CONTID_TEST_MODE=enforcing, where
// the LSM task_alloc hook and the guards are attached as well.
const testModeEnv = "CONTID_TEST_MODE"

func testMode() string {
	if m := os.Getenv(testModeEnv); m != "" {
		return m
	}
	return ModeTracking
}

// loadTest loads a private instance in the test mode. Asked for
// enforcing, it fails rather than skips when the kernel cannot: the VM
// tier asks only where the BPF LSM runs.
func loadTest(t testing.TB, pinDir string) *BPF {
	t.Helper()
	b, err := Load(Options{PinDir: pinDir, Mode: testMode()})
	if err != nil {
		t.Fatalf("Load (%s mode): %v", testMode(), err)
	}
	if mode, reason := b.Enforcement(); string(mode) != testMode() {
		b.Close()
		t.Fatalf("loaded in %s mode, want %s: %s", mode, testMode(), reason)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// testCgroup is a cgroup of the test's own below the cgroup2 root.
type testCgroup struct {
	rel  string // relative to the cgroup2 root
	full string
	id   uint64
}

func newTestCgroup(t testing.TB, parent *testCgroup, name string) *testCgroup {
	t.Helper()
	root, err := Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	rel := "/contid-test-" + name + "-" + randomSuffix(t)
	if parent != nil {
		rel = parent.rel + "/" + name
	}
	full := filepath.Join(root, rel)
	if err := os.Mkdir(full, 0o755); err != nil {
		t.Fatalf("mkdir cgroup: %v", err)
	}
	cg := &testCgroup{rel: rel, full: full}
	t.Cleanup(func() { cg.destroy(t) })
	cg.id, err = CgroupID(rel)
	if err != nil {
		t.Fatal(err)
	}
	return cg
}

// destroy kills what is left inside by PID and removes the cgroup.
func (cg *testCgroup) destroy(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := cg.procs(t)
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("cgroup %s still holds %d processes", cg.rel, len(pids))
			return
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for time.Now().Before(deadline) {
		err := os.Remove(cg.full)
		if err == nil || os.IsNotExist(err) {
			return
		}
		if !strings.Contains(err.Error(), "busy") {
			t.Errorf("rmdir %s: %v", cg.full, err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("rmdir %s: still busy", cg.full)
}

func (cg *testCgroup) procs(t testing.TB) []int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(cg.full, "cgroup.procs"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("read cgroup.procs: %v", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("cgroup.procs: %v", err)
		}
		pids = append(pids, pid)
	}
	return pids
}

// move writes pid into the cgroup's cgroup.procs.
func (cg *testCgroup) move(t testing.TB, pid int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(cg.full, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatalf("move %d to %s: %v", pid, cg.rel, err)
	}
}

// fd opens the cgroup directory for CLONE_INTO_CGROUP.
func (cg *testCgroup) fd(t testing.TB) int {
	t.Helper()
	fd, err := unix.Open(cg.full, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// killOnCleanup ends a process the test started, by PID.
func killOnCleanup(t testing.TB, pid int) {
	t.Cleanup(func() {
		_ = unix.Kill(pid, unix.SIGKILL)
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, 0, nil)
	})
}

// idOf looks a live PID up through a pidfd.
func idOf(t testing.TB, b *BPF, pid int) (contid.ID, error) {
	t.Helper()
	return b.PIDID(uint32(pid))
}

func requireBPF(t testing.TB) {
	t.Helper()
	testenv.RequireBPF(t)
}

// loadTestSpec parses the embedded object, with its programs by field.
func loadTestSpec(t testing.TB) (*ebpf.CollectionSpec, *contidProgramSpecs) {
	t.Helper()
	spec, err := loadContid()
	if err != nil {
		t.Fatal(err)
	}
	var progs contidProgramSpecs
	if err := spec.Assign(&progs); err != nil {
		t.Fatal(err)
	}
	return spec, &progs
}

// pinnedLinkInfo describes the link pinned for program prog in pinDir.
func pinnedLinkInfo(t *testing.T, pinDir, prog string) *link.Info {
	t.Helper()
	l, err := link.LoadPinnedLink(filepath.Join(pinDir, "link_"+prog), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func pinnedLinkID(t *testing.T, pinDir, prog string) link.ID {
	t.Helper()
	return pinnedLinkInfo(t, pinDir, prog).ID
}

// lookalikeFork attaches a do-nothing program named as contid's fork
// program, which a stale build or an impostor could have left.
func lookalikeFork(t *testing.T) link.Link {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: contidProgContidFork, Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp,
		AttachTo: "sched_process_fork", License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

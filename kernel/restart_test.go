package kernel

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/contid/contid"
)

// Check 5: the loader is killed with SIGKILL. Its pinned links keep
// inheritance working with no loader running, and a new Load from the
// same pins carries on without handing out an ID twice.
func TestSurvivesLoaderKill(t *testing.T) {
	requireBPF(t)
	pinDir := testPinDir(t)
	cg := newTestCgroup(t, nil, "restart")

	loader, out := startHelper(t, "loader", pinDir, cg.rel)
	if err := loader.Start(); err != nil {
		t.Fatal(err)
	}
	killOnCleanup(t, loader.Process.Pid)
	var rep loaderReport
	if err := json.NewDecoder(out).Decode(&rep); err != nil {
		t.Fatalf("loader report: %v", err)
	}
	if err := loader.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = loader.Wait()
	t.Logf("loader handed out %v, claimed %d, tagged %s with %d, and was killed with SIGKILL", rep.IDs, rep.Claimed, cg.rel, rep.IDs[0])

	// No loader runs now: a process started in the cgroup forks a child.
	child := startInWithPID(t, cg)
	taskTags, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "task_tags"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer taskTags.Close()
	for _, pid := range []int{child.parent, child.child} {
		if got := pinnedID(t, taskTags, pid); got != rep.IDs[0] {
			t.Errorf("with no loader, pid %d has ID %d, want %d", pid, got, rep.IDs[0])
		}
	}

	b := loadTest(t, pinDir)
	tag, err := b.CgroupTag(cg.id)
	if err != nil || tag.ID() != rep.IDs[0] {
		t.Errorf("after reload, cgroup tag = %s (%v), want %d", tag.Chain, err, rep.IDs[0])
	}
	wantID(t, b, "forked child after reload", child.child, rep.IDs[0])
	next := mustAllocate(t, b)
	for _, old := range append(rep.IDs, rep.Claimed) {
		if next == old {
			t.Errorf("AllocateID returned %d again", next)
		}
	}
	if next <= rep.IDs[len(rep.IDs)-1] {
		t.Errorf("AllocateID after reload = %d, want above %d", next, rep.IDs[len(rep.IDs)-1])
	}
	for _, old := range append(rep.IDs, rep.Claimed) {
		if err := b.ClaimID(old); !errors.Is(err, contid.ErrIDTaken) {
			t.Errorf("ClaimID(%d) after reload = %v, want ErrIDTaken", old, err)
		}
	}
	t.Logf("after reload: cgroup keeps %s, next ID %d", tag.Chain, next)
}

type forkedPair struct{ parent, child int }

// startInWithPID starts a shell in cg that forks `sleep 600` and reports
// the child's PID.
func startInWithPID(t *testing.T, cg *testCgroup) forkedPair {
	t.Helper()
	cmd := execIn(t, cg, "sh", "-c", "sleep 600 & echo $!; wait")
	return forkedPair{parent: cmd.pid, child: readPID(t, cmd.out)}
}

func pinnedID(t *testing.T, taskTags *ebpf.Map, pid int) contid.ID {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(fd)
	var tt taskTag
	if err := taskTags.Lookup(int32(fd), &tt); err != nil {
		t.Errorf("pid %d: %v", pid, err)
		return contid.Unset
	}
	return contid.ID(tt.Id)
}

// Check 6: a tagged process that has exited is still attributed for the
// time it lived, and not for a time after its exit.
func TestExitedProcessAttribution(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	cg := newTestCgroup(t, nil, "exited")
	x := mustAllocate(t, b)
	mustTagCgroup(t, b, cg, contid.Tag{Chain: contid.Chain{x}})

	// cat lives until its stdin closes, so "during its life" is certain.
	before := time.Now()
	cmd := execIn(t, cg, "cat")
	during := time.Now()
	cmd.in.Close()
	if err := cmd.cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	exited := time.Now()

	cases := []struct {
		name string
		at   time.Time
		want contid.ID
		how  contid.Attribution
	}{
		{"during its life", during, x, contid.ExitedProcess},
		{"one second before it started", before.Add(-time.Second), contid.Unset, contid.Unattributed},
		{"one second after it exited", exited.Add(time.Second), contid.Unset, contid.Unattributed},
	}
	for _, tc := range cases {
		id, how, _, err := b.Attribute(uint32(cmd.pid), 0, tc.at)
		if err != nil || id != tc.want || how != tc.how {
			t.Errorf("%s: Attribute = %d, %d, %v; want %d, %d", tc.name, id, how, err, tc.want, tc.how)
		}
	}
	t.Logf("exited pid %d: attributed to %d for its lifetime, unattributed before and after", cmd.pid, x)
}

// A pinned link left by another build (here: a fork program that does
// nothing) is replaced on Load, so an upgrade does not keep running old
// code; a restart of the same build keeps the very same link.
func TestLoadReplacesStalePinnedLink(t *testing.T) {
	requireBPF(t)
	pinDir := testPinDir(t)
	b := loadTest(t, pinDir)
	first := pinnedLinkID(t, pinDir, contidProgContidFork)
	b.Close()
	b = loadTest(t, pinDir)
	if again := pinnedLinkID(t, pinDir, contidProgContidFork); again != first {
		t.Errorf("restart of the same build replaced link %d with %d", first, again)
	}
	b.Close()

	// Pin a do-nothing fork program where the fork link lives.
	sl := lookalikeFork(t)
	pin := filepath.Join(pinDir, "link_"+contidProgContidFork)
	if err := os.Remove(pin); err != nil {
		t.Fatal(err)
	}
	if err := sl.Pin(pin); err != nil {
		t.Fatal(err)
	}
	sl.Close()

	b = loadTest(t, pinDir)
	cg := newTestCgroup(t, nil, "upgrade")
	x := mustAllocate(t, b)
	mustTagCgroup(t, b, cg, contid.Tag{Chain: contid.Chain{x}})
	pair := startInWithPID(t, cg)
	wantID(t, b, "child forked after the upgrade", pair.child, x)
	if _, err := os.Stat(pin + "_new"); !os.IsNotExist(err) {
		t.Errorf("temporary pin left behind: %v", err)
	}
}

// A map pinned by an earlier run is adopted when it matches this build's
// spec, with its contents, and refused with ErrPinMismatch when it does
// not: Load must neither drop the live tags it holds nor replace the pin.
func TestLoadAdoptsOrRefusesPinnedMap(t *testing.T) {
	requireBPF(t)
	spec, _ := loadTestSpec(t)
	want := spec.Maps[contidMapCgroupTags]
	cases := []struct {
		name     string
		change   func(*ebpf.MapSpec)
		mismatch bool
	}{
		{"same spec, adopted", func(*ebpf.MapSpec) {}, false},
		{"other value size", func(ms *ebpf.MapSpec) { ms.ValueSize += 8 }, true},
		{"other max entries", func(ms *ebpf.MapSpec) { ms.MaxEntries /= 2 }, true},
		{"other type", func(ms *ebpf.MapSpec) { ms.Type = ebpf.LRUHash }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pinDir := testPinDir(t)
			if err := os.MkdirAll(pinDir, 0o700); err != nil {
				t.Fatal(err)
			}
			ms := want.Copy()
			ms.Key, ms.Value = nil, nil // a layout-only spec, as an older build's would be
			tc.change(ms)
			old, err := ebpf.NewMap(ms)
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			pin := filepath.Join(pinDir, contidMapCgroupTags)
			if err := old.Pin(pin); err != nil {
				t.Fatal(err)
			}
			// A live entry, as an earlier contidd would have left it.
			value := make([]byte, ms.ValueSize)
			value[0] = 42
			if err := old.Put(uint64(7), value); err != nil {
				t.Fatal(err)
			}
			oldInfo, err := old.Info()
			if err != nil {
				t.Fatal(err)
			}
			oldID, _ := oldInfo.ID()

			b, err := Load(Options{PinDir: pinDir, Mode: testMode()})
			if tc.mismatch {
				if err == nil {
					b.Close()
					t.Fatal("Load adopted an incompatible pinned map")
				}
				if !errors.Is(err, ErrPinMismatch) || !errors.Is(err, ebpf.ErrMapIncompatible) {
					t.Fatalf("Load: %v, want ErrPinMismatch wrapping ebpf.ErrMapIncompatible", err)
				}
				t.Logf("Load: %v", err)
			} else {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				defer b.Close()
				info, err := b.maps.CgroupTags.Info()
				if err != nil {
					t.Fatal(err)
				}
				if id, _ := info.ID(); id != oldID {
					t.Errorf("Load uses map %d, not the pinned map %d", id, oldID)
				}
				tag, err := b.CgroupTag(7)
				if err != nil || tag.ID() != 42 {
					t.Errorf("adopted entry reads %s (%v), want ID 42", tag.Chain, err)
				}
			}
			// Either way the pin is still the earlier run's map.
			again, err := ebpf.LoadPinnedMap(pin, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			info, err := again.Info()
			if err != nil {
				t.Fatal(err)
			}
			if id, _ := info.ID(); id != oldID {
				t.Errorf("pin %s now holds map %d, not %d", pin, id, oldID)
			}
		})
	}
}

package kernel

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/contid/contid"
)

// The per-container exceptions reach the tasks the guards look at: a
// process forked into a tagged cgroup carries its cgroup's AllowBPF and
// AllowModules bits in its own task tag, and a container nested in a
// granted one carries only its own, so the guards' per-task decision
// cannot be inherited through nesting.
func TestGrantFlagsReachTasks(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	granted := newTestCgroup(t, nil, "grant-bpf")
	nested := newTestCgroup(t, granted, "nested")
	modules := newTestCgroup(t, nil, "grant-modules")
	plain := newTestCgroup(t, nil, "grant-none")

	x, z, m, p := mustAllocate(t, b), mustAllocate(t, b), mustAllocate(t, b), mustAllocate(t, b)
	mustTagCgroup(t, b, granted, contid.Tag{Chain: contid.Chain{x}, Flags: contid.FlagAllowNesting | contid.FlagAllowBPF})
	mustTagCgroup(t, b, nested, contid.Tag{Chain: contid.Chain{z, x}})
	mustTagCgroup(t, b, modules, contid.Tag{Chain: contid.Chain{m}, Flags: contid.FlagAllowModules})
	mustTagCgroup(t, b, plain, contid.Tag{Chain: contid.Chain{p}})

	tests := []struct {
		name string
		cg   *testCgroup
		id   contid.ID
		want contid.Flags
	}{
		{"AllowBPF", granted, x, contid.FlagAllowBPF},
		{"nested in AllowBPF, not granted", nested, z, 0},
		{"AllowModules", modules, m, contid.FlagAllowModules},
		{"neither", plain, p, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct, err := b.CgroupTag(tt.cg.id)
			if err != nil {
				t.Fatal(err)
			}
			if got := ct.Flags & contid.FlagsGrants; got != tt.want {
				t.Errorf("cgroup tag grants %v, want %v", got.Strings(), tt.want.Strings())
			}
			pid := startIn(t, tt.cg, "sleep", "60").Process.Pid
			pidfd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(pidfd)
			var tag taskTag
			if err := b.maps.TaskTags.Lookup(int32(pidfd), &tag); err != nil {
				t.Fatalf("task tag of %d: %v", pid, err)
			}
			if contid.ID(tag.Id) != tt.id {
				t.Errorf("task %d has ID %d, want %d", pid, tag.Id, tt.id)
			}
			if got := contid.Flags(tag.Flags) & contid.FlagsGrants; got != tt.want {
				t.Errorf("task %d grants %v, want %v", pid, got.Strings(), tt.want.Strings())
			}
		})
	}
}

package kernel

import (
	"errors"
	"testing"
	"time"

	"github.com/contid/contid"
)

// Once a container's cgroup is removed, its tag and its ID's claim can go
// without losing anything attribution needs: the processes that ran in it
// are still attributed through pid_tags, and neither allocator hands the
// ID out again. An ID the allocators have not passed keeps its claim.
func TestReleaseAfterRemoval(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	cg := newTestCgroup(t, nil, "released")
	x := mustAllocate(t, b)
	mustTagCgroup(t, b, cg, contid.Tag{Chain: contid.Chain{x}})

	cmd := execIn(t, cg, "cat")
	during := time.Now()
	cmd.in.Close()
	if err := cmd.cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	cg.destroy(t)
	if err := b.UntagCgroup(cg.id); err != nil {
		t.Fatal(err)
	}
	if err := b.ReleaseID(x); err != nil {
		t.Fatal(err)
	}

	if _, err := b.CgroupTag(cg.id); !errors.Is(err, ErrNotTagged) {
		t.Errorf("tag of the removed cgroup after UntagCgroup: %v; want ErrNotTagged", err)
	}
	if id, how, _, err := b.Attribute(uint32(cmd.pid), 0, during); err != nil || id != x || how != contid.ExitedProcess {
		t.Errorf("Attribute of the exited process after the release = %d, %d, %v; want %d, exited", id, how, err, x)
	}
	for range 100 {
		if y := mustAllocate(t, b); y == x {
			t.Fatalf("AllocateID handed out the released ID %d again", x)
		}
	}
	// The claim itself is gone: what refuses x now is the registry.
	if err := b.ClaimID(x); err != nil {
		t.Errorf("ClaimID(%d) after its release: %v; want the claim gone", x, err)
	}

	next, err := b.counter()
	if err != nil {
		t.Fatal(err)
	}
	ahead := contid.ID(next + 10)
	if err := b.ClaimID(ahead); err != nil {
		t.Fatal(err)
	}
	if err := b.ReleaseID(ahead); err == nil {
		t.Errorf("ReleaseID(%d) above the counter %d succeeded; an allocator could still reach it", ahead, next)
	}
	if err := b.ClaimID(ahead); !errors.Is(err, ErrIDTaken) {
		t.Errorf("ClaimID(%d) after a refused release: %v; want ErrIDTaken", ahead, err)
	}
}

// pid_tags is an LRU map: a container that forks tens of thousands of
// short processes evicts the records of processes that live on. A live
// tagged process whose record is gone is still attributed, through its
// pidfd, for events after its start; an event before its start is
// another process's and is not.
func TestAttributeEvictedLiveProcess(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	cg := newTestCgroup(t, nil, "evicted")
	x := mustAllocate(t, b)
	mustTagCgroup(t, b, cg, contid.Tag{Chain: contid.Chain{x}})
	before := time.Now()
	time.Sleep(50 * time.Millisecond)
	cmd := execIn(t, cg, "cat")
	defer func() {
		cmd.in.Close()
		_ = cmd.cmd.Wait()
	}()
	time.Sleep(100 * time.Millisecond)
	if err := b.maps.PidTags.Delete(uint32(cmd.pid)); err != nil {
		t.Fatalf("evict the record: %v", err)
	}
	for _, tc := range []struct {
		name   string
		at     time.Time
		wantID contid.ID
		want   contid.Attribution
	}{
		{"an event of the live process", time.Now(), x, contid.LiveProcess},
		{"an event before it started", before, contid.Unset, contid.Unattributed},
	} {
		id, how, _, err := b.Attribute(uint32(cmd.pid), 0, tc.at)
		if err != nil || id != tc.wantID || how != tc.want {
			t.Errorf("%s: Attribute = %d, %d, %v; want %d, %d", tc.name, id, how, err, tc.wantID, tc.want)
		}
	}
}

// A tagged process whose pid_tags record the LRU evicted while it lived
// cannot be looked up live once it has exited, yet its last system calls
// are often read after that. The exit hook writes its record again from
// task_tags: an event of its life is attributed to it as an exited
// process's, one before its start is not. The control deletes the record
// again after the exit, as a hook that did not write it would leave it:
// the event then goes unattributed.
func TestAttributeEvictedExitedProcess(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	cg := newTestCgroup(t, nil, "evicted-exited")
	x := mustAllocate(t, b)
	mustTagCgroup(t, b, cg, contid.Tag{Chain: contid.Chain{x}})
	for _, tc := range []struct {
		name     string
		control  bool
		wantID   contid.ID
		want     contid.Attribution
		atBefore bool
	}{
		{name: "an event of its life", wantID: x, want: contid.ExitedProcess},
		{name: "an event before it started", atBefore: true, wantID: contid.Unset, want: contid.Unattributed},
		{name: "control: no record after the exit", control: true, wantID: contid.Unset, want: contid.Unattributed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now()
			time.Sleep(50 * time.Millisecond)
			cmd := execIn(t, cg, "cat")
			time.Sleep(100 * time.Millisecond)
			during := time.Now()
			if err := b.maps.PidTags.Delete(uint32(cmd.pid)); err != nil {
				t.Fatalf("evict the record: %v", err)
			}
			cmd.in.Close()
			_ = cmd.cmd.Wait()
			if tc.control {
				if err := b.maps.PidTags.Delete(uint32(cmd.pid)); err != nil {
					t.Fatalf("control: no record to delete after the exit (%v)", err)
				}
			}
			at := during
			if tc.atBefore {
				at = before
			}
			id, how, _, err := b.Attribute(uint32(cmd.pid), 0, at)
			if err != nil || id != tc.wantID || how != tc.want {
				t.Errorf("Attribute = %d, %d, %v; want %d, %d", id, how, err, tc.wantID, tc.want)
			}
		})
	}
}

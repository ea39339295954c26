package kernel

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/contid/contid"
)

// TagProcess tags a fresh process through its pidfd and then follows the
// write-once rule: a foreign ID is refused, a nested one is taken.
func TestTagProcess(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	cg := newTestCgroup(t, nil, "tagprocess")
	x, y, z := mustAllocate(t, b), mustAllocate(t, b), mustAllocate(t, b)

	p := execIn(t, cg, "sleep", "600")
	fd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)

	if _, err := b.ProcessID(fd); !errors.Is(err, ErrNotTagged) {
		t.Fatalf("fresh process: err %v, want ErrNotTagged", err)
	}
	steps := []struct {
		name    string
		tag     contid.Tag
		wantErr error
		wantID  contid.ID
	}{
		{"untagged takes X", contid.Tag{Chain: contid.Chain{x}}, nil, x},
		{"same tag again is idempotent", contid.Tag{Chain: contid.Chain{x}}, nil, x},
		{"foreign Y is refused", contid.Tag{Chain: contid.Chain{y}}, ErrTagRefused, x},
		{"Z nested in X is taken", contid.Tag{Chain: contid.Chain{z, x}}, nil, z},
		{"back out to X is refused", contid.Tag{Chain: contid.Chain{x}}, ErrTagRefused, z},
	}
	for _, s := range steps {
		err := b.TagProcess(fd, s.tag)
		if !errors.Is(err, s.wantErr) {
			t.Errorf("%s: TagProcess err %v, want %v", s.name, err, s.wantErr)
		}
		if got, err := b.ProcessID(fd); err != nil || got != s.wantID {
			t.Errorf("%s: ProcessID = %d, %v; want %d", s.name, got, err, s.wantID)
		}
	}

	p.cmd.Process.Kill()
	p.cmd.Wait()
	if _, err := b.ProcessID(fd); !errors.Is(err, ErrNoProcess) {
		t.Errorf("after exit: ProcessID err %v, want ErrNoProcess", err)
	}
	if err := b.TagProcess(fd, contid.Tag{Chain: contid.Chain{x}}); !errors.Is(err, ErrNoProcess) {
		t.Errorf("after exit: TagProcess err %v, want ErrNoProcess", err)
	}
}

// Cgroup IDs, paths and tags round-trip through the helpers and the maps.
func TestCgroupHelpersAndTags(t *testing.T) {
	requireBPF(t)
	b := loadTest(t, testPinDir(t))
	cg := newTestCgroup(t, nil, "helpers")
	child := newTestCgroup(t, cg, "inner")

	for _, c := range []*testCgroup{cg, child} {
		path, err := CgroupPathByID(c.id)
		if err != nil || path != c.rel {
			t.Errorf("CgroupPathByID(%d) = %q, %v; want %q", c.id, path, err, c.rel)
		}
	}
	p := execIn(t, child, "sleep", "600")
	if path, err := CgroupOfPID(p.pid); err != nil || path != child.rel {
		t.Errorf("CgroupOfPID = %q, %v; want %q", path, err, child.rel)
	}
	if _, err := CgroupID(cg.rel + "/missing"); !errors.Is(err, ErrNoSuchCgroup) {
		t.Errorf("CgroupID(missing) err %v, want ErrNoSuchCgroup", err)
	}

	x, y := mustAllocate(t, b), mustAllocate(t, b)
	tag := contid.Tag{Chain: contid.Chain{x}, Flags: contid.FlagAllowNesting}
	if n := mustTagCgroup(t, b, cg, tag); n != 1 {
		t.Errorf("TagCgroup found %d tasks, want the 1 in the subtree", n)
	}
	wantID(t, b, "process in a sub-cgroup of the tagged one", p.pid, x)
	// Repeated, the walk tags nothing and still finds the process.
	if n := mustTagCgroup(t, b, cg, tag); n != 1 {
		t.Errorf("repeating TagCgroup found %d tasks, want the 1 that has the ID", n)
	}
	if _, err := b.TagCgroup(cg.id, contid.Tag{Chain: contid.Chain{y}}); !errors.Is(err, ErrCgroupTagged) {
		t.Errorf("retagging with another ID: err %v, want ErrCgroupTagged", err)
	}
	all, err := b.CgroupTags()
	if err != nil || len(all) != 1 || all[cg.id].Chain.String() != tag.Chain.String() || all[cg.id].Flags != tag.Flags {
		t.Errorf("CgroupTags = %v, %v; want only %d: %s", all, err, cg.id, tag.Chain)
	}
	if err := b.UntagCgroup(cg.id); err != nil {
		t.Fatal(err)
	}
	if err := b.UntagCgroup(cg.id); err != nil {
		t.Errorf("second UntagCgroup: %v", err)
	}
	if _, err := b.CgroupTag(cg.id); !errors.Is(err, ErrNotTagged) {
		t.Errorf("after UntagCgroup: err %v, want ErrNotTagged", err)
	}
}

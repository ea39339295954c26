package dbus

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/contid/contid"
)

// A process can carry a kernel-assigned ID before contidd has handled the
// autotag event for its cgroup; a lookup by PID must then adopt the
// cgroup from the kernel's map instead of answering NoSuchContainer.
func TestContainerByPIDAdoptsKernelTag(t *testing.T) {
	m, _, _, root := newTestManager(t)
	tr := m.cfg.Tracker.(*fakeTracker)
	dir := filepath.Join(root, "machine.slice", "web.scope")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cgid, err := fakeCgroups{root}.ID("/machine.slice/web.scope")
	if err != nil {
		t.Fatal(err)
	}
	const pid, id = 4242, contid.ID(77)

	tr.pids[pid] = id
	if _, err := m.containerByPID(pid); !errors.Is(err, contid.ErrNoSuchContainer) {
		t.Fatalf("with no kernel cgroup tag: err %v, want NoSuchContainer", err)
	}

	tr.tags[cgid] = contid.Tag{Chain: contid.Chain{id}, Flags: contid.FlagAutotag}
	c, err := m.containerByPID(pid)
	if err != nil {
		t.Fatalf("containerByPID: %v", err)
	}
	if c.ID != id || len(c.Cgroups) != 1 || c.Cgroups[0].Path != "/machine.slice/web.scope" {
		t.Fatalf("adopted %+v, want ID %d at /machine.slice/web.scope", c, id)
	}
}

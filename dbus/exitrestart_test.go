package dbus

import (
	"os"
	"path/filepath"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/contid/contid"
	"github.com/contid/contid/dbus/client"
	"github.com/contid/contid/registry"
)

// TestExitSeenAfterRestartWhenWalkTaggedNone: a container whose cgroup
// held processes at the tag is seen to exit after a contidd restarted
// once they are gone, also when the kernel's walk tagged none of them:
// tasks the fork hook tagged before the walk reached them (a parent that
// forked and exited), or tasks moved in from a cgroup of the same pod,
// are not counted, and the tag call then learnt from cgroup.events that
// the cgroup held processes. That must outlive contidd as the walk's
// count does, or the container stays active for as long as its cgroup.
func TestExitSeenAfterRestartWhenWalkTaggedNone(t *testing.T) {
	const (
		empty = "populated 0\nfrozen 0\n"
		full  = "populated 1\nfrozen 0\n"
	)
	for _, tc := range []struct {
		name  string
		pod   bool
		tasks int // what the kernel's walk tagged in the cgroup with processes
		// later: the cgroup is empty at the tag; its processes come
		// after, and an exit check sees them before contidd is killed.
		later bool
	}{
		{name: "new container, walk tagged tasks", tasks: 2},
		{name: "new container, walk tagged none", tasks: 0},
		{name: "further cgroup of an empty pod, walk tagged tasks", pod: true, tasks: 1},
		{name: "further cgroup of an empty pod, walk tagged none", pod: true, tasks: 0},
		{name: "new container, processes came after the tag", later: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _, _, root := newTestManager(t)
			tr := m.cfg.Tracker.(*fakeTracker)
			mk := func(rel, events string, tasks int) string {
				t.Helper()
				dir := filepath.Join(root, rel)
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				ev := filepath.Join(dir, "cgroup.events")
				if err := os.WriteFile(ev, []byte(events), 0o644); err != nil {
					t.Fatal(err)
				}
				cgid, err := fakeCgroups{root}.ID(rel)
				if err != nil {
					t.Fatal(err)
				}
				tr.mu.Lock()
				tr.tasks[cgid] = tasks
				tr.mu.Unlock()
				return ev
			}
			tag := func(rel string, id uint64) uint64 {
				t.Helper()
				body, derr := m.dispatch(selfPeer(t), call(client.ManagerPath, client.ManagerInterface, "TagCgroup", rel, id, map[string]godbus.Variant{}))
				if derr != nil {
					t.Fatalf("TagCgroup %s as %d: %v", rel, id, derr)
				}
				return body[0].(uint64)
			}
			var id uint64
			if tc.pod {
				mk("/target/pod", empty, 0)
				id = tag("/target/pod", 0)
			}
			at := full
			if tc.later {
				at = empty
			}
			ev := mk("/target/c.scope", at, tc.tasks)
			id = tag("/target/c.scope", id)
			if tc.later {
				if err := os.WriteFile(ev, []byte(full), 0o644); err != nil {
					t.Fatal(err)
				}
				m.checkExits()
			}

			// contidd is killed; the processes exit; contidd starts again.
			if err := os.WriteFile(ev, []byte(empty), 0o644); err != nil {
				t.Fatal(err)
			}
			m = NewManager(Config{Registry: m.cfg.Registry, Tracker: tr, Cgroups: fakeCgroups{root}, Version: "test"})
			if err := m.Reconcile(); err != nil {
				t.Fatal(err)
			}
			m.checkExits()
			c, err := m.cfg.Registry.Get(contid.ID(id))
			if err != nil {
				t.Fatal(err)
			}
			if c.State != registry.StateExited {
				t.Fatalf("container %d, its processes gone while contidd was down: state %v after an exit check; want exited", id, c.State)
			}
		})
	}
}

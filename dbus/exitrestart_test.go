package dbus

import (
	"os"
	"testing"

	"github.com/contid/contid"
	"github.com/contid/contid/registry"
)

// TestExitSeenAfterRestartWhenWalkTaggedNone: a container whose cgroups
// held processes is seen to exit after a contidd restarted once they are
// gone, however contidd learnt that they held processes: from the
// kernel's walk, from the cgroup.events a pod's further cgroup is read
// for (a pod's walk finds nothing new when the process came from another
// of its cgroups), or from an exit check that saw processes that came
// after the tag. That must outlive contidd, or the container stays active
// for as long as its cgroup.
func TestExitSeenAfterRestartWhenWalkTaggedNone(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pod   bool
		tasks int // what the kernel's walk found in the cgroup with processes
		// later: the cgroup is empty at the tag; its processes come
		// after, and an exit check sees them before contidd is killed.
		later bool
	}{
		{name: "new container, walk found tasks", tasks: 2},
		{name: "further cgroup of an empty pod, walk found tasks", pod: true, tasks: 1},
		{name: "further cgroup of an empty pod, walk found none", pod: true, tasks: 0},
		{name: "new container, processes came after the tag", later: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _, _, root := newTestManager(t)
			tr := m.cfg.Tracker.(*fakeTracker)
			var id uint64
			if tc.pod {
				pod, _ := fakeTaskCgroup(t, m, root, "/target/pod", eventsEmpty, 0)
				id = tagGranted(t, m, pod, 0)
			}
			at := eventsPopulated
			if tc.later {
				at = eventsEmpty
			}
			target, ev := fakeTaskCgroup(t, m, root, "/target/c.scope", at, tc.tasks)
			id = tagGranted(t, m, target, id)
			if tc.later {
				if err := os.WriteFile(ev, []byte(eventsPopulated), 0o644); err != nil {
					t.Fatal(err)
				}
				m.checkExits()
			}

			// contidd is killed; the processes exit; contidd starts again.
			if err := os.WriteFile(ev, []byte(eventsEmpty), 0o644); err != nil {
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

package dbus

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/contid/contid"
	"github.com/contid/contid/registry"
)

// TestExitSeenAfterShortLivedTag: a container whose processes all exit
// before the first exit check, its cgroup left in place, is seen to exit
// whichever way its processes came to it: a new container tagged over
// D-Bus, a further cgroup of a pod whose first cgroup was eventsEmpty, and a
// contidd restarted between the tag and the exit.
func TestExitSeenAfterShortLivedTag(t *testing.T) {
	for _, tc := range []struct {
		name string
		// pod: the first cgroup, empty and tagged first; the processes
		// then come in a second cgroup tagged into the same ID.
		pod bool
		// restart: contidd restarts after the reply, once the
		// processes are gone.
		restart bool
	}{
		{name: "new container"},
		{name: "further cgroup of a pod whose first was empty", pod: true},
		{name: "contidd restarted between tag and exit", restart: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _, _, root := newTestManager(t)
			tr := m.cfg.Tracker.(*fakeTracker)
			var id uint64
			if tc.pod {
				pod, _ := fakeTaskCgroup(t, m, root, "/target/pod", eventsEmpty, 0)
				id = tagGranted(t, m, pod, 0)
			}
			target, ev := fakeTaskCgroup(t, m, root, "/target/c.scope", eventsPopulated, 2)
			got := tagGranted(t, m, target, id)
			if id != 0 && got != id {
				t.Fatalf("pod cgroup tagged as %d, want %d", got, id)
			}
			id = got

			// Every process exits before the exit check; the cgroups stay.
			if err := os.WriteFile(ev, []byte(eventsEmpty), 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.restart {
				m = NewManager(Config{Registry: m.cfg.Registry, Tracker: tr, Cgroups: fakeCgroups{root}, Version: "test"})
				if err := m.Reconcile(); err != nil {
					t.Fatal(err)
				}
			}
			m.checkExits()
			c, err := m.cfg.Registry.Get(contid.ID(id))
			if err != nil {
				t.Fatal(err)
			}
			if c.State != registry.StateExited {
				t.Fatalf("container %d, its processes gone, after an exit check: state %v; want exited", id, c.State)
			}
		})
	}
}

// TestPopulatedForgottenForExitedContainer: the memory of containers whose
// cgroup held processes keeps no entry for one that already exited, even
// when the exit check ran between the registry's tag and containerNew (its
// cgroup removed at once), and even when a new cgroup with processes took
// the same path meanwhile: nothing would ever delete that entry. Whether
// the kernel's walk found tasks must not matter.
func TestPopulatedForgottenForExitedContainer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tasks int // what the kernel's walk found
		// reused: a cgroup with processes is made at the same path
		// after the exit check.
		reused bool
	}{
		{"walk found none", 0, false},
		{"walk found tasks", 1, false},
		{"walk found none, path taken again", 0, true},
		{"walk found tasks, path taken again", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _, _, root := newTestManager(t)
			target, events := fakeTaskCgroup(t, m, root, "/target/gone.scope", eventsPopulated, tc.tasks)
			c, err := m.cfg.Registry.TagCgroup(m.internalCaller(), contid.Unset, target, registry.Options{})
			if err != nil {
				t.Fatal(err)
			}
			// The runtime removes the cgroup, and the exit check runs,
			// before the tag call reaches containerNew.
			if err := os.RemoveAll(filepath.Dir(events)); err != nil {
				t.Fatal(err)
			}
			m.checkExits()
			if got, _ := m.cfg.Registry.Get(c.ID); got == nil || got.State != registry.StateExited {
				t.Fatalf("container %d not exited after its cgroup was removed", c.ID)
			}
			if tc.reused {
				fakeTaskCgroup(t, m, root, "/target/gone.scope", eventsPopulated, 0)
			}
			m.containerNew(c)
			m.mu.Lock()
			kept := m.populated[c.ID]
			m.mu.Unlock()
			if kept {
				t.Errorf("exited container %d still remembered as populated, an entry nothing deletes", c.ID)
			}
		})
	}
}

package dbus

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/contid/contid/registry"
)

// TestPopulatedNotLeakedByReusedPath: a container the exit check marked
// exited (its cgroup removed) between the registry's tag and the note of
// whether it held processes leaves no entry in the populated memory, even
// when a new cgroup with processes took the same path meanwhile. Whether
// the kernel's walk tagged tasks or not must not matter: nothing deletes
// the entry of an exited container, so each such race would keep one.
func TestPopulatedNotLeakedByReusedPath(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tasks int // what the kernel's walk tagged
	}{
		{"walk tagged none", 0},
		{"walk tagged tasks", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _, _, root := newTestManager(t)
			const rel = "/target/reused.scope"
			dir := filepath.Join(root, rel)
			mk := func(events string) {
				t.Helper()
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte(events), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			mk("populated 0\nfrozen 0\n")
			target, err := m.resolveCgroup(rel, "")
			if err != nil {
				t.Fatal(err)
			}
			tr := m.cfg.Tracker.(*fakeTracker)
			tr.mu.Lock()
			tr.tasks[target.ID] = tc.tasks
			tr.mu.Unlock()
			c, err := m.cfg.Registry.TagCgroup(m.internalCaller(), 0, target, registry.Options{})
			if err != nil {
				t.Fatal(err)
			}
			// The runtime removes the cgroup and the exit check runs;
			// then another cgroup, with processes, is made at the same
			// path, all before the tag call reaches containerNew.
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			m.checkExits()
			if got, _ := m.cfg.Registry.Get(c.ID); got == nil || got.State != registry.StateExited {
				t.Fatalf("container %d not exited after its cgroup was removed", c.ID)
			}
			mk("populated 1\nfrozen 0\n")
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

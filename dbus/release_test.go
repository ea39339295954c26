package dbus

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/contid/contid"
	"github.com/contid/contid/kernel"
	"github.com/contid/contid/registry"
)

// The kernel entries of a removed container go one ReleaseGrace after the
// exit check notices, not before; a cgroup that still exists keeps its
// tag, and its container its claim, until it is removed too.
func TestReleaseAfterGrace(t *testing.T) {
	tests := []struct {
		name string
		// adopt: the autotag event is read while the cgroup exists.
		adopt bool
		// keepDir: the cgroup stays (emptied) past the first grace.
		keepDir bool
	}{
		{name: "removed after adoption", adopt: true},
		{name: "removed before its event was read"},
		{name: "emptied, removed later", adopt: true, keepDir: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _, _, root := newTestManager(t)
			tr := m.cfg.Tracker.(*fakeTracker)
			dir := filepath.Join(root, "target", "c.scope")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			cgid, err := fakeCgroups{root}.ID("/target/c.scope")
			if err != nil {
				t.Fatal(err)
			}
			id := contid.ID(100 + i)
			tag := contid.Tag{Chain: contid.Chain{id}, Flags: contid.FlagAutotag}
			tr.mu.Lock()
			tr.tags[cgid] = tag
			tr.claimed[id] = true
			tr.mu.Unlock()
			ev := kernel.Event{Kind: kernel.EventAutotag, Tag: tag, CgroupID: cgid}

			if tt.adopt {
				m.HandleKernelEvent(ev)
			}
			if !tt.keepDir {
				if err := os.Remove(dir); err != nil {
					t.Fatal(err)
				}
			}
			if !tt.adopt {
				m.HandleKernelEvent(ev)
			}
			m.checkExits()
			c, err := m.cfg.Registry.Get(id)
			if err != nil || c.State != registry.StateExited {
				t.Fatalf("container %d after the exit check: %v, %v; want an exited record", id, c, err)
			}

			held := func() (tagged, claimed bool) {
				tr.mu.Lock()
				defer tr.mu.Unlock()
				_, tagged = tr.tags[cgid]
				return tagged, tr.claimed[id]
			}
			now := time.Now()
			m.releaseDue(now)
			if tagged, claimed := held(); !tagged || !claimed {
				t.Fatalf("within the grace: tagged %v, claimed %v; want both kept", tagged, claimed)
			}
			now = now.Add(ReleaseGrace + time.Second)
			m.releaseDue(now)
			if tt.keepDir {
				if tagged, claimed := held(); !tagged || !claimed {
					t.Fatalf("the cgroup still exists: tagged %v, claimed %v; want both kept", tagged, claimed)
				}
				if err := os.Remove(dir); err != nil {
					t.Fatal(err)
				}
				now = now.Add(ReleaseGrace + time.Second)
				m.releaseDue(now)
			}
			if tagged, claimed := held(); tagged || claimed {
				t.Fatalf("after the grace: tagged %v, claimed %v; want both released", tagged, claimed)
			}
			// The exited record still refuses the ID.
			if _, err := m.cfg.Registry.TagCgroup(registry.Caller{UID: 0, Privileged: true, Cgroup: "/caller"}, id,
				registry.CgroupTarget{Path: "/target", ID: 1}, registry.Options{}); !errors.Is(err, contid.ErrIDInUse) {
				t.Fatalf("TagCgroup with ID %d after its claim was released: %v; want IdInUse", id, err)
			}
		})
	}
}
